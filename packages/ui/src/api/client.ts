/**
 * The one way the UI calls the server: adds the signed-in user's bearer token, parses JSON and turns the server's
 * error shape (`{ error: { code, message } }`, see packages/server/src/api/errors.ts) into an `ApiError` whose message
 * is the server's own words.
 */

const TOKEN_KEY = 'terrarium.accessToken';

export function getAccessToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setAccessToken(token: string | null): void {
  if (token === null) localStorage.removeItem(TOKEN_KEY);
  else localStorage.setItem(TOKEN_KEY, token);
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
  const merged = new Headers(headers);
  if (token) merged.set('authorization', `Bearer ${token}`);
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
  if (!response.ok) throw errorFromResponse(response.status, response.statusText, text);
  return (text ? JSON.parse(text) : undefined) as T;
}
