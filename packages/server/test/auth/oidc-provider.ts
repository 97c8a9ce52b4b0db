/**
 * A small but real OpenID Connect provider for tests, on 127.0.0.1 (http, which Terrarium accepts for loopback issuers
 * outside production): discovery, JWKS, an authorization page that signs the test user in on one click (Authorization
 * Code with PKCE S256 only), the token endpoint (authorization_code, client_credentials, device_code), and the device
 * authorization endpoint, and RP-initiated logout (`end_session_endpoint`). Tokens are RS256 JWTs signed with jose, like Auth0's.
 *
 * Why not `oidc-provider`: its JWT access tokens need resource-indicator plumbing and its interaction pages need a
 * session store; this one is a few hundred lines whose every behaviour a test can see and steer (expiry, audience,
 * a key the JWKS does not publish).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK, jwtVerify, SignJWT } from 'jose';

type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

export interface TestUser {
  sub: string;
  name: string;
  email: string;
}

export interface TestProviderOptions {
  /** The web UI's client (public, PKCE): ID_TOKEN_AUDIENCE. */
  clientId?: string;
  /** ACCESS_TOKEN_AUDIENCE. */
  audience?: string;
  /** A confidential machine-to-machine client for client_credentials. */
  m2m?: { clientId: string; clientSecret: string };
  /** Whether discovery advertises the device authorization endpoint (default true). */
  deviceFlow?: boolean;
  /** Access token lifetime in seconds (default 1 hour). */
  accessTokenTtlSeconds?: number;
  user?: TestUser;
}

export interface MintOptions {
  sub?: string;
  audience?: string | string[];
  issuer?: string;
  /** Seconds from now; negative for an already expired token. */
  expiresIn?: number;
  /** Sign with a key the JWKS does not publish. */
  unknownKey?: boolean;
  claims?: Record<string, unknown>;
}

interface PendingCode {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  nonce?: string;
  audience: string;
  scope: string;
}

interface PendingDevice {
  userCode: string;
  clientId: string;
  audience: string;
  approved: boolean;
}

export class TestOidcProvider {
  readonly clientId: string;
  readonly audience: string;
  readonly user: TestUser;
  /** Every token request's grant type, in order (tests check which flow a client used). */
  readonly grants: string[] = [];
  /** Every session ended at the end-session endpoint: whose (from id_token_hint) and for which client. */
  readonly logouts: { sub: string; clientId: string }[] = [];
  private server!: Server;
  private port = 0;
  private privateKey!: SigningKey;
  private publicKey!: SigningKey;
  private otherKey!: SigningKey;
  private jwk!: JWK;
  private readonly codes = new Map<string, PendingCode>();
  private readonly devices = new Map<string, PendingDevice>();

  constructor(private readonly options: TestProviderOptions = {}) {
    this.clientId = options.clientId ?? 'terrarium-ui';
    this.audience = options.audience ?? 'https://terrarium.test/api';
    this.user = options.user ?? { sub: 'oidc|alice', name: 'Alice Example', email: 'alice@example.test' };
  }

  get issuer(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  get jwksUri(): string {
    return `${this.issuer}.well-known/jwks.json`;
  }

  /** The server variables that point Terrarium at this provider. */
  env(): Record<string, string> {
    return {
      USE_AUTH0: 'true',
      ISSUER: this.issuer,
      JWKS_URI: this.jwksUri,
      ID_TOKEN_AUDIENCE: this.clientId,
      ACCESS_TOKEN_AUDIENCE: this.audience,
    };
  }

  async start(): Promise<this> {
    const pair = await generateKeyPair('RS256', { extractable: true });
    this.privateKey = pair.privateKey;
    this.publicKey = pair.publicKey;
    this.jwk = { ...(await exportJWK(pair.publicKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
    this.otherKey = (await generateKeyPair('RS256')).privateKey;
    this.server = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => send(response, 500, { error: String(error) }));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** An access token as the provider would issue it, with the knobs tests need to make it wrong. */
  async mintAccessToken(options: MintOptions = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    // Like Keycloak's (and Auth0's with a rule), the access token carries the user's name and e-mail.
    const profile =
      (options.sub ?? this.user.sub) === this.user.sub ? { name: this.user.name, email: this.user.email } : {};
    return new SignJWT({ scope: 'openid profile email', ...profile, ...options.claims })
      .setProtectedHeader({ alg: 'RS256', kid: options.unknownKey ? 'rotated-away' : 'test-key-1', typ: 'at+jwt' })
      .setIssuer(options.issuer ?? this.issuer)
      .setSubject(options.sub ?? this.user.sub)
      .setAudience(options.audience ?? [this.audience, `${this.issuer}userinfo`])
      .setIssuedAt(now)
      .setExpirationTime(now + (options.expiresIn ?? this.options.accessTokenTtlSeconds ?? 3600))
      .sign(options.unknownKey ? this.otherKey : this.privateKey);
  }

  async mintIdToken(nonce?: string, audience = this.clientId): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ name: this.user.name, email: this.user.email, ...(nonce && { nonce }) })
      .setProtectedHeader({ alg: 'RS256', kid: 'test-key-1' })
      .setIssuer(this.issuer)
      .setSubject(this.user.sub)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(now + 3600)
      .sign(this.privateKey);
  }

  /** The person at the browser approves a device login (what they would do on verification_uri). */
  approveDevice(userCode: string): void {
    for (const device of this.devices.values()) if (device.userCode === userCode) device.approved = true;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    // The web UI calls discovery and the token endpoint from its own origin.
    response.setHeader('access-control-allow-origin', '*');
    response.setHeader('access-control-allow-headers', 'authorization, content-type, dpop');
    if (request.method === 'OPTIONS') return void response.writeHead(204).end();
    const url = new URL(request.url ?? '/', this.issuer);
    switch (`${request.method} ${url.pathname}`) {
      case 'GET /.well-known/openid-configuration':
        return send(response, 200, {
          issuer: this.issuer,
          authorization_endpoint: `${this.issuer}authorize`,
          token_endpoint: `${this.issuer}oauth/token`,
          jwks_uri: this.jwksUri,
          end_session_endpoint: `${this.issuer}logout`,
          ...(this.options.deviceFlow !== false && {
            device_authorization_endpoint: `${this.issuer}oauth/device/code`,
          }),
          response_types_supported: ['code'],
          grant_types_supported: [
            'authorization_code',
            'client_credentials',
            ...(this.options.deviceFlow !== false ? ['urn:ietf:params:oauth:grant-type:device_code'] : []),
          ],
          code_challenge_methods_supported: ['S256'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
        });
      case 'GET /.well-known/jwks.json':
        return send(response, 200, { keys: [this.jwk] });
      case 'GET /authorize':
        return this.authorizePage(url, response);
      case 'POST /authorize':
        return this.approve(await form(request), response);
      case 'POST /oauth/token':
        return this.token(await form(request), request, response);
      case 'POST /oauth/device/code':
        return this.deviceCode(await form(request), response);
      case 'GET /logout':
        return this.endSession(url.searchParams, response);
      default:
        return send(response, 404, { error: 'not_found' });
    }
  }

  /** The provider's sign-in page: checks the request like a real provider, then asks the user to continue. */
  private authorizePage(url: URL, response: ServerResponse): void {
    const p = url.searchParams;
    const problem =
      p.get('client_id') !== this.clientId
        ? 'unknown client_id'
        : p.get('response_type') !== 'code'
          ? 'response_type must be code'
          : p.get('code_challenge_method') !== 'S256' || !p.get('code_challenge')
            ? 'PKCE with S256 is required'
            : !p.get('redirect_uri')
              ? 'redirect_uri is required'
              : undefined;
    if (problem) return void response.writeHead(400, { 'content-type': 'text/plain' }).end(problem);
    const hidden = [...p.entries()]
      .map(([k, v]) => `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`)
      .join('');
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
      `<!doctype html><html><head><title>Test provider sign-in</title></head><body style="font-family:sans-serif;padding:2em">
<h1>Test OpenID provider</h1><p>Sign in to <b>${escapeHtml(this.clientId)}</b> as ${escapeHtml(this.user.name)} (${escapeHtml(this.user.email)})?</p>
<form method="post" action="/authorize">${hidden}<button type="submit">Continue as ${escapeHtml(this.user.name)}</button></form></body></html>`,
    );
  }

  private approve(p: URLSearchParams, response: ServerResponse): void {
    const code = randomBytes(16).toString('base64url');
    this.codes.set(code, {
      clientId: p.get('client_id') ?? '',
      redirectUri: p.get('redirect_uri') ?? '',
      codeChallenge: p.get('code_challenge') ?? '',
      ...(p.get('nonce') && { nonce: p.get('nonce')! }),
      audience: p.get('audience') ?? this.audience,
      scope: p.get('scope') ?? 'openid',
    });
    const target = new URL(p.get('redirect_uri') ?? '');
    target.searchParams.set('code', code);
    if (p.get('state')) target.searchParams.set('state', p.get('state')!);
    target.searchParams.set('iss', this.issuer);
    response.writeHead(302, { location: target.toString() }).end();
  }

  private async token(p: URLSearchParams, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const grant = p.get('grant_type') ?? '';
    this.grants.push(grant);
    const basic = /^Basic (.+)$/.exec(request.headers.authorization ?? '');
    const [basicId, basicSecret] = basic
      ? Buffer.from(basic[1]!, 'base64').toString().split(':').map(decodeURIComponent)
      : [];
    const clientId = basicId ?? p.get('client_id');
    if (grant === 'authorization_code') {
      const pending = this.codes.get(p.get('code') ?? '');
      this.codes.delete(p.get('code') ?? '');
      if (!pending || pending.clientId !== clientId || pending.redirectUri !== p.get('redirect_uri'))
        return send(response, 400, { error: 'invalid_grant', error_description: 'unknown code or redirect_uri' });
      const challenge = createHash('sha256')
        .update(p.get('code_verifier') ?? '')
        .digest('base64url');
      if (challenge !== pending.codeChallenge)
        return send(response, 400, { error: 'invalid_grant', error_description: 'PKCE code_verifier does not match' });
      return send(response, 200, {
        access_token: await this.mintAccessToken({
          audience: [pending.audience, `${this.issuer}userinfo`],
          claims: { scope: pending.scope },
        }),
        id_token: await this.mintIdToken(pending.nonce),
        token_type: 'Bearer',
        expires_in: this.options.accessTokenTtlSeconds ?? 3600,
        scope: pending.scope,
      });
    }
    if (grant === 'client_credentials') {
      const m2m = this.options.m2m;
      const secret = basicSecret ?? p.get('client_secret');
      if (!m2m || clientId !== m2m.clientId || secret !== m2m.clientSecret)
        return send(response, 401, { error: 'invalid_client', error_description: 'wrong client id or secret' });
      return send(response, 200, {
        access_token: await this.mintAccessToken({
          sub: `${m2m.clientId}@clients`,
          audience: p.get('audience') ?? this.audience,
          claims: { gty: 'client-credentials' },
        }),
        token_type: 'Bearer',
        expires_in: this.options.accessTokenTtlSeconds ?? 3600,
      });
    }
    if (grant === 'urn:ietf:params:oauth:grant-type:device_code') {
      const device = this.devices.get(p.get('device_code') ?? '');
      if (!device) return send(response, 400, { error: 'expired_token' });
      if (!device.approved) return send(response, 400, { error: 'authorization_pending' });
      this.devices.delete(p.get('device_code') ?? '');
      return send(response, 200, {
        access_token: await this.mintAccessToken({ audience: [device.audience, `${this.issuer}userinfo`] }),
        id_token: await this.mintIdToken(undefined, device.clientId),
        token_type: 'Bearer',
        expires_in: this.options.accessTokenTtlSeconds ?? 3600,
      });
    }
    return send(response, 400, { error: 'unsupported_grant_type' });
  }

  /** RP-initiated logout: the ID token names whose session ends; back to post_logout_redirect_uri afterwards. */
  private async endSession(p: URLSearchParams, response: ServerResponse): Promise<void> {
    const hint = p.get('id_token_hint');
    const target = p.get('post_logout_redirect_uri');
    if (!hint || !target)
      return void response
        .writeHead(400, { 'content-type': 'text/plain' })
        .end('id_token_hint and post_logout_redirect_uri are required');
    const { payload } = await jwtVerify(hint, this.publicKey, { issuer: this.issuer }).catch(() => ({
      payload: undefined,
    }));
    if (!payload?.sub || payload.aud !== p.get('client_id'))
      return void response
        .writeHead(400, { 'content-type': 'text/plain' })
        .end('id_token_hint is not an ID token of this client');
    this.logouts.push({ sub: payload.sub, clientId: p.get('client_id') ?? '' });
    response.writeHead(302, { location: target }).end();
  }

  private deviceCode(p: URLSearchParams, response: ServerResponse): void {
    const deviceCode = randomBytes(16).toString('base64url');
    const userCode = randomBytes(4).toString('hex').toUpperCase();
    this.devices.set(deviceCode, {
      userCode,
      clientId: p.get('client_id') ?? '',
      audience: p.get('audience') ?? this.audience,
      approved: false,
    });
    send(response, 200, {
      device_code: deviceCode,
      user_code: userCode,
      verification_uri: `${this.issuer}activate`,
      verification_uri_complete: `${this.issuer}activate?user_code=${userCode}`,
      expires_in: 600,
      interval: 1,
    });
  }
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  response.end(JSON.stringify(body));
}

async function form(request: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** An unsigned token (`alg: none`), which must never be accepted. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.`;
}
