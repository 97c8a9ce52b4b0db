/**
 * Admin console sessions of the microVM manager: ADMIN_EMAIL / ADMIN_PASSWORD (compared in constant time) buy a
 * random 256-bit session token, kept in a cookie; the database stores only its SHA-256 and an expiry, so sessions
 * survive a restart of the manager and end when they expire or on logout.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { eq, lt } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { vmmAdminSessions } from '../db/schema.js';

export const ADMIN_COOKIE = 'trm_admin';

const sha256 = (value: string) => createHash('sha256').update(value).digest();

/** Constant-time equality that does not leak the length either (both sides are hashed first). */
export function secretEquals(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

export interface AdminCredentials {
  email: string;
  password: string;
}

export class AdminSessions {
  constructor(
    private readonly db: Database,
    private readonly credentials: AdminCredentials | undefined,
    private readonly ttlMs: number,
  ) {}

  get enabled(): boolean {
    return this.credentials !== undefined;
  }

  get ttlSeconds(): number {
    return Math.round(this.ttlMs / 1000);
  }

  /** A new session token when the credentials match, else undefined. */
  async login(email: string, password: string): Promise<{ token: string; expiresAt: Date } | undefined> {
    if (!this.credentials) return undefined;
    // Both comparisons always run, so the timing does not tell which one failed.
    const emailOk = secretEquals(email.trim().toLowerCase(), this.credentials.email.trim().toLowerCase());
    const passwordOk = secretEquals(password, this.credentials.password);
    if (!(emailOk && passwordOk)) return undefined;
    const token = randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + this.ttlMs);
    await this.db.delete(vmmAdminSessions).where(lt(vmmAdminSessions.expiresAt, new Date()));
    await this.db
      .insert(vmmAdminSessions)
      .values({ tokenHash: sha256(token).toString('hex'), email: this.credentials.email, expiresAt });
    return { token, expiresAt };
  }

  /** The session's e-mail when the token names a live session. */
  async verify(token: string): Promise<string | undefined> {
    const [row] = await this.db
      .select()
      .from(vmmAdminSessions)
      .where(eq(vmmAdminSessions.tokenHash, sha256(token).toString('hex')));
    if (!row || row.expiresAt.getTime() <= Date.now()) return undefined;
    return row.email;
  }

  async logout(token: string): Promise<void> {
    await this.db.delete(vmmAdminSessions).where(eq(vmmAdminSessions.tokenHash, sha256(token).toString('hex')));
  }
}
