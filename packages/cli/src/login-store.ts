/**
 * Access tokens from `terrarium login`, kept per server URL in `${TERRARIUM_DATA_DIR}/cli-login.json` (mode 0600, like
 * secrets.json), so every later command against that server sends it until it expires.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

const StoredLogins = z.record(z.string(), z.object({ accessToken: z.string(), expiresAt: z.number().nullable() }));
export type StoredLogins = z.infer<typeof StoredLogins>;

export const normalizeServerUrl = (url: string) => url.replace(/\/+$/, '');

export function loginFile(dataDir: string): string {
  return path.join(dataDir, 'cli-login.json');
}

/** The kept logins; a damaged file counts as none (logging in again rewrites it). */
export function readLogins(dataDir: string): StoredLogins {
  const file = loginFile(dataDir);
  if (!existsSync(file)) return {};
  try {
    const parsed = StoredLogins.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    return parsed.success ? parsed.data : {};
  } catch {
    return {};
  }
}

export function writeLogins(dataDir: string, logins: StoredLogins): void {
  const file = loginFile(dataDir);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(logins, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** The kept access token for `serverUrl`, unless it expires within a minute. */
export function storedAccessToken(dataDir: string, serverUrl: string): string | undefined {
  const login = readLogins(dataDir)[normalizeServerUrl(serverUrl)];
  if (!login) return undefined;
  if (login.expiresAt !== null && login.expiresAt - 60_000 <= Date.now()) return undefined;
  return login.accessToken;
}
