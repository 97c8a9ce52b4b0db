import type { Database } from '../db/client.js';
import type { QueryRunner } from './runner.js';
import { runsTableJson } from './runs-table.js';
import {
  DEFAULT_QUERY_LIMITS,
  type QueryLimits,
  type QueryResult,
  type QuerySchema,
  QueryUnavailableError,
} from './types.js';

/** Tables and columns the read-only role can see: what the editor completes. Run as that role, so it lists no more. */
const SCHEMA_SQL = `SELECT table_name, column_name, data_type
  FROM information_schema.columns
  WHERE table_schema = 'public'
  ORDER BY table_name, ordinal_position`;

/** The runs page's data: the run table, and user-written read-only queries with the schema they can use. */
export class QueryService {
  constructor(
    private readonly db: Database,
    private readonly runner: QueryRunner | undefined,
    /** Why there is no runner (shown to whoever tries to query). */
    private readonly unavailableReason: string | undefined,
    readonly limits: QueryLimits = DEFAULT_QUERY_LIMITS,
  ) {}

  private requireRunner(): QueryRunner {
    if (!this.runner) throw new QueryUnavailableError(this.unavailableReason ?? 'Queries are not available.');
    return this.runner;
  }

  /** Runs one statement as the read-only role; a database error is thrown as a QueryError with its message. */
  run(sql: string): Promise<QueryResult> {
    return this.requireRunner().run(sql, this.limits);
  }

  async schema(): Promise<QuerySchema> {
    const result = await this.requireRunner().run(SCHEMA_SQL, { ...this.limits, rowCap: 20_000 });
    const tables = new Map<string, { name: string; type: string }[]>();
    for (const [table, column, type] of result.rows as [string, string, string][]) {
      const columns = tables.get(table) ?? [];
      columns.push({ name: column, type });
      tables.set(table, columns);
    }
    return { tables: [...tables].map(([name, columns]) => ({ name, columns })) };
  }

  /** The JSON text of a RunsTableResponse (newest first). */
  runsTableJson(limit: number): Promise<string> {
    return runsTableJson(this.db, limit);
  }

  async close(): Promise<void> {
    await this.runner?.close();
  }
}
