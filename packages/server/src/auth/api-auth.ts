/**
 * Who may call the user API (`/api`), in one place: static tokens (USE_AUTH0=false), OpenID Connect access tokens
 * (USE_AUTH0=true), or nobody needs to sign in because nothing can be changed (VIVARIA_IS_READ_ONLY=true).
 */
import type { FastifyRequest } from 'fastify';
import { HttpError } from '../api/errors.js';
import { runIdOfAgentToken } from './agent-tokens.js';
import { OidcTokenError, type OidcVerifier } from './oidc.js';
import { type AuthenticatedUser, authenticateStaticUser, bearerToken, type StaticUserAuth } from './user-tokens.js';
import type { SignedInUser } from './users.js';

export interface ApiAuthOptions {
  /** ACCESS_TOKEN / ID_TOKEN: accepted when OIDC is off. */
  staticAuth: StaticUserAuth;
  /** USE_AUTH0=true: OIDC access tokens instead of the static tokens. */
  oidc?: OidcVerifier;
  /** VIVARIA_ACCESS_TOKEN_MIN_TTL_MS: work that outlives the request needs a token living at least this long. */
  minTokenTtlMs?: number;
  /** VIVARIA_IS_READ_ONLY: no sign-in, and only reads (see isReadRequest). */
  readOnly?: boolean;
  /** Records a newly seen OIDC user, or one whose name or e-mail changed (runs and comments reference users by id). */
  ensureUser?: (user: SignedInUser) => Promise<void>;
}

/** Who a read-only instance's visitors are (nobody signed in). */
export const PUBLIC_USER: AuthenticatedUser = { id: 'public', name: 'Public (read-only)' };

export const READ_ONLY_MESSAGE =
  'This Terrarium is read-only (VIVARIA_IS_READ_ONLY=true): only reads are allowed, nothing can be started or changed.';

/**
 * Reads in read-only mode: GET/HEAD, plus the runs page's SQL query, a POST only because a query does not fit a URL;
 * it runs in the read-only database role (docs/ui.md), so it cannot change anything either.
 */
export function isReadRequest(method: string, route: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD' || (method === 'POST' && route === '/api/query');
}

/**
 * Requests that start work running after the response (a run, a forked branch, a task environment): refused when
 * the caller's OIDC token expires sooner than VIVARIA_ACCESS_TOKEN_MIN_TTL_MS, since the work would outlive it.
 */
const STARTS_WORK = new Set([
  'POST /api/runs',
  'POST /api/runs/:runId/unkill',
  'POST /api/runs/:runId/branches',
  'POST /api/task-environments',
  'POST /api/task-environments/:name/start',
  'POST /api/task-environments/:name/restart',
]);

export function startsWork(method: string, route: string | undefined): boolean {
  return STARTS_WORK.has(`${method} ${route}`);
}

/** The `/api` scope's onRequest hook: sets `request.user` or throws an HttpError that says what to do. */
export function apiAuthHook(options: ApiAuthOptions) {
  const seenUsers = new Set<string>();
  return async (request: FastifyRequest): Promise<void> => {
    const route = request.routeOptions.url;
    if (options.readOnly) {
      if (!isReadRequest(request.method, route)) throw new HttpError(403, READ_ONLY_MESSAGE);
      request.user = PUBLIC_USER;
      return;
    }
    const token = bearerToken(request.headers);
    if (!token)
      throw new HttpError(
        401,
        options.oidc
          ? 'Missing credentials: sign in (web UI or `terrarium login`) and send "Authorization: Bearer <access token>".'
          : 'Missing credentials: send "Authorization: Bearer <ACCESS_TOKEN>".',
      );
    if (runIdOfAgentToken(token) !== undefined) throw new HttpError(403, 'Agent tokens may only call the hooks API.');
    if (!options.oidc) {
      const user = authenticateStaticUser(token, options.staticAuth);
      if (!user)
        throw new HttpError(401, 'Invalid access token. `terrarium config` shows where the server keeps its token.');
      request.user = user;
      return;
    }
    const idToken = request.headers['x-id-token'];
    let user: Awaited<ReturnType<OidcVerifier['verifyAccessToken']>>;
    try {
      user = await options.oidc.verifyAccessToken(token, typeof idToken === 'string' ? idToken : undefined);
    } catch (error) {
      if (error instanceof OidcTokenError) throw new HttpError(401, error.message);
      throw error;
    }
    if (options.minTokenTtlMs !== undefined && startsWork(request.method, route)) {
      const remainingMs = user.expiresAt.getTime() - Date.now();
      if (remainingMs < options.minTokenTtlMs) {
        throw new HttpError(
          403,
          `Your access token expires in ${formatDuration(remainingMs)}, sooner than VIVARIA_ACCESS_TOKEN_MIN_TTL_MS ` +
            `(${formatDuration(options.minTokenTtlMs)}), so Terrarium will not start work that could outlive it. ` +
            'Get a longer-lived token from your identity provider, or ask the operator to lower the variable.',
        );
      }
    }
    // Written once per process per identity (id, name, e-mail), not on every request.
    const identity = JSON.stringify([user.id, user.name, user.email ?? null]);
    if (!seenUsers.has(identity)) {
      await options.ensureUser?.({ id: user.id, name: user.name, ...(user.email && { email: user.email }) });
      seenUsers.add(identity);
    }
    request.user = { id: user.id, name: user.name };
  };
}

export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 120) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 120) return `${minutes} min`;
  return `${(minutes / 60).toFixed(1)} h`;
}
