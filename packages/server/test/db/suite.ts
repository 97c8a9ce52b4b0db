/**
 * The database cases every engine must pass (PGlite in memory, PGlite on disk, PostgreSQL).
 * Queries are written once against the `Database` type.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { and, asc, eq, sql } from 'drizzle-orm';
import { expect, it } from 'vitest';
import type { Database, DatabaseHandle } from '../../src/db/client.js';
import { MIGRATIONS_FOLDER } from '../../src/db/client.js';
import { agentBranches, runBatches, runs, taskEnvironments, traceEntries, users } from '../../src/db/schema.js';
import { DrizzleRunRepository } from '../../src/runs/db-repository.js';

export const ALL_TABLES = ['agent_branches', 'run_batches', 'runs', 'task_environments', 'trace_entries', 'users'];

export function journalEntryCount(): number {
  const journal = JSON.parse(readFileSync(join(MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as {
    entries: unknown[];
  };
  return journal.entries.length;
}

export async function publicTables(db: Database): Promise<string[]> {
  const result = await db.execute<{ table_name: string }>(
    sql`select table_name from information_schema.tables where table_schema = 'public' order by table_name`,
  );
  return result.rows.map((r) => r.table_name);
}

export async function appliedMigrationCount(db: Database): Promise<number> {
  const result = await db.execute<{ n: number }>(sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
  return result.rows[0]!.n;
}

/** The SQLSTATE of a database error, looking through drizzle's wrapping (DrizzleQueryError.cause). */
export function sqlState(error: unknown): string | undefined {
  let e: unknown = error;
  for (let depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export async function expectSqlState(promise: Promise<unknown>, state: string): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected the query to fail with SQLSTATE ${state}`).toBeDefined();
  expect(sqlState(caught), String(caught)).toBe(state);
}

/** A user and a run of theirs (with the trunk branch); ids are unique per call. */
export async function seedRun(db: Database, overrides: Partial<typeof runs.$inferInsert> = {}) {
  const userId = `user-${randomUUID()}`;
  await db.insert(users).values({ id: userId, name: 'Ada', email: 'ada@example.com' });
  const [run] = await db
    .insert(runs)
    .values({
      taskId: 'count_odds/main',
      taskFamilyName: 'count_odds',
      taskName: 'main',
      taskFamilyDir: '/tasks/count_odds',
      agentDir: '/agents/echo',
      agentName: 'echo',
      userId,
      ...overrides,
    })
    .returning();
  await db.insert(agentBranches).values({ runId: run!.id, agentBranchNumber: 0, isRunning: true });
  return { userId, run: run! };
}

/** Registers the shared cases. `getHandle` returns a migrated handle (called inside each test). */
export function defineDatabaseCases(getHandle: () => DatabaseHandle): void {
  it('migrate creates every table and records every migration', async () => {
    const { db } = getHandle();
    expect(await publicTables(db)).toEqual(expect.arrayContaining(ALL_TABLES));
    expect(await appliedMigrationCount(db)).toBe(journalEntryCount());
  });

  it('migrate again is a no-op that keeps the data', async () => {
    const handle = getHandle();
    const { userId } = await seedRun(handle.db);
    const before = await appliedMigrationCount(handle.db);
    await handle.migrate();
    await Promise.all([handle.migrate(), handle.migrate()]);
    expect(await appliedMigrationCount(handle.db)).toBe(before);
    expect(await handle.db.select().from(users).where(eq(users.id, userId))).toHaveLength(1);
  });

  it('stores a run with defaults and reads it back', async () => {
    const { db } = getHandle();
    const startedAt = new Date('2024-05-06T07:08:09.123Z');
    const { run, userId } = await seedRun(db, { startedAt });
    expect(typeof run.id).toBe('number');
    expect(run).toMatchObject({
      taskId: 'count_odds/main',
      userId,
      status: 'queued',
      batchName: null,
      errorStep: null,
      metadata: {},
      setupSteps: [],
      startedAt,
      finishedAt: null,
    });
    expect(run.createdAt).toBeInstanceOf(Date);
    expect(Math.abs(run.createdAt.getTime() - Date.now())).toBeLessThan(60_000);

    const [second] = await db
      .insert(runs)
      .values({ ...stripRun(run), status: 'queued' })
      .returning({ id: runs.id });
    expect(second!.id).toBeGreaterThan(run.id);

    const [updated] = await db
      .update(runs)
      .set({ status: 'error', errorStep: 'build-image', errorMessage: 'boom' })
      .where(eq(runs.id, run.id))
      .returning();
    expect(updated).toMatchObject({ status: 'error', errorStep: 'build-image', errorMessage: 'boom' });
    expect(updated!.updatedAt.getTime()).toBeGreaterThanOrEqual(run.updatedAt.getTime());
  });

  it('stores branches and trace entries and reads them back in order', async () => {
    const { db } = getHandle();
    const { run } = await seedRun(db);
    const t0 = Date.now();

    // Trunk entries, inserted in one transaction; branch 1 forks from the trunk at its second entry.
    const trunk = await db.transaction(async (tx) => {
      const rows = [];
      for (let index = 0; index < 5; index++) {
        const [row] = await tx
          .insert(traceEntries)
          .values({
            runId: run.id,
            agentBranchNumber: 0,
            index,
            kind: 'log',
            content: { content: [`message ${index}`] },
            calledAt: new Date(t0 + index * 1000),
            agentTimestamp: new Date(t0 + index * 1000 - 5),
          })
          .returning();
        rows.push(row!);
      }
      return rows;
    });
    await db.insert(agentBranches).values({
      runId: run.id,
      agentBranchNumber: 1,
      parentAgentBranchNumber: 0,
      parentTraceEntryId: trunk[1]!.id,
    });
    // Inserted out of index order on purpose.
    await db.insert(traceEntries).values([
      { runId: run.id, agentBranchNumber: 1, index: 1, kind: 'action', content: { action: { cmd: 'ls' } } },
      { runId: run.id, agentBranchNumber: 1, index: 0, kind: 'log', content: { content: ['fork'] } },
    ]);

    const readTrunk = await db
      .select()
      .from(traceEntries)
      .where(and(eq(traceEntries.runId, run.id), eq(traceEntries.agentBranchNumber, 0)))
      .orderBy(asc(traceEntries.calledAt));
    expect(readTrunk.map((e) => e.index)).toEqual([0, 1, 2, 3, 4]);
    expect(readTrunk.map((e) => e.content)).toEqual([0, 1, 2, 3, 4].map((i) => ({ content: [`message ${i}`] })));
    expect(readTrunk[2]!.calledAt).toEqual(new Date(t0 + 2000));
    expect(readTrunk[2]!.agentTimestamp).toEqual(new Date(t0 + 1995));
    expect(readTrunk.map((e) => e.id)).toEqual([...readTrunk.map((e) => e.id)].sort((a, b) => a - b));

    const readFork = await db
      .select({ index: traceEntries.index, kind: traceEntries.kind })
      .from(traceEntries)
      .where(and(eq(traceEntries.runId, run.id), eq(traceEntries.agentBranchNumber, 1)))
      .orderBy(asc(traceEntries.index));
    expect(readFork).toEqual([
      { index: 0, kind: 'log' },
      { index: 1, kind: 'action' },
    ]);

    const branches = await db
      .select()
      .from(agentBranches)
      .where(eq(agentBranches.runId, run.id))
      .orderBy(asc(agentBranches.agentBranchNumber));
    expect(branches.map((b) => [b.agentBranchNumber, b.parentAgentBranchNumber, b.parentTraceEntryId])).toEqual([
      [0, null, null],
      [1, 0, trunk[1]!.id],
    ]);

    // Whole run, ordered by id (the (run_id, id) index).
    const all = await db
      .select({ id: traceEntries.id })
      .from(traceEntries)
      .where(eq(traceEntries.runId, run.id))
      .orderBy(asc(traceEntries.id));
    expect(all).toHaveLength(7);

    // Duplicate (run, branch, index) is refused.
    await expectSqlState(
      db.insert(traceEntries).values({ runId: run.id, agentBranchNumber: 0, index: 3, kind: 'log', content: {} }),
      '23505',
    );

    // Branch result columns.
    await db
      .update(agentBranches)
      .set({
        submission: '42',
        score: 0.75,
        scoreStatus: 'scored',
        isRunning: false,
        completedAt: new Date(t0),
        agentCommandResult: { exitCode: 0, stdoutTail: 'done\n', stderrTail: '', durationMs: 1234 },
      })
      .where(and(eq(agentBranches.runId, run.id), eq(agentBranches.agentBranchNumber, 0)));
    const [trunkBranch] = await db
      .select()
      .from(agentBranches)
      .where(and(eq(agentBranches.runId, run.id), eq(agentBranches.agentBranchNumber, 0)));
    expect(trunkBranch).toMatchObject({
      submission: '42',
      score: 0.75,
      isRunning: false,
      completedAt: new Date(t0),
      agentCommandResult: { exitCode: 0, stdoutTail: 'done\n', stderrTail: '', durationMs: 1234 },
      fatalError: null,
    });
  });

  it('gives concurrent appends to one branch distinct consecutive indexes, without retries', async () => {
    const { db } = getHandle();
    const { run } = await seedRun(db);
    const repo = new DrizzleRunRepository(db);
    const appends = 200;
    const ids = await Promise.all(
      Array.from({ length: appends }, (_, n) =>
        repo.appendTraceEntry({ runId: run.id, agentBranchNumber: 0, kind: 'log', content: { n } }),
      ),
    );
    expect(new Set(ids).size).toBe(appends);
    const rows = await db
      .select({ index: traceEntries.index })
      .from(traceEntries)
      .where(eq(traceEntries.runId, run.id))
      .orderBy(asc(traceEntries.index));
    expect(rows.map((r) => r.index)).toEqual(Array.from({ length: appends }, (_, n) => n));
  });

  it('continues the index of entries written before the branch had a counter', async () => {
    const { db } = getHandle();
    const { run } = await seedRun(db);
    await db
      .insert(traceEntries)
      .values(
        [0, 1, 2].map((index) => ({ runId: run.id, agentBranchNumber: 0, index, kind: 'log', content: { index } })),
      );
    const id = await new DrizzleRunRepository(db).appendTraceEntry({
      runId: run.id,
      agentBranchNumber: 0,
      kind: 'log',
      content: { late: true },
    });
    const [row] = await db.select().from(traceEntries).where(eq(traceEntries.id, id));
    expect(row).toMatchObject({ index: 3, content: { late: true } });
    await expect(
      new DrizzleRunRepository(db).appendTraceEntry({ runId: run.id, agentBranchNumber: 5, kind: 'log', content: {} }),
    ).rejects.toThrow(/has no agent branch 5/);
  });

  it('round-trips jsonb values exactly', async () => {
    const { db } = getHandle();
    const metadata = {
      nested: { deep: [1, 2.5, -3e-7, { x: null }], flag: true },
      unicode: 'héllo wörld — 你好 🚀',
      quotes: `it's "quoted" \\ back\\slash`,
      big: 9007199254740991,
      empty: {},
      emptyList: [],
    };
    const setupSteps = [
      {
        step: 'build-image',
        status: 'succeeded',
        startedAt: '2024-01-01T00:00:00.000Z',
        finishedAt: '2024-01-01T00:00:02.500Z',
        durationMs: 2500,
        stdoutTail: 'Step 1/3\n',
        stderrTail: '',
        error: null,
      },
      { step: 'agent', status: 'running', startedAt: '2024-01-01T00:00:03.000Z', finishedAt: null, durationMs: null },
    ];
    const { run } = await seedRun(db, { metadata, setupSteps });
    const [read] = await db.select().from(runs).where(eq(runs.id, run.id));
    expect(read!.metadata).toStrictEqual(metadata);
    expect(read!.setupSteps).toStrictEqual(setupSteps);

    // Any JSON value as trace content, including top-level strings that look like other JSON. (A JS null is SQL NULL,
    // which the not-null content column refuses.)
    const contents: unknown[] = [{ a: 1 }, [1, 'two', null], 'plain', '123', 'true', 'null', 42, true, ''];
    await db
      .insert(traceEntries)
      .values(contents.map((content, index) => ({ runId: run.id, agentBranchNumber: 0, index, kind: 'log', content })));
    const entries = await db
      .select({ content: traceEntries.content })
      .from(traceEntries)
      .where(eq(traceEntries.runId, run.id))
      .orderBy(asc(traceEntries.index));
    expect(entries.map((e) => e.content)).toStrictEqual(contents);

    // jsonb operators work in queries (parameters, not string building).
    const matched = await db
      .select({ id: runs.id })
      .from(runs)
      .where(and(eq(runs.id, run.id), sql`${runs.metadata} -> 'nested' ->> 'flag' = ${'true'}`));
    expect(matched).toEqual([{ id: run.id }]);
    const contained = await db
      .select({ id: runs.id })
      .from(runs)
      .where(and(eq(runs.id, run.id), sql`${runs.setupSteps} @> ${JSON.stringify([{ step: 'agent' }])}::jsonb`));
    expect(contained).toHaveLength(1);

    const fatalError = { from: 'agent', message: 'crashed', detail: { exitCode: 137 }, trace: 'Traceback…' };
    await db
      .update(agentBranches)
      .set({ fatalError })
      .where(and(eq(agentBranches.runId, run.id), eq(agentBranches.agentBranchNumber, 0)));
    const [branch] = await db
      .select({ fatalError: agentBranches.fatalError })
      .from(agentBranches)
      .where(eq(agentBranches.runId, run.id));
    expect(branch!.fatalError).toStrictEqual(fatalError);
  });

  it('enforces foreign keys', async () => {
    const { db } = getHandle();
    const { run, userId } = await seedRun(db);

    await expectSqlState(
      db.insert(runs).values({ ...stripRun(run), userId: `missing-${randomUUID()}` }),
      '23503', // foreign_key_violation
    );
    await expectSqlState(
      db.insert(runs).values({ ...stripRun(run), batchName: `no-such-batch-${randomUUID()}` }),
      '23503',
    );
    await expectSqlState(db.insert(runs).values({ ...stripRun(run), taskEnvironmentId: 2_000_000_000 }), '23503');
    await expectSqlState(db.insert(agentBranches).values({ runId: run.id + 1_000_000, agentBranchNumber: 0 }), '23503');
    await expectSqlState(
      db.insert(agentBranches).values({ runId: run.id, agentBranchNumber: 2, parentAgentBranchNumber: 7 }),
      '23503',
    );
    await expectSqlState(
      db.insert(traceEntries).values({ runId: run.id, agentBranchNumber: 9, index: 0, kind: 'log', content: {} }),
      '23503',
    );
    await expectSqlState(
      db.insert(taskEnvironments).values({
        containerName: `c-${randomUUID()}`,
        backend: 'docker',
        taskFamilyName: 'f',
        taskName: 't',
        userId: `missing-${randomUUID()}`,
      }),
      '23503',
    );
    await expectSqlState(db.delete(users).where(eq(users.id, userId)), '23503');

    // With the referenced rows present, the same inserts work.
    const batchName = `batch-${randomUUID()}`;
    await db.insert(runBatches).values({ name: batchName, concurrencyLimit: 3 });
    const [env] = await db
      .insert(taskEnvironments)
      .values({
        containerName: `c-${randomUUID()}`,
        backend: 'docker',
        taskFamilyName: 'count_odds',
        taskName: 'main',
        userId,
      })
      .returning();
    expect(env).toMatchObject({ isRunning: false, destroyedAt: null, sandboxId: null });
    const [run2] = await db
      .insert(runs)
      .values({ ...stripRun(run), batchName, taskEnvironmentId: env!.id })
      .returning();
    expect(run2).toMatchObject({ batchName, taskEnvironmentId: env!.id });

    // Deleting a run deletes its branches and trace entries.
    await db
      .insert(traceEntries)
      .values({ runId: run.id, agentBranchNumber: 0, index: 0, kind: 'log', content: { content: ['x'] } });
    await db.delete(runs).where(eq(runs.id, run.id));
    expect(await db.select().from(agentBranches).where(eq(agentBranches.runId, run.id))).toEqual([]);
    expect(await db.select().from(traceEntries).where(eq(traceEntries.runId, run.id))).toEqual([]);
  });

  it('rolls back a failed transaction', async () => {
    const { db } = getHandle();
    const userId = `user-${randomUUID()}`;
    await expect(
      db.transaction(async (tx) => {
        await tx.insert(users).values({ id: userId, name: 'Temporary' });
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(await db.select().from(users).where(eq(users.id, userId))).toEqual([]);
  });
}

/** A run row as insert values for another run (without its identity and timestamps). */
function stripRun(run: typeof runs.$inferSelect): typeof runs.$inferInsert {
  const { id: _id, createdAt: _c, updatedAt: _u, ...rest } = run;
  return rest;
}
