/** Makes a database value JSON-safe: bigint and dates as strings, byte arrays as hex, the rest as is. */
export function toJsonValue(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? String(value) : value.toISOString();
  if (value instanceof Uint8Array) return `\\x${Buffer.from(value).toString('hex')}`;
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}

/** A database error as a QueryError-ready triple, whatever the driver's error shape (pg and PGlite both set code). */
export function databaseErrorParts(error: unknown): { message: string; sqlState?: string; position?: number } {
  const e = error as { message?: unknown; code?: unknown; position?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(error);
  const sqlState = typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  const position = e?.position === undefined ? undefined : Number(e.position);
  return {
    message,
    ...(sqlState && { sqlState }),
    ...(position !== undefined && Number.isFinite(position) && { position }),
  };
}
