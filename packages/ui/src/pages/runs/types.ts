/** GET /api/runs-table: rows as arrays in `columns` order (packages/server/src/query/runs-table.ts). */
export interface RunsTableResponse {
  columns: string[];
  rows: unknown[][];
}

/** One run of the runs page. */
export interface RunsTableRow {
  id: number;
  status: string;
  taskId: string;
  agentName: string | null;
  batchName: string | null;
  score: number | null;
  tokens: number;
  cost: number;
  createdAt: string;
}

/** Turns the column-wise answer into rows, by column name (so a column added by the server does not shift others). */
export function rowsFromTable(table: RunsTableResponse): RunsTableRow[] {
  const at = (name: keyof RunsTableRow) => table.columns.indexOf(name);
  const [id, status, taskId, agentName, batchName, score, tokens, cost, createdAt] = (
    ['id', 'status', 'taskId', 'agentName', 'batchName', 'score', 'tokens', 'cost', 'createdAt'] as const
  ).map(at) as [number, number, number, number, number, number, number, number, number];
  return table.rows.map((row) => ({
    id: row[id] as number,
    status: row[status] as string,
    taskId: row[taskId] as string,
    agentName: (row[agentName] ?? null) as string | null,
    batchName: (row[batchName] ?? null) as string | null,
    score: (row[score] ?? null) as number | null,
    tokens: Number(row[tokens] ?? 0),
    cost: Number(row[cost] ?? 0),
    createdAt: row[createdAt] as string,
  }));
}

/** Answer of POST /api/query. */
export interface QueryResult {
  columns: string[];
  rows: unknown[][];
  rowCount: number;
  truncated: boolean;
  durationMs: number;
}

/** Answer of GET /api/query/config: the runs-page query features this server offers. */
export interface QueryConfig {
  /** RUNS_PAGE_QUERY_GENERATION_MODEL, or null when writing SQL from words is off. */
  generationModel: string | null;
}

/** Answer of POST /api/query/generate. */
export interface GeneratedQuery {
  model: string;
  sql: string;
}

/** Answer of GET /api/query/schema. */
export interface QuerySchema {
  tables: { name: string; columns: { name: string; type: string }[] }[];
}

export interface BatchView {
  name: string;
  concurrencyLimit: number | null;
  queued: number;
  active: number;
  createdAt: string;
}

/** Stored run states that are over: such a run cannot be killed. */
export const FINISHED_STATUSES = new Set(['submitted', 'manual-scoring', 'error', 'killed', 'usage-limits']);
