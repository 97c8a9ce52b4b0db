/**
 * OpenID Connect sign-in for the web UI: Authorization Code flow with PKCE (S256), as a public client (no secret in
 * the browser). oauth4webapi (panva) does discovery, the state/PKCE/nonce checks and the token request; it is small,
 * dependency-free and made for exactly this.
 */
import type { AuthConfigView } from '@terrarium/shared';
import * as oauth from 'oauth4webapi';
import { setOidcSession } from '../../api/client.js';

type OidcConfig = NonNullable<AuthConfigView['oidc']>;

/** What the browser keeps between leaving for the provider and coming back (sessionStorage, this tab only). */
interface PendingSignIn {
  codeVerifier: string;
  state: string;
  nonce: string;
  next: string;
}

const PENDING_KEY = 'terrarium.oidc.pending';

export const callbackUrl = () => `${location.origin}/login/callback`;

function isLoopback(url: URL): boolean {
  return ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}

/** Plain http is allowed only for a provider on this machine (development and tests), as on the server. */
function requestOptions(issuer: URL) {
  return isLoopback(issuer) ? { [oauth.allowInsecureRequests]: true } : {};
}

async function discover(config: OidcConfig): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(config.issuer);
  const response = await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...requestOptions(issuer) });
  return oauth.processDiscoveryResponse(issuer, response);
}

/** Leaves for the provider's sign-in page; `next` is where to land afterwards. */
export async function beginSignIn(config: OidcConfig, next: string): Promise<void> {
  const as = await discover(config);
  if (!as.authorization_endpoint) throw new Error(`${config.issuer} publishes no authorization_endpoint.`);
  const pending: PendingSignIn = {
    codeVerifier: oauth.generateRandomCodeVerifier(),
    state: oauth.generateRandomState(),
    nonce: oauth.generateRandomNonce(),
    next,
  };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set('client_id', config.clientId);
  url.searchParams.set('redirect_uri', callbackUrl());
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('scope', config.scope);
  // Auth0 issues a JWT access token for our API only when asked for its audience.
  url.searchParams.set('audience', config.audience);
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(pending.codeVerifier));
  url.searchParams.set('code_challenge_method', 'S256');
  url.searchParams.set('state', pending.state);
  url.searchParams.set('nonce', pending.nonce);
  location.assign(url.toString());
}

/** Back from the provider at /login/callback: trades the code for tokens and keeps them; resolves to `next`. */
export async function completeSignIn(config: OidcConfig, currentUrl: URL): Promise<string> {
  const raw = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  if (!raw) throw new Error('This sign-in was not started from this tab (or was already used). Sign in again.');
  const pending = JSON.parse(raw) as PendingSignIn;
  const as = await discover(config);
  const client: oauth.Client = { client_id: config.clientId };
  const params = oauth.validateAuthResponse(as, client, currentUrl, pending.state);
  const response = await oauth.authorizationCodeGrantRequest(
    as,
    client,
    oauth.None(),
    params,
    callbackUrl(),
    pending.codeVerifier,
    requestOptions(new URL(config.issuer)),
  );
  const result = await oauth.processAuthorizationCodeResponse(as, client, response, {
    expectedNonce: pending.nonce,
    requireIdToken: true,
  });
  setOidcSession({
    accessToken: result.access_token,
    idToken: result.id_token,
    expiresAt: result.expires_in ? Date.now() + result.expires_in * 1000 : undefined,
  });
  return pending.next.startsWith('/') && !pending.next.startsWith('//') ? pending.next : '/runs';
}

/**
 * Ends the provider's session too (OpenID Connect RP-Initiated Logout) when the provider publishes an
 * `end_session_endpoint`: the browser leaves for it and comes back to the sign-in page. Resolves false when the
 * provider has no such endpoint (or cannot be reached): then only this tab's tokens are gone.
 */
export async function signOutAtProvider(config: OidcConfig, idToken: string | null): Promise<boolean> {
  let as: oauth.AuthorizationServer;
  try {
    as = await discover(config);
  } catch {
    return false;
  }
  if (!as.end_session_endpoint) return false;
  const url = new URL(as.end_session_endpoint);
  url.searchParams.set('client_id', config.clientId);
  if (idToken) url.searchParams.set('id_token_hint', idToken);
  url.searchParams.set('post_logout_redirect_uri', `${location.origin}/login`);
  location.assign(url.toString());
  return true;
}

/** A provider's error (`invalid_grant`, a refused consent…) as one sentence. */
export function describeSignInError(error: unknown): string {
  if (error instanceof oauth.ResponseBodyError) return `${error.error}: ${error.error_description ?? error.message}`;
  if (error instanceof oauth.AuthorizationResponseError)
    return `${error.error}: ${error.error_description ?? error.message}`;
  return error instanceof Error ? error.message : String(error);
}
