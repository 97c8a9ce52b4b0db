/**
 * The one way the UI calls the server: adds the signed-in user's bearer token, parses JSON and turns the server's
 * error shape (`{ error: { code, message } }`, see packages/server/src/api/errors.ts) into an `ApiError` whose message
 * is the server's own words.
 */

const TOKEN_KEY = 'terrarium.accessToken';
const ID_TOKEN_KEY = 'terrarium.idToken';
const EXPIRES_KEY = 'terrarium.accessTokenExpiresAt';

/**
 * The signed-in user's bearer token: the static ACCESS_TOKEN (kept in localStorage, it does not expire), or an OpenID
 * Connect access token (kept in sessionStorage for this tab's session, with its expiry); null when there is none or
 * it has expired.
 */
export function getAccessToken(): string | null {
  const expiresAt = Number(sessionStorage.getItem(EXPIRES_KEY));
  if (expiresAt > 0 && expiresAt <= Date.now()) {
    setAccessToken(null);
    return null;
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY);
}

export function setAccessToken(token: string | null): void {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ID_TOKEN_KEY);
  sessionStorage.removeItem(EXPIRES_KEY);
  if (token === null) localStorage.removeItem(TOKEN_KEY);
  else localStorage.setItem(TOKEN_KEY, token);
}

export interface OidcSession {
  accessToken: string;
  idToken?: string | undefined;
  /** Epoch milliseconds when the access token expires. */
  expiresAt?: number | undefined;
}

/** Keeps an OpenID Connect sign-in for this tab's session (sessionStorage: closing the tab signs out). */
export function setOidcSession(session: OidcSession): void {
  setAccessToken(null);
  sessionStorage.setItem(TOKEN_KEY, session.accessToken);
  if (session.idToken) sessionStorage.setItem(ID_TOKEN_KEY, session.idToken);
  if (session.expiresAt) sessionStorage.setItem(EXPIRES_KEY, String(session.expiresAt));
}

/** The ID token of an OpenID Connect sign-in; the server reads the user's name from it (X-Id-Token). */
export function getIdToken(): string | null {
  return getAccessToken() === null ? null : sessionStorage.getItem(ID_TOKEN_KEY);
}

/** The signed-in user's display name from the ID token's claims (display only: the server verifies the token). */
export function signedInName(): string | null {
  const idToken = getIdToken();
  if (!idToken) return null;
  try {
    const payload = idToken.split('.')[1] ?? '';
    const claims = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))) as Record<string, unknown>;
    const name = claims.name ?? claims.email ?? claims.sub;
    return typeof name === 'string' ? name : null;
  } catch {
    return null;
  }
}

/** The sign-in page's address that comes back to `returnTo` (default: the current page) afterwards. */
export function signInPath(returnTo = location.pathname + location.search, reason?: 'expired'): string {
  return `/login?next=${encodeURIComponent(returnTo)}${reason ? `&reason=${reason}` : ''}`;
}

export class ApiError extends Error {
  constructor(
    /** HTTP status; 0 when the server could not be reached at all. */
    readonly status: number,
    /** The server's error code (`invalid_request`, `unauthenticated`, `not_found`, …) or `network`. */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get isUnauthenticated(): boolean {
    return this.status === 401;
  }
}

/** Reads the server's message out of an error body; falls back to the status line for non-JSON answers (a proxy). */
export function errorFromResponse(status: number, statusText: string, bodyText: string): ApiError {
  try {
    const body = JSON.parse(bodyText) as unknown;
    if (body && typeof body === 'object' && 'error' in body) {
      const error = (body as { error: unknown }).error;
      if (error && typeof error === 'object' && 'message' in error) {
        const { message, code } = error as { message: unknown; code?: unknown };
        return new ApiError(status, typeof code === 'string' ? code : 'error', String(message));
      }
      // Fastify's own shape: { error: 'Bad Request', message: '…' }.
      if ('message' in body) return new ApiError(status, String(error), String((body as { message: unknown }).message));
    }
  } catch {
    // not JSON: use the status line below
  }
  const text = bodyText.trim().slice(0, 300);
  return new ApiError(status, 'error', `${status} ${statusText}${text ? `: ${text}` : ''}`);
}

export interface ApiFetchInit extends Omit<RequestInit, 'body'> {
  /** A JSON body (serialised here, with the content type set). */
  json?: unknown;
  body?: BodyInit;
}

/** Calls the server at `path` (e.g. `/api/runs`) and resolves to the parsed JSON body (undefined when empty). */
export async function apiFetch<T>(path: string, init: ApiFetchInit = {}): Promise<T> {
  const { json, headers, ...rest } = init;
  const token = getAccessToken();
  const idToken = getIdToken();
  const merged = new Headers(headers);
  if (token) merged.set('authorization', `Bearer ${token}`);
  if (idToken) merged.set('x-id-token', idToken);
  if (json !== undefined) merged.set('content-type', 'application/json');
  let response: Response;
  try {
    response = await fetch(path, {
      ...rest,
      headers: merged,
      ...(json !== undefined && { body: JSON.stringify(json) }),
    });
  } catch (error) {
    throw new ApiError(
      0,
      'network',
      `Could not reach the Terrarium server (${error instanceof Error ? error.message : String(error)}).`,
    );
  }
  const text = await response.text();
  if (response.status === 401 && token !== null && !location.pathname.startsWith('/login')) {
    // The token expired or was revoked: sign in again, coming back to this page afterwards.
    setAccessToken(null);
    location.assign(signInPath(undefined, 'expired'));
  }
  if (!response.ok) throw errorFromResponse(response.status, response.statusText, text);
  return (text ? JSON.parse(text) : undefined) as T;
}
