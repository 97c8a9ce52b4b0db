import { z } from 'zod';

/** Limits on a query written on the runs page. */
export interface QueryLimits {
  /** Milliseconds after which the database cancels the statement (PostgreSQL; see docs/ui.md for PGlite). */
  statementTimeoutMs: number;
  /** Rows returned at most; the answer says `truncated` when there were more. */
  rowCap: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimits = { statementTimeoutMs: 10_000, rowCap: 5_000 };

export const QueryRequest = z.object({
  sql: z
    .string()
    .trim()
    .min(1, 'sql must be a non-empty SQL statement')
    .max(100_000, 'sql is longer than 100,000 characters'),
});
export type QueryRequest = z.infer<typeof QueryRequest>;

/** A cell as JSON: numbers, strings, booleans, null, or JSON values (jsonb, arrays). Dates become ISO strings. */
export const QueryResult = z.object({
  columns: z.array(z.string()),
  rows: z.array(z.array(z.unknown())),
  /** Rows returned here (at most the row cap). */
  rowCount: z.number().int().nonnegative(),
  /** Whether the query produced more rows than the cap. */
  truncated: z.boolean(),
  durationMs: z.number().nonnegative(),
});
export type QueryResult = z.infer<typeof QueryResult>;

export const SchemaTable = z.object({
  name: z.string(),
  columns: z.array(z.object({ name: z.string(), type: z.string() })),
});
export const QuerySchema = z.object({ tables: z.array(SchemaTable) });
export type QuerySchema = z.infer<typeof QuerySchema>;

/** The database refused or failed the query: its message, SQLSTATE and (when it says) the position in the SQL. */
export class QueryError extends Error {
  constructor(
    message: string,
    readonly sqlState: string | undefined,
    readonly position: number | undefined,
  ) {
    super(message);
    this.name = 'QueryError';
  }
}

/** The query feature cannot run (e.g. PostgreSQL without a read-only user): a set-up problem, not the query's. */
export class QueryUnavailableError extends Error {
  override name = 'QueryUnavailableError';
}
