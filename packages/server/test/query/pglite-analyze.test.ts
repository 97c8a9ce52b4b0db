import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type DatabaseHandle } from '../../src/db/client.js';
import { analyzeStaleTables, startPgliteAnalyzer } from '../../src/db/index.js';

/** PGlite has no autovacuum: the server analyzes stale tables itself (real PGlite, real planner). */
describe('PGlite statistics (no autovacuum)', () => {
  let handle: DatabaseHandle;
  const pglite = () => {
    if (handle.kind !== 'pglite') throw new Error('expected PGlite');
    return handle.pglite;
  };
  const reltuples = async (table: string) =>
    Number(
      (await pglite().query<{ n: number }>('SELECT reltuples AS n FROM pg_class WHERE relname = $1', [table])).rows[0]!
        .n,
    );
  // Changes reach pg_stat_user_tables when a later transaction ends at least a second after the last flush
  // (PostgreSQL's PGSTAT_MIN_INTERVAL; PGlite flushes them no other way).
  const statsFlushed = async () => {
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await pglite().query('SELECT 1');
  };

  beforeAll(async () => {
    handle = await createDatabase({ kind: 'pglite', dataDir: 'memory' });
    await handle.migrate();
    await pglite().query("INSERT INTO users (id, name) VALUES ('u1', 'User')");
    await pglite().query(
      `INSERT INTO runs (task_id, task_family_name, task_name, agent_name, user_id, status)
       VALUES ('f/t', 'f', 't', 'a', 'u1', 'running'), ('f/t', 'f', 't', 'a', 'u1', 'running')`,
    );
    await pglite().query(
      'INSERT INTO agent_branches (run_id, agent_branch_number) VALUES (1, 0), (2, 0), (1, 1), (1, 2), (2, 3)',
    );
    await pglite().query(
      `INSERT INTO trace_entries (run_id, agent_branch_number, index, kind, content, called_at)
       SELECT 1 + (g % 2), 0, g, 'log', '{}'::jsonb, now() FROM generate_series(1, 20000) AS g`,
    );
  });
  afterAll(async () => handle?.close());

  it('analyzes the tables that were never analyzed or changed a lot, and only those', async () => {
    await statsFlushed();
    expect(await reltuples('trace_entries')).toBe(-1);
    const analyzed = await analyzeStaleTables(pglite());
    expect(analyzed).toContain('trace_entries');
    expect(analyzed).toContain('runs');
    expect(await reltuples('trace_entries')).toBe(20_000);
    // Nothing changed since: nothing to do.
    await statsFlushed();
    expect(await analyzeStaleTables(pglite())).toEqual([]);
    // A few rows more (under 50 + 10%) do not trigger it; many more do.
    await pglite().query(
      `INSERT INTO trace_entries (run_id, agent_branch_number, index, kind, content, called_at)
       SELECT 1, 1, g, 'log', '{}'::jsonb, now() FROM generate_series(1, 500) AS g`,
    );
    await statsFlushed();
    expect(await analyzeStaleTables(pglite())).toEqual([]);
    await pglite().query(
      `INSERT INTO trace_entries (run_id, agent_branch_number, index, kind, content, called_at)
       SELECT 1, 2, g, 'log', '{}'::jsonb, now() FROM generate_series(1, 5000) AS g`,
    );
    await statsFlushed();
    expect(await analyzeStaleTables(pglite())).toEqual(['trace_entries']);
  });

  it('then plans the first page of a trace through the (run_id, id) index', async () => {
    const { rows } = await pglite().query<{ 'QUERY PLAN': string }>(
      'EXPLAIN SELECT * FROM trace_entries WHERE run_id = 1 AND id > 0 ORDER BY id LIMIT 500',
    );
    const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/Index Scan using trace_entries_(run_id_id_idx|pkey)/);
    expect(plan).not.toMatch(/Sort/);
  });

  it('runs in the background at start and stops cleanly', async () => {
    await pglite().query(
      `INSERT INTO trace_entries (run_id, agent_branch_number, index, kind, content, called_at)
       SELECT 2, 3, g, 'log', '{}'::jsonb, now() FROM generate_series(1, 6000) AS g`,
    );
    await statsFlushed();
    const analyzer = startPgliteAnalyzer(pglite(), { intervalMs: 60_000 });
    await analyzer.stop();
    expect(await reltuples('trace_entries')).toBe(31_500);
  });
});
