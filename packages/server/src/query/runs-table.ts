import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../db/client.js';

/** The columns of a runs-table row, in order: the run with its trunk's score and token/cost use. */
export const RUNS_TABLE_COLUMNS = [
  'id',
  'status',
  'taskId',
  'agentName',
  'batchName',
  'score',
  'tokens',
  'cost',
  'createdAt',
] as const;

/**
 * The runs page's data, column-wise (`rows` are arrays in RUNS_TABLE_COLUMNS order): 10,000 runs are ~0.7 MB this
 * way instead of ~2 MB as objects. Declared for the API documentation; the answer itself is built by the database.
 */
export const RunsTableResponse = z.object({
  columns: z.array(z.enum(RUNS_TABLE_COLUMNS)),
  rows: z.array(
    z.tuple([
      z.number(),
      z.string(),
      z.string(),
      z.string().nullable(),
      z.string().nullable(),
      z.number().nullable(),
      z.number(),
      z.number(),
      z.string(),
    ]),
  ),
});
export type RunsTableResponse = z.infer<typeof RunsTableResponse>;

export const RunsTableQuery = z.object({
  limit: z.coerce.number().int().min(1).max(50_000).default(10_000).describe('newest runs first, at most this many'),
});

/**
 * The newest runs as the JSON text of a RunsTableResponse, built by the database in one statement (json_agg): the
 * server neither parses 10,000 rows into objects nor serialises them again, which keeps the runs page's first
 * render fast (bench/ui-runs-page.ts).
 */
export async function runsTableJson(db: Database, limit: number): Promise<string> {
  const result = await db.execute<{ rows: string | null }>(sql`
    SELECT coalesce(json_agg(json_build_array(
        r.id, r.status, r.task_id, r.agent_name, r.batch_name, b.score,
        coalesce(u.input_tokens + u.output_tokens, 0),
        -- Dollars to a millionth: a float's 17 digits would be a fifth of the payload and say nothing more.
        coalesce(round(u.cost::numeric, 6), 0),
        to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
      ) ORDER BY r.id DESC), '[]')::text AS rows
    FROM (SELECT id, status, task_id, agent_name, batch_name, created_at FROM runs ORDER BY id DESC LIMIT ${limit}) AS r
    LEFT JOIN agent_branches b ON b.run_id = r.id AND b.agent_branch_number = 0
    LEFT JOIN branch_usage u ON u.run_id = r.id AND u.agent_branch_number = 0`);
  const rows = result.rows[0]?.rows ?? '[]';
  return `{"columns":${JSON.stringify(RUNS_TABLE_COLUMNS)},"rows":${rows}}`;
}
