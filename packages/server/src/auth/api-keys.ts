/**
 * API keys of the microVM manager (`X-API-Key`). A key is `trm_<prefix>_<secret>`: the prefix finds the row, the
 * whole key is checked against a scrypt hash with a per-key salt (constant-time compare). The key itself is shown
 * once, at creation, and never stored.
 */
import { randomBytes, randomUUID, scrypt, timingSafeEqual } from 'node:crypto';
import { eq, isNull } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { type VmmApiKeyRow, vmmApiKeys } from '../db/schema.js';

const SCRYPT = { N: 16384, r: 8, p: 1, keyLen: 32 };
const KEY_PATTERN = /^trm_([0-9a-f]{12})_([A-Za-z0-9_-]{32,})$/;

function scryptAsync(secret: string, salt: Buffer, params = SCRYPT): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(
      secret,
      salt,
      params.keyLen,
      { N: params.N, r: params.r, p: params.p, maxmem: 64 * 1024 * 1024 },
      (err, key) => (err ? reject(err) : resolve(key)),
    ),
  );
}

export async function hashApiKey(key: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(key, salt);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function apiKeyMatches(key: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = await scryptAsync(key, Buffer.from(salt, 'base64'), {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    keyLen: expected.length,
  });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

export interface ApiKeyView {
  id: string;
  name: string;
  prefix: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  createdAt: string;
}

export function apiKeyView(row: VmmApiKeyRow): ApiKeyView {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    expiresAt: row.expiresAt?.toISOString() ?? null,
    revokedAt: row.revokedAt?.toISOString() ?? null,
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
  };
}

export class ApiKeyStore {
  constructor(private readonly db: Database) {}

  /** Creates a key; the returned `key` is the only time the secret is ever visible. */
  async create(name: string, expiresAt?: Date): Promise<{ key: string; view: ApiKeyView }> {
    const prefix = randomBytes(6).toString('hex');
    const key = `trm_${prefix}_${randomBytes(24).toString('base64url')}`;
    const [row] = await this.db
      .insert(vmmApiKeys)
      .values({ id: randomUUID(), name, prefix, hash: await hashApiKey(key), expiresAt: expiresAt ?? null })
      .returning();
    return { key, view: apiKeyView(row!) };
  }

  async list(): Promise<ApiKeyView[]> {
    const rows = await this.db.select().from(vmmApiKeys).orderBy(vmmApiKeys.createdAt);
    return rows.map(apiKeyView);
  }

  /** Revokes a key; false when there is no such key. Idempotent. */
  async revoke(id: string): Promise<boolean> {
    const [row] = await this.db.select().from(vmmApiKeys).where(eq(vmmApiKeys.id, id));
    if (!row) return false;
    if (!row.revokedAt) await this.db.update(vmmApiKeys).set({ revokedAt: new Date() }).where(eq(vmmApiKeys.id, id));
    return true;
  }

  /**
   * The key's row when `key` is a stored, unrevoked, unexpired key; else a reason. Revocation and expiry are read
   * from the database on every call, so they take effect at once.
   */
  async verify(key: string): Promise<{ ok: true; row: VmmApiKeyRow } | { ok: false; reason: string }> {
    const match = KEY_PATTERN.exec(key);
    if (!match) return { ok: false, reason: 'not a valid API key' };
    const [row] = await this.db.select().from(vmmApiKeys).where(eq(vmmApiKeys.prefix, match[1]!));
    // Hash anyway when there is no row, so an unknown prefix takes as long as a wrong secret.
    const matches = await apiKeyMatches(key, row?.hash ?? DUMMY_HASH);
    if (!row || !matches) return { ok: false, reason: 'unknown API key' };
    if (row.revokedAt) return { ok: false, reason: 'this API key was revoked' };
    if (row.expiresAt && row.expiresAt.getTime() <= Date.now())
      return { ok: false, reason: 'this API key has expired' };
    void this.db
      .update(vmmApiKeys)
      .set({ lastUsedAt: new Date() })
      .where(eq(vmmApiKeys.id, row.id))
      .catch(() => {});
    return { ok: true, row };
  }

  async activeCount(): Promise<number> {
    return (await this.db.select().from(vmmApiKeys).where(isNull(vmmApiKeys.revokedAt))).length;
  }
}

const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32).toString('base64')}`;
