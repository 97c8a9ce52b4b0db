/**
 * OpenID Connect sign-in (USE_AUTH0=true): users send an access token issued by the provider (Auth0 or any compliant
 * one) as `Authorization: Bearer …`; it is a JWT verified here against the provider's published keys (JWKS_URI). The
 * key set is fetched on first use, cached, and fetched again when a token names a key it does not hold (rotation).
 */
import { createRemoteJWKSet, errors, type JWTPayload, jwtVerify } from 'jose';
import type { AuthenticatedUser } from './user-tokens.js';

/** Asymmetric algorithms only: `none` and HMAC (a shared secret the provider would have to give us) are refused. */
export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA'];

export interface OidcSettings {
  /** ISSUER: the `iss` every token must carry (Auth0's has a trailing slash). */
  issuer: string;
  /** JWKS_URI: the provider's public keys. */
  jwksUri: string;
  /** ACCESS_TOKEN_AUDIENCE: access tokens must name this API in `aud`. */
  accessTokenAudience: string;
  /** ID_TOKEN_AUDIENCE: the web UI's client id, the `aud` of ID tokens (and the UI's OAuth client id). */
  idTokenAudience: string;
}

export interface OidcUser extends AuthenticatedUser {
  /** When the access token expires (its `exp`), so work outliving the token can be refused. */
  expiresAt: Date;
  email?: string;
}

/** A token the server refuses; the message says what is wrong and what to do. */
export class OidcTokenError extends Error {}

const SIGN_IN_AGAIN = 'Sign in again (web UI) or run `terrarium login` (CLI) for a new token.';

export class OidcVerifier {
  private readonly keys: ReturnType<typeof createRemoteJWKSet>;

  constructor(readonly settings: OidcSettings) {
    // cooldownDuration: a token naming an unknown key refetches the set at most every 30 s, so garbage tokens cannot
    // make us hammer the provider; cacheMaxAge: keys are refreshed every 10 minutes anyway.
    this.keys = createRemoteJWKSet(new URL(settings.jwksUri), {
      cooldownDuration: 30_000,
      cacheMaxAge: 10 * 60_000,
      timeoutDuration: 5_000,
    });
  }

  /** The user an access token stands for; `idToken` (optional, from the UI) only adds the name and e-mail. */
  async verifyAccessToken(token: string, idToken?: string): Promise<OidcUser> {
    const claims = await this.verify(token, this.settings.accessTokenAudience, 'access token');
    if (typeof claims.sub !== 'string' || claims.sub === '')
      throw new OidcTokenError('The access token has no subject (`sub` claim), so it names no user.');
    if (typeof claims.exp !== 'number')
      throw new OidcTokenError('The access token has no expiry (`exp` claim); Terrarium accepts only expiring tokens.');
    let profile: JWTPayload = claims;
    if (idToken) {
      const idClaims = await this.verify(idToken, this.settings.idTokenAudience, 'ID token (X-Id-Token header)');
      if (idClaims.sub !== claims.sub)
        throw new OidcTokenError('The ID token (X-Id-Token header) is for another user than the access token.');
      profile = { ...claims, ...idClaims };
    }
    const email = stringClaim(profile, 'email');
    const name = stringClaim(profile, 'name') ?? stringClaim(profile, 'nickname') ?? email ?? claims.sub;
    return { id: claims.sub, name, expiresAt: new Date(claims.exp * 1000), ...(email && { email }) };
  }

  private async verify(token: string, audience: string, what: string): Promise<JWTPayload> {
    try {
      const { payload } = await jwtVerify(token, this.keys, {
        issuer: this.settings.issuer,
        audience,
        algorithms: ALLOWED_ALGORITHMS,
        clockTolerance: 30,
      });
      return payload;
    } catch (error) {
      throw new OidcTokenError(explain(error, what, this.settings, audience));
    }
  }
}

/** Turns jose's errors into a sentence saying what is wrong with the token and what to do. */
function explain(error: unknown, what: string, settings: OidcSettings, audience: string): string {
  if (error instanceof errors.JWTExpired) return `The ${what} has expired. ${SIGN_IN_AGAIN}`;
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud')
      return `The ${what} is for another audience: Terrarium accepts only tokens whose \`aud\` includes "${audience}". ${SIGN_IN_AGAIN}`;
    if (error.claim === 'iss')
      return `The ${what} was issued by another provider: Terrarium accepts only tokens from "${settings.issuer}" (ISSUER).`;
    if (error.claim === 'nbf') return `The ${what} is not valid yet (\`nbf\` is in the future); check the clocks.`;
    return `The ${what} was refused: its \`${error.claim}\` claim ${error.reason}.`;
  }
  if (error instanceof errors.JOSEAlgNotAllowed)
    return `The ${what} is signed with an algorithm Terrarium does not accept; allowed: ${ALLOWED_ALGORITHMS.join(', ')}.`;
  if (error instanceof errors.JWKSNoMatchingKey)
    return `The ${what} is signed with a key the provider does not publish at ${settings.jwksUri} (JWKS_URI). ${SIGN_IN_AGAIN}`;
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return `The ${what} has an invalid signature. ${SIGN_IN_AGAIN}`;
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid)
    return `Could not read the provider's keys at ${settings.jwksUri} (JWKS_URI): ${(error as Error).message}.`;
  if (error instanceof errors.JOSEError)
    return `The ${what} is not a valid signed JWT (${(error as Error).message}). Send the access token your identity provider issued.`;
  return `Could not verify the ${what}: ${error instanceof Error ? error.message : String(error)}.`;
}

function stringClaim(claims: JWTPayload, name: string): string | undefined {
  const value = claims[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}
