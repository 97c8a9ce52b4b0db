/**
 * `terrarium login` for servers that sign people in with OpenID Connect (USE_AUTH0=true). In order of preference:
 *   --token <t> / TERRARIUM_ACCESS_TOKEN   an access token you already have (checked against the server, then kept)
 *   --client-credentials                   the machine-to-machine application (VIVARIA_AUTH0_CLIENT_ID/SECRET_FOR_
 *                                          AGENT_APPLICATION): scripts and CI, no person needed
 *   device code (RFC 8628)                 the default when the provider offers it: open a URL, type a code
 * The token is kept per server in `${TERRARIUM_DATA_DIR}/cli-login.json` (mode 0600) and used by every command until it
 * expires; `terrarium logout` forgets it.
 */
import { AuthConfigView } from '@terrarium/shared';
import { z } from 'zod';
import { cliConfig } from '../connection.js';
import { loginFile, normalizeServerUrl, readLogins, writeLogins } from '../login-store.js';

const Discovery = z.object({
  issuer: z.string(),
  token_endpoint: z.string().url(),
  device_authorization_endpoint: z.string().url().optional(),
});

const TokenResponse = z.object({
  access_token: z.string().min(1),
  expires_in: z.coerce.number().positive().optional(),
});

const TokenError = z.object({ error: z.string(), error_description: z.string().optional() });

const DeviceAuthorization = z.object({
  device_code: z.string(),
  user_code: z.string(),
  verification_uri: z.string(),
  verification_uri_complete: z.string().optional(),
  expires_in: z.coerce.number().positive(),
  interval: z.coerce.number().positive().optional(),
});

export interface LoginOptions {
  serverUrl?: string;
  token?: string;
  clientCredentials?: boolean;
}

function serverUrlOf(options: LoginOptions): string {
  return normalizeServerUrl(
    options.serverUrl ?? process.env.TERRARIUM_SERVER_URL ?? `http://127.0.0.1:${cliConfig().PORT}`,
  );
}

async function getJson(url: string): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    throw new Error(`Could not reach ${url}: ${(error as Error).message}. Is the server running?`);
  }
  if (!response.ok) throw new Error(`${url} answered ${response.status} ${response.statusText}.`);
  return response.json();
}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success)
    throw new Error(`${what} is not what was expected: ${result.error.issues.map((i) => i.message).join('; ')}`);
  return result.data;
}

async function postForm(url: string, form: Record<string, string>): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(form),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: 'invalid_response', error_description: text.slice(0, 200) };
  }
  return { status: response.status, body };
}

function tokenError(body: unknown): string {
  const parsed = TokenError.safeParse(body);
  return parsed.success
    ? `${parsed.data.error}${parsed.data.error_description ? `: ${parsed.data.error_description}` : ''}`
    : JSON.stringify(body);
}

/** Checks the token against the server, so a wrong one is refused here rather than on the next command. */
async function verifyWithServer(serverUrl: string, token: string): Promise<void> {
  const response = await fetch(`${serverUrl}/api/runs?limit=1`, { headers: { authorization: `Bearer ${token}` } });
  if (response.ok) return;
  const body = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
  throw new Error(
    `The server refused the token: ${body.error?.message ?? `${response.status} ${response.statusText}`}`,
  );
}

export async function loginCommand(
  options: LoginOptions,
  out: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): Promise<number> {
  const serverUrl = serverUrlOf(options);
  const auth = parse(AuthConfigView, await getJson(`${serverUrl}/api/auth-config`), `${serverUrl}/api/auth-config`);
  if (auth.readOnly) {
    out(`${serverUrl} is read-only (VIVARIA_IS_READ_ONLY): no sign-in is needed.`);
    return 0;
  }
  const pasted = options.token ?? process.env.TERRARIUM_ACCESS_TOKEN;
  if (!auth.oidc) {
    if (!pasted) {
      out(
        `${serverUrl} uses a static access token, not an identity provider: the CLI sends the server's ACCESS_TOKEN ` +
          '(`terrarium config` shows where it is kept) or TERRARIUM_ACCESS_TOKEN. Nothing to log in to.',
      );
      return 0;
    }
  }
  let token: { accessToken: string; expiresAt: number | null };
  if (pasted) {
    token = { accessToken: pasted, expiresAt: expiryOf(pasted) };
  } else {
    const oidc = auth.oidc!;
    const discovery = parse(
      Discovery,
      await getJson(`${oidc.issuer}.well-known/openid-configuration`),
      `${oidc.issuer}'s OpenID configuration`,
    );
    const config = cliConfig();
    const clientId = config.VIVARIA_AUTH0_CLIENT_ID_FOR_AGENT_APPLICATION;
    const clientSecret = config.VIVARIA_AUTH0_CLIENT_SECRET_FOR_AGENT_APPLICATION;
    if (options.clientCredentials || !discovery.device_authorization_endpoint) {
      if (!clientId || !clientSecret) {
        throw new Error(
          options.clientCredentials
            ? '--client-credentials needs VIVARIA_AUTH0_CLIENT_ID_FOR_AGENT_APPLICATION and ' +
                'VIVARIA_AUTH0_CLIENT_SECRET_FOR_AGENT_APPLICATION (your machine-to-machine application) in the environment.'
            : `${oidc.issuer} offers no device sign-in: pass a token with --token (or TERRARIUM_ACCESS_TOKEN), or set ` +
                'VIVARIA_AUTH0_CLIENT_ID_FOR_AGENT_APPLICATION and VIVARIA_AUTH0_CLIENT_SECRET_FOR_AGENT_APPLICATION.',
        );
      }
      const { status, body } = await postForm(discovery.token_endpoint, {
        grant_type: 'client_credentials',
        client_id: clientId,
        client_secret: clientSecret,
        audience: oidc.audience,
      });
      if (status !== 200) throw new Error(`The provider refused the client credentials: ${tokenError(body)}`);
      token = fromTokenResponse(parse(TokenResponse, body, 'The token response'));
      out('Signed in with the machine-to-machine application (client credentials).');
    } else {
      token = await deviceFlow(discovery.device_authorization_endpoint, discovery.token_endpoint, oidc, out, sleep);
    }
  }
  await verifyWithServer(serverUrl, token.accessToken);
  const logins = readLogins(cliConfig().TERRARIUM_DATA_DIR);
  logins[serverUrl] = token;
  writeLogins(cliConfig().TERRARIUM_DATA_DIR, logins);
  const until = token.expiresAt === null ? '' : ` until ${new Date(token.expiresAt).toISOString()}`;
  out(`Logged in to ${serverUrl}${until}. The token is kept in ${loginFile(cliConfig().TERRARIUM_DATA_DIR)}.`);
  return 0;
}

async function deviceFlow(
  deviceEndpoint: string,
  tokenEndpoint: string,
  oidc: NonNullable<AuthConfigView['oidc']>,
  out: (line: string) => void,
  sleep: (ms: number) => Promise<void>,
): Promise<{ accessToken: string; expiresAt: number | null }> {
  const started = await postForm(deviceEndpoint, {
    client_id: oidc.clientId,
    scope: oidc.scope,
    audience: oidc.audience,
  });
  if (started.status !== 200) throw new Error(`The provider refused device sign-in: ${tokenError(started.body)}`);
  const device = parse(DeviceAuthorization, started.body, 'The device authorization response');
  out(`To sign in, open ${device.verification_uri_complete ?? device.verification_uri}`);
  out(`and confirm the code ${device.user_code}`);
  let intervalMs = (device.interval ?? 5) * 1000;
  const deadline = Date.now() + device.expires_in * 1000;
  while (Date.now() < deadline) {
    await sleep(intervalMs);
    const { status, body } = await postForm(tokenEndpoint, {
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      device_code: device.device_code,
      client_id: oidc.clientId,
    });
    if (status === 200) return fromTokenResponse(parse(TokenResponse, body, 'The token response'));
    const error = TokenError.safeParse(body);
    if (error.success && error.data.error === 'authorization_pending') continue;
    if (error.success && error.data.error === 'slow_down') {
      intervalMs += 5000;
      continue;
    }
    throw new Error(`Device sign-in failed: ${tokenError(body)}`);
  }
  throw new Error('Device sign-in timed out: the code was not confirmed in time. Run `terrarium login` again.');
}

function fromTokenResponse(response: z.infer<typeof TokenResponse>): { accessToken: string; expiresAt: number | null } {
  return {
    accessToken: response.access_token,
    expiresAt: response.expires_in ? Date.now() + response.expires_in * 1000 : expiryOf(response.access_token),
  };
}

/** A JWT's `exp` in epoch ms (read, not verified: the server verifies); null for opaque tokens. */
function expiryOf(token: string): number | null {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp * 1000 : null;
  } catch {
    return null;
  }
}

export async function logoutCommand(options: { serverUrl?: string }): Promise<number> {
  const serverUrl = serverUrlOf(options);
  const logins = readLogins(cliConfig().TERRARIUM_DATA_DIR);
  const had = serverUrl in logins;
  delete logins[serverUrl];
  writeLogins(cliConfig().TERRARIUM_DATA_DIR, logins);
  process.stdout.write(had ? `Logged out of ${serverUrl}.\n` : `Not logged in to ${serverUrl}.\n`);
  return 0;
}
