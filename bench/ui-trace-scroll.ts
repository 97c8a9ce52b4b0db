/**
 * How smoothly the run page scrolls a long trace, in Debian's Chromium:
 *  - seeds a run with N trace entries (default 100,000: a mix of kinds, with frames) straight into a PGlite data
 *    directory, then starts a real server on it serving the built UI;
 *  - opens the run page, reports the time until the trace is loaded (all entries streamed and laid out);
 *  - scrolls the trace continuously (a fixed step per animation frame, like a fast wheel or a dragged scrollbar,
 *    plus jumps to random places) and reports frame times: median, p95, p99, max, and frames over 50 ms.
 *
 *   npm run build -w packages/ui   # or: (cd packages/ui && npx vite build)
 *   npx tsx bench/ui-trace-scroll.ts [--entries 100000] [--seconds 5] [--data-dir DIR]
 *
 * Seeding 100,000 entries into PGlite takes minutes on a small machine: with --data-dir, a directory seeded by an
 * earlier run is used again (and kept).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createDatabase } from '../packages/server/src/db/index.js';
import { traceEntries } from '../packages/server/src/db/schema.js';
import { DrizzleRunRepository } from '../packages/server/src/runs/db-repository.js';
import { seedRun } from '../packages/server/test/helpers/runs.js';
import { startUiHarness } from '../packages/ui/e2e/harness.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const total = arg('entries', 100_000);
const seconds = arg('seconds', 5);

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

function content(i: number): { kind: string; content: unknown } {
  switch (i % 10) {
    case 0:
      return { kind: 'frame-start', content: { name: `step ${i / 10}`, parentFrameId: null } };
    case 9:
      return { kind: 'frame-end', content: { frameId: null } };
    case 1:
      return {
        kind: 'generation',
        content: {
          api: 'middleman.generate',
          model: 'gpt-4o-mini',
          provider: 'openai',
          stream: false,
          request: { messages: [{ role: 'user', content: `What next after step ${i}?` }] },
          completion: { completions: [`Run the tests (${i})`], finishReasons: ['stop'] },
          usage: { inputTokens: 120 + (i % 50), outputTokens: 30, cost: 0.00004 },
          durationMs: 800,
          retryWaitMs: 0,
          attempts: 1,
        },
      };
    case 2:
      return { kind: 'action', content: { action: { command: `pytest -k case_${i}` } } };
    case 3:
      return { kind: 'observation', content: { observation: { stdout: `${i} passed`.repeat(3), exitCode: 0 } } };
    case 4:
      return { kind: 'agent-output', content: { stream: 'stdout', text: `line ${i}\n` } };
    case 5:
      return { kind: 'error', content: { from: 'agent', detail: `retrying after ${i}`, trace: null } };
    default:
      return { kind: 'log', content: { content: [`thinking about entry ${i} of ${total}`] } };
  }
}

// 1. Seed a data directory (as a server would have written it), then hand it to a server.
const dirArg = process.argv.indexOf('--data-dir');
const keepDir = dirArg >= 0 ? path.resolve(process.argv[dirArg + 1]!) : undefined;
const dataDir = keepDir ?? (await mkdtemp(path.join(tmpdir(), 'terrarium-bench-ui-')));
const runId = 1;
if (!existsSync(path.join(dataDir, 'pglite', 'PG_VERSION'))) {
  const seedStarted = performance.now();
  const database = await createDatabase({ kind: 'pglite', dataDir: path.join(dataDir, 'pglite') });
  await database.migrate();
  const repo = new DrizzleRunRepository(database.db);
  await repo.ensureUser('u1', 'Bench user');
  const seeded = await seedRun(repo, { status: 'submitted', branchRunning: false });
  if (seeded.runId !== runId) throw new Error(`expected a fresh database (run ${seeded.runId} was created)`);
  const start = Date.now() - total * 100;
  for (let from = 0; from < total; from += 2_000) {
    const rows = [];
    for (let i = from; i < Math.min(total, from + 2_000); i++) {
      const { kind, content: c } = content(i);
      rows.push({ runId, agentBranchNumber: 0, index: i, kind, content: c, calledAt: new Date(start + i * 100) });
    }
    await database.db.insert(traceEntries).values(rows);
  }
  // No ANALYZE here: a real server's trace grows through the API, and it is the server's job to keep PGlite's
  // statistics current (PGlite runs no autovacuum; see packages/server/src/db/pglite-analyze.ts).
  await database.close();
  console.log(`seeded ${total.toLocaleString()} entries in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s`);
}

const ui = await startUiHarness({ server: { withBaseImage: false, env: { TERRARIUM_DATA_DIR: dataDir } } });
try {
  await ui.signIn();
  const { page } = ui;
  const opened = performance.now();
  await page.goto(`${ui.baseUrl}/runs/${runId}`);
  await page.locator('article.entry').first().waitFor({ timeout: 120_000 });
  const firstRows = performance.now() - opened;
  await page
    .getByTestId('entry-count')
    .filter({ hasText: total.toLocaleString('en-US') })
    .waitFor({ timeout: 300_000 });
  const loaded = performance.now() - opened;
  // Stop following new entries so the scroll is ours.
  await page
    .getByLabel('Follow new entries')
    .uncheck({ timeout: 10_000 })
    .catch(async (error: unknown) => {
      console.error(`the page: ${await ui.screenshot('run-page-100k-failed')}`);
      throw error;
    });
  const domRows = await page.locator('article.entry').count();

  // Frames with nothing to do: the baseline of this machine (a loaded machine or software rendering shows here).
  const idle = (await page.evaluate(`(async () => {
    const frames = [];
    let last = performance.now();
    const started = last;
    await new Promise((resolve) => {
      function tick(now) {
        frames.push(now - last);
        last = now;
        if (now - started > 2000) return resolve();
        requestAnimationFrame(tick);
      }
      requestAnimationFrame(tick);
    });
    return frames.slice(1);
  })()`)) as number[];

  // A string, not a function: tsx would wrap named inner functions in a helper (__name) the page does not have.
  const result = (await page.evaluate(`(async (durationMs) => {
    const scroller = document.querySelector('[data-testid="trace-scroll"]');
    const frames = [];
    const max = scroller.scrollHeight - scroller.clientHeight;
    let last = performance.now();
    const started = last;
    let jumps = 0;
    await new Promise((resolve) => {
      function step(now) {
        frames.push(now - last);
        last = now;
        if (now - started > durationMs) return resolve();
        // Mostly a fast continuous scroll (40 px a frame, ~2,400 px/s at 60 fps); every 30th frame a jump anywhere.
        if (frames.length % 30 === 0) {
          scroller.scrollTop = Math.random() * max;
          jumps++;
        } else scroller.scrollTop = (scroller.scrollTop + 40) % max;
        requestAnimationFrame(step);
      }
      requestAnimationFrame(step);
    });
    return { frames: frames.slice(1), jumps, scrollHeight: scroller.scrollHeight };
  })(${seconds * 1000})`)) as { frames: number[]; jumps: number; scrollHeight: number };

  const f = result.frames;
  const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
  console.log(
    `first rows visible after ${fmt(firstRows)}; all ${total.toLocaleString()} entries loaded after ${fmt(loaded)}`,
  );
  console.log(`rows in the DOM: ${domRows}; scroll height ${result.scrollHeight.toLocaleString()} px`);
  console.log(
    `scrolling ${seconds} s (${f.length} frames, ${result.jumps} random jumps): median ${fmt(percentile(f, 50))}, ` +
      `p95 ${fmt(percentile(f, 95))}, p99 ${fmt(percentile(f, 99))}, max ${fmt(Math.max(...f))}, ` +
      `frames over 50 ms: ${f.filter((t) => t > 50).length}; ${(f.length / seconds).toFixed(0)} fps`,
  );
  console.log(
    `idle frames for comparison (2 s, no scrolling): median ${fmt(percentile(idle, 50))}, p95 ${fmt(percentile(idle, 95))}; ` +
      `load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} on ${cpus().length} cores`,
  );
  await ui.screenshot('run-page-100k');
} finally {
  await ui.close();
  if (!keepDir) await rm(dataDir, { recursive: true, force: true });
}
