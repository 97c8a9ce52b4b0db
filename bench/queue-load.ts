/**
 * Load test of the run queue with real containers, loopback only, bounded in count and time.
 *
 * Queues N runs (default 200) of a tiny task (hello_world/sum solved by the file_solver agent, which needs no LLM)
 * into one batch with a concurrency limit (default 20), then checks and prints:
 *  - that at most `limit` runs of the batch were active at once (from each run's claim and end times, and sampled
 *    from the batch's live `active` count);
 *  - that every run finished (and how many were scored 1);
 *  - runs per minute (first creation → last end) and median / p95 queue-to-start latency (created → claimed).
 *
 * Then the same engine with the reference design's policy, one run started per 6-second tick
 * (RunQueue startsPerPass: 1, timerOnly, VIVARIA_RUN_QUEUE_INTERVAL_MS=6000), on a smaller sample (default 12 runs,
 * since 200 would take 20 minutes by construction), plus what that policy means for N runs.
 *
 *   npx tsx bench/queue-load.ts [--runs 200] [--limit 20] [--tick-runs 12] [--timeout-min 25] [--skip-tick]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTerminalRunStatus, type QueuedRunView } from '@terrarium/shared';
import { loadConfig } from '../packages/server/src/config/index.js';
import { type RunningServer, startServer } from '../packages/server/src/server.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
};
const RUNS = Math.min(arg('--runs', 200), 500);
const LIMIT = arg('--limit', 20);
const TICK_RUNS = Math.min(arg('--tick-runs', 12), 50);
const TIMEOUT_MS = arg('--timeout-min', 25) * 60_000;
const SKIP_TICK = process.argv.includes('--skip-tick');
const examples = fileURLToPath(new URL('../examples', import.meta.url));

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

interface Measured {
  runs: number;
  submitted: number;
  notFinished: number;
  wallMs: number;
  runsPerMinute: number;
  medianLatencyMs: number;
  p95LatencyMs: number;
  peakFromTimes: number;
  peakSampled: number;
}

/** Most intervals [start, end) overlapping at one instant. */
function maxOverlap(intervals: [number, number][]): number {
  const events = intervals.flatMap(([s, e]) => [
    [s, 1],
    [e, -1],
  ]);
  // Ends before starts at the same instant: a slot freed and taken in the same millisecond is not an overlap.
  events.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let now = 0;
  let peak = 0;
  for (const [, delta] of events) {
    now += delta!;
    peak = Math.max(peak, now);
  }
  return peak;
}

async function measure(
  label: string,
  runs: number,
  limit: number,
  env: Record<string, string>,
  queuePolicy?: { startsPerPass?: number; timerOnly?: boolean },
): Promise<Measured> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'terrarium-bench-load-'));
  const config = loadConfig({
    ...process.env,
    // Loopback only; the host-load gate would hold the queue on this small machine, which is not what is measured.
    TERRARIUM_HOST: '127.0.0.1',
    VM_HOST_MAX_CPU: '1',
    VM_HOST_MAX_MEMORY: '1',
    ...env,
    TERRARIUM_DATA_DIR: dataDir,
    PORT: process.env.PORT ?? '4013',
  });
  let server: RunningServer | undefined;
  try {
    server = await startServer(config, { logDestination: path.join(dataDir, 'server.jsonl'), queuePolicy });
    const url = server.url;
    const headers = { authorization: `Bearer ${config.ACCESS_TOKEN}`, 'content-type': 'application/json' };
    const api = async <T>(method: string, route: string, body?: unknown): Promise<T> => {
      const response = await fetch(`${url}${route}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const data = (await response.json()) as T;
      if (!response.ok) throw new Error(`${method} ${route}: HTTP ${response.status} ${JSON.stringify(data)}`);
      return data;
    };
    const request = (batchName: string) => ({
      taskFamilyDir: path.join(examples, 'task-families/hello_world'),
      taskName: 'sum',
      agentDir: path.join(examples, 'agents/file_solver'),
      batchName,
    });
    const deadline = Date.now() + TIMEOUT_MS;
    process.stderr.write(`[${label}] warm-up run (builds the task image if needed)…\n`);
    const warm = await api<QueuedRunView>('POST', '/api/runs', request('bench-warm-up'));
    while (!isTerminalRunStatus((await api<QueuedRunView>('GET', `/api/runs/${warm.id}`)).status as never)) {
      if (Date.now() > deadline) throw new Error('the warm-up run did not finish in time');
      await new Promise((r) => setTimeout(r, 250));
    }
    await api('PUT', '/api/batches/load', { concurrencyLimit: limit });
    process.stderr.write(`[${label}] queueing ${runs} runs, batch limit ${limit}…\n`);
    const ids: number[] = [];
    for (let i = 0; i < runs; i += 20) {
      const chunk = await Promise.all(
        Array.from({ length: Math.min(20, runs - i) }, () => api<QueuedRunView>('POST', '/api/runs', request('load'))),
      );
      ids.push(...chunk.map((run) => run.id));
    }
    let peakSampled = 0;
    let views: QueuedRunView[] = [];
    let lastReport = 0;
    for (;;) {
      const batch = await api<{ active: number; queued: number }>('GET', '/api/batches/load');
      peakSampled = Math.max(peakSampled, batch.active);
      const all = await api<QueuedRunView[]>('GET', `/api/runs?limit=${runs + 10}`);
      views = all.filter((run) => ids.includes(run.id));
      const done = views.filter((run) => isTerminalRunStatus(run.status as never)).length;
      if (Date.now() - lastReport > 10_000) {
        process.stderr.write(`[${label}] ${done}/${runs} finished, ${batch.active} active, ${batch.queued} queued\n`);
        lastReport = Date.now();
      }
      if (done === runs || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const finished = views.filter((v) => isTerminalRunStatus(v.status as never));
    const created = Math.min(...views.map((v) => Date.parse(v.createdAt)));
    const lastEnd = Math.max(...finished.map((v) => Date.parse(v.finishedAt!)));
    const started = views.filter((v) => v.startedAt);
    const latencies = started.map((v) => Date.parse(v.startedAt!) - Date.parse(v.createdAt));
    const intervals = started.map(
      (v) => [Date.parse(v.startedAt!), v.finishedAt ? Date.parse(v.finishedAt) : Date.now()] as [number, number],
    );
    const wallMs = lastEnd - created;
    return {
      runs,
      submitted: views.filter((v) => v.status === 'submitted' && v.score === 1).length,
      notFinished: runs - finished.length,
      wallMs,
      runsPerMinute: finished.length / (wallMs / 60_000),
      medianLatencyMs: percentile(latencies, 50),
      p95LatencyMs: percentile(latencies, 95),
      peakFromTimes: maxOverlap(intervals),
      peakSampled,
    };
  } finally {
    await server?.close({ drain: false }).catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }
}

function report(label: string, m: Measured, limit: number) {
  console.log(`\n${label}`);
  console.log(`  runs: ${m.runs}; scored 1: ${m.submitted}; not finished: ${m.notFinished}`);
  console.log(
    `  throughput: ${m.runsPerMinute.toFixed(1)} runs/min (${seconds(m.wallMs)} from first creation to last end)`,
  );
  console.log(`  queue-to-start latency: median ${seconds(m.medianLatencyMs)}, p95 ${seconds(m.p95LatencyMs)}`);
  console.log(
    `  peak active runs of the batch: ${m.peakFromTimes} from claim/end times, ${m.peakSampled} sampled (limit ${limit})`,
  );
}

const fast = await measure('batch', RUNS, LIMIT, { VIVARIA_RUN_QUEUE_INTERVAL_MS: '1000' });
report(
  `Terrarium queue (fills every free slot in one pass, poked on create/end): ${RUNS} runs, limit ${LIMIT}`,
  fast,
  LIMIT,
);
let failed = fast.notFinished > 0 || fast.peakFromTimes > LIMIT || fast.peakSampled > LIMIT;

if (!SKIP_TICK) {
  const tick = await measure(
    'tick',
    TICK_RUNS,
    LIMIT,
    { VIVARIA_RUN_QUEUE_INTERVAL_MS: '6000' },
    { startsPerPass: 1, timerOnly: true },
  );
  report(
    `One run per 6-second tick (reference design's default), same engine: ${TICK_RUNS} runs, limit ${LIMIT}`,
    tick,
    LIMIT,
  );
  // With all runs queued at once, run k (0-based) starts at the k-th tick: ~6k s after creation.
  const projectedWall = RUNS * 6 + fast.wallMs / 1000 / Math.max(1, RUNS / LIMIT);
  console.log(
    `  projected for ${RUNS} runs: ≥ ${((RUNS - 1) * 6).toFixed(0)} s until the last start (≈ ${(RUNS / (projectedWall / 60)).toFixed(1)} runs/min at best, ≤ 10 by construction); median queue-to-start ≈ ${((RUNS / 2) * 6).toFixed(0)} s`,
  );
  failed ||= tick.notFinished > 0;
}
if (failed) {
  console.error('\nFAILED: a run did not finish, or the batch ran more runs at once than its limit.');
  process.exitCode = 1;
}
