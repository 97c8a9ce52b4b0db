import type { PGlite } from '@electric-sql/pglite';
import type { Logger } from 'pino';

/**
 * PGlite runs no autovacuum, so nothing ever ANALYZEs its tables: the planner then guesses row counts (a table never
 * analyzed looks small) and picks plans that read a whole 100,000-entry trace to return its first page. This does
 * autovacuum's analyze part for it: a table is analyzed when it was never analyzed and is not empty (by its size on
 * disk: the change counts below start from zero whenever PGlite opens a data directory), or when the rows
 * changed since its last analyze exceed 50 + 10% of its rows (PostgreSQL's autovacuum_analyze_threshold and
 * autovacuum_analyze_scale_factor defaults). PostgreSQL needs none of this.
 */
const STALE_TABLES_SQL = `
  SELECT s.relname AS name
  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
  WHERE s.schemaname = 'public'
    AND (s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
         OR (c.reltuples < 0 AND pg_relation_size(c.oid) > 0))
  ORDER BY s.relname`;

/** Analyzes the tables whose statistics are missing or stale; resolves to their names. */
export async function analyzeStaleTables(pglite: PGlite): Promise<string[]> {
  const { rows } = await pglite.query<{ name: string }>(STALE_TABLES_SQL);
  for (const { name } of rows) {
    // The name comes from the catalog; quote_ident makes it a safe identifier all the same.
    const { rows: quoted } = await pglite.query<{ ident: string }>('SELECT quote_ident($1) AS ident', [name]);
    await pglite.exec(`ANALYZE ${quoted[0]!.ident}`);
  }
  return rows.map((row) => row.name);
}

export interface PgliteAnalyzer {
  /** Stops the timer and waits for an analyze in progress. */
  stop(): Promise<void>;
}

/**
 * Analyzes stale tables now (in the background: start-up does not wait) and then every `intervalMs`. Each pass holds
 * PGlite's single connection only while it analyzes (ANALYZE samples at most 30,000 rows a table, so a pass stays
 * short whatever the table sizes).
 */
export function startPgliteAnalyzer(
  pglite: PGlite,
  options: { intervalMs?: number; log?: Logger | undefined } = {},
): PgliteAnalyzer {
  const { intervalMs = 60_000, log } = options;
  let stopped = false;
  const pass = async () => {
    if (pglite.closed) return;
    const started = performance.now();
    try {
      const analyzed = await analyzeStaleTables(pglite);
      if (analyzed.length > 0) {
        log?.info(
          { tables: analyzed, ms: Math.round(performance.now() - started) },
          'analyzed PGlite tables (no autovacuum)',
        );
      }
    } catch (error) {
      if (!stopped && !pglite.closed) log?.warn({ err: error }, 'analyzing PGlite tables failed');
    }
  };
  // The first pass starts now; later ones queue behind the one before (never two at once).
  let running = pass();
  const timer = setInterval(() => {
    running = running.then(pass);
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
