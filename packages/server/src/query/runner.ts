import type { PGlite, Transaction as PgliteTransaction } from '@electric-sql/pglite';
import type pg from 'pg';
import { QueryError, type QueryLimits, type QueryResult } from './types.js';
import { databaseErrorParts, toJsonValue } from './values.js';

/** Runs one user-written statement where it cannot write: a read-only transaction, as a role with SELECT grants only. */
export interface QueryRunner {
  readonly engine: 'pglite' | 'postgres';
  run(sql: string, limits: QueryLimits): Promise<QueryResult>;
  close(): Promise<void>;
}

interface RawResult {
  fields: { name: string }[];
  rows: unknown[][];
}

function shape(raw: RawResult, rowCap: number, startedAt: number): QueryResult {
  const truncated = raw.rows.length > rowCap;
  const rows = (truncated ? raw.rows.slice(0, rowCap) : raw.rows).map((row) => row.map(toJsonValue));
  return {
    columns: raw.fields.map((field) => field.name),
    rows,
    rowCount: rows.length,
    truncated,
    durationMs: Math.round(performance.now() - startedAt),
  };
}

function asQueryError(error: unknown): QueryError {
  const { message, sqlState, position } = databaseErrorParts(error);
  return new QueryError(message, sqlState, position);
}

/**
 * PGlite: one connection shared with the whole server, so the statement runs inside `pglite.transaction`, which holds
 * the instance for its duration, and is always rolled back. The read-only mode and role are set before the snapshot
 * is taken (a later `SET TRANSACTION READ WRITE` is refused), and the statement goes through the extended protocol,
 * which refuses several statements in one (no `…; COMMIT; DELETE …`).
 *
 * PGlite runs in this process's thread and has no timer interrupts: statement_timeout is set but not honoured there
 * (docs/ui.md). PostgreSQL honours it.
 */
export class PgliteQueryRunner implements QueryRunner {
  readonly engine = 'pglite' as const;
  constructor(
    private readonly pglite: PGlite,
    private readonly role: string,
  ) {}

  async run(sql: string, limits: QueryLimits): Promise<QueryResult> {
    const startedAt = performance.now();
    try {
      const raw = await this.pglite.transaction(async (tx: PgliteTransaction) => {
        await tx.exec('SET TRANSACTION READ ONLY');
        await tx.query("SELECT set_config('role', $1, true), set_config('statement_timeout', $2, true)", [
          this.role,
          String(limits.statementTimeoutMs),
        ]);
        const result = await tx.query<unknown[]>(sql, [], { rowMode: 'array' });
        await tx.rollback();
        return { fields: result.fields, rows: result.rows };
      });
      return shape(raw, limits.rowCap, startedAt);
    } catch (error) {
      throw asQueryError(error);
    }
  }

  async close(): Promise<void> {}
}

/**
 * PostgreSQL: a pool connected as the read-only user (PG_READONLY_USER), or the server's pool entering a read-only
 * role with SET LOCAL ROLE when no such user is configured. Either way: a READ ONLY transaction, a statement timeout
 * the server enforces, the extended protocol (one statement only), and a rollback.
 */
export class PostgresQueryRunner implements QueryRunner {
  readonly engine = 'postgres' as const;
  constructor(
    private readonly pool: pg.Pool,
    private readonly options: { role?: string; ownsPool: boolean },
  ) {}

  async run(sql: string, limits: QueryLimits): Promise<QueryResult> {
    const startedAt = performance.now();
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN READ ONLY');
      await client.query("SELECT set_config('statement_timeout', $1, true)", [String(limits.statementTimeoutMs)]);
      if (this.options.role) await client.query("SELECT set_config('role', $1, true)", [this.options.role]);
      // queryMode 'extended' (known to pg, missing from its types) refuses several statements in one string.
      const config: pg.QueryArrayConfig & { queryMode: 'extended' } = {
        text: sql,
        rowMode: 'array',
        queryMode: 'extended',
      };
      const result = await client.query<unknown[]>(config);
      return shape({ fields: result.fields, rows: result.rows }, limits.rowCap, startedAt);
    } catch (error) {
      throw asQueryError(error);
    } finally {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      // A connection whose state is in doubt is closed rather than handed to the next query.
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    if (this.options.ownsPool) await this.pool.end();
  }
}
