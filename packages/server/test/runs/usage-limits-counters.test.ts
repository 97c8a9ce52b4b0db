import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chargeGeneration, DbUsageCounters } from '../../src/runs/hooks/usage-counters.js';
import { createHarness, type Harness } from '../hooks/harness.js';

/** The per-branch counters usage limits read (runs/hooks/usage-counters.ts), on a real PGlite database. */
describe('usage counters', () => {
  let h: Harness;
  let counters: DbUsageCounters;
  beforeAll(async () => {
    h = await createHarness();
    counters = new DbUsageCounters(h.database.db);
  });
  afterAll(async () => h?.close());

  it('takes actions up to the limit and not one more, even when asked concurrently', async () => {
    const { runId } = await h.newRun();
    const key = { runId, agentBranchNumber: 0 };
    expect(await counters.takeAction(key, 0)).toBeUndefined();
    const taken = await Promise.all(Array.from({ length: 12 }, () => counters.takeAction(key, 7)));
    expect(taken.filter((t) => t !== undefined)).toHaveLength(7);
    expect(new Set(taken.filter((t) => t !== undefined))).toEqual(new Set([1, 2, 3, 4, 5, 6, 7]));
    const window = { start: new Date(Date.now() - 1000), end: new Date() };
    expect((await counters.read(key, window)).actions).toBe(7);
    await counters.returnAction(key);
    expect((await counters.read(key, window)).actions).toBe(6);
  });

  it('adds generations and burned tokens into one total; unknown cost stays out of cost', async () => {
    const { runId } = await h.newRun();
    const key = { runId, agentBranchNumber: 0 };
    const charge = { inputTokens: 10, outputTokens: 5, cacheReadTokens: 0, generationMs: 100, retryWaitMs: 250 };
    await chargeGeneration(h.database.db, key, { ...charge, cost: 0.25 });
    await chargeGeneration(h.database.db, key, { ...charge, cost: null });
    await counters.addBurnedTokens(key, 3, 4);
    const read = await counters.read(key, { start: new Date(0), end: new Date() });
    expect(read).toMatchObject({ inputTokens: 23, outputTokens: 14, cost: 0.25, retryWaitMs: 500, actions: 0 });
  });

  it('counts only the part of each pause inside the window, an open pause up to its end', async () => {
    const { runId } = await h.newRun();
    const key = { runId, agentBranchNumber: 0 };
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    const at = (s: number) => new Date(t0 + s * 1000);
    // 10 s before the window starts … 5 s inside it.
    await h.repo.insertPause({ ...key, start: at(-10), reason: 'legacy' });
    await h.repo.endOpenPause(runId, 0, at(5));
    await h.repo.insertPause({ ...key, start: at(20), reason: 'legacy' });
    await h.repo.endOpenPause(runId, 0, at(30));
    // Open since 50 s; the window ends at 60 s.
    await h.repo.insertPause({ ...key, start: at(50), reason: 'pause-hook' });
    const read = await counters.read(key, { start: at(0), end: at(60) });
    expect(read.pausedMs).toBe(5_000 + 10_000 + 10_000);
    expect(read.openPauseReason).toBe('pause-hook');
    // A branch with no row and no pauses reads as zero.
    const empty = await counters.read({ runId, agentBranchNumber: 7 }, { start: at(0), end: at(60) });
    expect(empty).toEqual({
      actions: 0,
      inputTokens: 0,
      outputTokens: 0,
      cost: 0,
      retryWaitMs: 0,
      pausedMs: 0,
      openPauseReason: null,
    });
  });

  it('answers a usage check in the same few queries however long the trace is', async () => {
    const { runId } = await h.newRun();
    const key = { runId, agentBranchNumber: 0 };
    // Thousands of entries the counters never read: actions written straight to the trace are not counted.
    for (let i = 0; i < 20; i++) {
      await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          h.repo.appendTraceEntry({ ...key, kind: 'action', content: { action: { i, j } } }),
        ),
      );
    }
    expect((await h.hooks.usage(key)).actions).toBe(0);
    await h.hooks.record(runId, 0, 'action', { action: { counted: true } });
    expect((await h.hooks.usage(key)).actions).toBe(1);
  }, 60_000);
});
