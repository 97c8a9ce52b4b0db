/**
 * First render of the runs page with 10,000 runs, in Debian's Chromium against a real server (PGlite seeded with the
 * runs, their trunk scores and usage). Prints the median and range over several loads:
 *  - cold: a fresh browser context each time (no cache), from navigation start to the count "10000 of 10000 runs"
 *    and the first row on screen, timed by the page itself (a MutationObserver notes when both are in the DOM, and
 *    two animation frames later they are painted) and, as before, by playwright noticing them (which lags when the
 *    machine is loaded: it polls from another process);
 *  - warm: the same page reloaded (assets cached, as a researcher coming back);
 *  - the API call behind it (GET /api/runs-table, 10,000 rows) alone.
 *
 *   npm run build -w packages/ui && npx tsx bench/ui-runs-page.ts [--runs 10000] [--loads 7]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { createDatabase } from '../packages/server/src/db/index.js';
import { startUiHarness } from '../packages/ui/e2e/harness.js';

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const runCount = arg('runs', 10_000);
const loads = arg('loads', 7);

/**
 * Injected before the page's scripts: notes (page clock, ms since navigation start) when the runs count reads
 * `expected` and a run row exists, and when that frame has been painted (two animation frames later).
 */
const firstRenderProbe = (expected: string) => `(() => {
  const marks = (window.__runsPageMarks = {});
  const check = () => {
    if (marks.inDom) return;
    const count = document.querySelector('[data-testid="runs-count"]');
    if (!count || count.textContent !== ${JSON.stringify(expected)} || !document.querySelector('[data-run-id]')) return;
    marks.inDom = performance.now();
    requestAnimationFrame(() => requestAnimationFrame(() => { marks.painted = performance.now(); }));
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true, characterData: true });
})()`;
const probeMarks = async (page: import('playwright-core').Page) => {
  await page.waitForFunction('window.__runsPageMarks && window.__runsPageMarks.painted', undefined, {
    timeout: 60_000,
  });
  return (await page.evaluate('window.__runsPageMarks')) as { inDom: number; painted: number };
};

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const summary = (values: number[]) =>
  `median ${median(values).toFixed(0)} ms (min ${Math.min(...values).toFixed(0)}, max ${Math.max(...values).toFixed(0)}, n=${values.length})`;

// Seed a PGlite data directory before the server opens it: a few set-based statements, not 10,000 API calls.
const dataDir = await mkdtemp(path.join(tmpdir(), 'terrarium-bench-ui-'));
const database = await createDatabase({ kind: 'pglite', dataDir: path.join(dataDir, 'pglite') });
await database.migrate();
if (database.kind !== 'pglite') throw new Error('expected PGlite');
const seedStarted = performance.now();
await database.pglite.query("INSERT INTO users (id, name) VALUES ('bench', 'Bench') ON CONFLICT DO NOTHING");
await database.pglite.query("INSERT INTO run_batches (name) SELECT 'batch-' || b FROM generate_series(1, 20) AS b");
await database.pglite.query(
  `INSERT INTO runs (task_id, task_family_name, task_name, agent_name, user_id, batch_name, status, created_at)
   SELECT 'family_' || (g % 12) || '/task_' || (g % 5), 'family_' || (g % 12), 'task_' || (g % 5),
          (ARRAY['solver', 'openai_agent', 'asks_human'])[1 + g % 3], 'bench', 'batch-' || (1 + g % 20),
          (ARRAY['submitted', 'submitted', 'submitted', 'error', 'killed', 'usage-limits'])[1 + g % 6],
          now() - (g || ' minutes')::interval
   FROM generate_series(1, $1::int) AS g`,
  [runCount],
);
await database.pglite.query(
  `INSERT INTO agent_branches (run_id, agent_branch_number, score)
   SELECT id, 0, CASE WHEN status = 'submitted' THEN round((random())::numeric, 2) END FROM runs`,
);
await database.pglite.query(
  `INSERT INTO branch_usage (run_id, agent_branch_number, input_tokens, output_tokens, cost)
   SELECT id, 0, (random() * 50000)::int, (random() * 5000)::int, random() * 2 FROM runs`,
);
await database.close();
console.log(`seeded ${runCount} runs in ${(performance.now() - seedStarted).toFixed(0)} ms`);

const ui = await startUiHarness({
  server: { withBaseImage: false, env: { TERRARIUM_DATA_DIR: dataDir } },
});
try {
  const expected = `${runCount} of ${runCount} runs`;
  const api: number[] = [];
  for (let i = 0; i < loads; i++) {
    const started = performance.now();
    const { status, body } = await ui.test.api<{ rows: unknown[] }>('GET', '/api/runs-table');
    if (status !== 200 || body.rows.length !== runCount) {
      throw new Error(`runs-table answered ${status}, ${body.rows?.length} rows`);
    }
    api.push(performance.now() - started);
  }

  // Cold: a new context (empty cache), the token put in localStorage before the page loads.
  const cold: number[] = [];
  const coldPainted: number[] = [];
  const breakdown: number[][] = [];
  for (let i = 0; i < loads; i++) {
    const context = await ui.browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.addInitScript(
      `localStorage.setItem('terrarium.accessToken', ${JSON.stringify(ui.test.accessToken)})`,
    );
    await context.addInitScript(firstRenderProbe(expected));
    const page = await context.newPage();
    await page.goto(`${ui.baseUrl}/runs`, { waitUntil: 'commit' });
    await page.getByTestId('runs-count').filter({ hasText: expected }).waitFor({ timeout: 60_000 });
    await page.locator('[data-run-id]').first().waitFor();
    // Milliseconds since this navigation started, by the page's own clock.
    cold.push(Number(await page.evaluate('performance.now()')));
    coldPainted.push((await probeMarks(page)).painted);
    // Where the time went: the page's scripts ready, the runs fetched (its own clock, ms since navigation start).
    const timing = (await page.evaluate(`(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const api = performance.getEntriesByType('resource').find((e) => e.name.includes('/api/runs-table'));
      return [nav ? nav.domContentLoadedEventEnd : NaN, api ? api.startTime : NaN, api ? api.responseEnd : NaN];
    })()`)) as number[];
    breakdown.push(timing);
    if (i === 0) await ui.screenshot('runs-page-10000').catch(() => {});
    await context.close();
  }

  // Warm: reloads of one signed-in page.
  const warm: number[] = [];
  const warmPainted: number[] = [];
  await ui.signIn();
  await ui.page.context().addInitScript(firstRenderProbe(expected));
  for (let i = 0; i < loads; i++) {
    await ui.page.reload({ waitUntil: 'commit' });
    await ui.page.getByTestId('runs-count').filter({ hasText: expected }).waitFor({ timeout: 60_000 });
    await ui.page.locator('[data-run-id]').first().waitFor();
    warm.push(Number(await ui.page.evaluate('performance.now()')));
    warmPainted.push((await probeMarks(ui.page)).painted);
  }
  await ui.screenshot('runs-page-10000');
  const rendered = await ui.page.locator('[data-run-id]').count();

  console.log(`runs page, ${runCount} runs (first render: navigation start → count and first row shown):`);
  console.log(`  cold (new context, no cache), painted (page clock): ${summary(coldPainted)}`);
  console.log(`  cold, as playwright noticed it:                   ${summary(cold)}`);
  console.log(
    `    of which: scripts loaded (DOMContentLoaded) ${summary(breakdown.map((b) => b[0]!))}; runs requested at ` +
      `${summary(breakdown.map((b) => b[1]!))}; runs received at ${summary(breakdown.map((b) => b[2]!))}`,
  );
  console.log(
    `  warm (reload, cached assets), painted: ${summary(warmPainted)}; as playwright noticed it: ${summary(warm)}`,
  );
  console.log(`  GET /api/runs-table alone:    ${summary(api)}`);
  console.log(`  rows in the DOM: ${rendered} of ${runCount} (virtualized)`);
  console.log(
    `  load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} on ${cpus().length} cores`,
  );
} finally {
  await ui.close();
  await rm(dataDir, { recursive: true, force: true });
}
