/**
 * The run page's actions in a real browser (Debian's Chromium via playwright-core) against a real server running
 * real agents in Docker: rate options in the rating pane and see the agent take the person's choice, summarize the
 * trace with RUN_SUMMARY_GENERATION_MODEL (the middleman talks to the fake provider on loopback), score a manually
 * scored run by hand, and pause, unpause and kill a running agent. Screenshots go to test-artifacts/ui/.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HumanRequestView, ManualScoreView, RunView, TraceEntryView } from '@terrarium/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeLlmProvider, startFakeLlmProvider } from '../../server/test/helpers/fake-llm-provider.js';
import { exampleAgent, exampleFamily } from '../../server/test/helpers/server.js';
import { startUiHarness, type UiHarness } from './harness.js';

const TICKER_AGENT = path.join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', 'agents', 'ticker');
const SUMMARY_MODEL = 'gpt-4o-mini';
const SUMMARY_TEXT = 'The agent offered two answers; a person chose 100, which scored 1.';

describe('run page actions (e2e)', { timeout: 300_000 }, () => {
  let ui: UiHarness;
  let fake: FakeLlmProvider;

  beforeAll(async () => {
    fake = await startFakeLlmProvider();
    fake.replyWith = () => SUMMARY_TEXT;
    ui = await startUiHarness({
      server: {
        env: {
          OPENAI_API_URL: fake.url,
          OPENAI_API_KEY: fake.keys.openai,
          RUN_SUMMARY_GENERATION_MODEL: SUMMARY_MODEL,
        },
      },
    });
    await ui.signIn();
  }, 300_000);
  afterAll(async () => {
    await ui?.close();
    await fake?.close();
  });

  const api = <T>(route: string) => ui.test.api<T>('GET', route).then((r) => r.body);
  const createRun = async (request: Record<string, unknown>) => {
    const created = await ui.test.api<RunView>('POST', '/api/runs', request);
    expect(created.status).toBe(201);
    return created.body.id;
  };
  const openRun = async (runId: number) => {
    await ui.page.goto(`${ui.baseUrl}/runs/${runId}`);
    await ui.page.getByRole('heading', { name: new RegExp(`Run ${runId}`) }).waitFor();
  };
  const headerStatus = (status: string) =>
    ui.page.locator('.run-header .status', { hasText: new RegExp(`^${status}$`) });

  let ratedRunId: number;

  it('rates the options in the rating pane, and the agent submits the option the person chose', async () => {
    ratedRunId = await createRun({
      taskFamilyDir: exampleFamily('hello_world'),
      taskName: 'sum',
      agentDir: exampleAgent('rates_options'),
      metadata: { interactive: true },
    });
    const { page } = ui;
    await openRun(ratedRunId);
    const pane = page.getByRole('group', { name: 'Which answer should I submit?' });
    await pane.waitFor({ timeout: 180_000 });
    await headerStatus('paused \\(waiting for a rating\\)').waitFor();
    await pane.getByLabel('Rating of option 1').fill('1');
    await pane.getByLabel('Rating of option 2').fill('5');
    await pane.getByRole('radio', { name: /Option 2: submit 100/ }).check();
    await ui.screenshot('run-page-rating');
    await page.getByRole('button', { name: 'Choose option 2' }).click();

    await page
      .locator('article.entry', { hasText: 'A person chose: submit 100 (rated 5)' })
      .waitFor({ timeout: 30_000 });
    await headerStatus('submitted').waitFor({ timeout: 120_000 });
    await page.getByTestId('final-score').filter({ hasText: /^1$/ }).waitFor({ timeout: 10_000 });
    const [request] = await api<HumanRequestView[]>(`/api/runs/${ratedRunId}/branches/0/human-requests`);
    expect(request).toMatchObject({ kind: 'rating', answer: { choice: 1, ratings: [1, 5] } });
    expect((await api<RunView>(`/api/runs/${ratedRunId}`)).submission).toBe('100');
    // The pane is gone once answered.
    expect(await pane.count()).toBe(0);
  });

  it('summarizes the run with RUN_SUMMARY_GENERATION_MODEL through the middleman', async () => {
    const { page } = ui;
    fake.reset();
    fake.replyWith = () => SUMMARY_TEXT;
    await page.getByRole('button', { name: 'Summary' }).click();
    const summary = page.getByRole('region', { name: 'Summary' });
    await summary.getByText(SUMMARY_TEXT).waitFor({ timeout: 30_000 });
    // Every entry but the agent's process output, which the summary leaves out.
    const entries = (await api<TraceEntryView[]>(`/api/runs/${ratedRunId}/trace`)).filter(
      (e) => e.kind !== 'agent-output',
    ).length;
    expect(await summary.getByText(/^Summary by /).textContent()).toBe(
      `Summary by ${SUMMARY_MODEL} of ${entries} entries`,
    );
    // The model was asked about this run's trace, including the person's rating.
    const asked = fake.requests.find((r) => (r.body as { model?: string }).model === SUMMARY_MODEL);
    expect(JSON.stringify(asked?.body)).toContain('rating-request');
    await ui.screenshot('run-page-summary');
  });

  it('scores a manually scored run by hand, and the score becomes the run’s', async () => {
    const run = await ui.test.runToEnd({
      taskFamilyDir: exampleFamily('hello_world'),
      taskName: 'haiku',
      agentDir: exampleAgent('solver'),
    });
    expect(run.status).toBe('manual-scoring');
    const { page } = ui;
    await openRun(run.id);
    const panel = page.getByRole('region', { name: 'Manual scoring' });
    await panel.getByText('The task leaves this branch to a person to score.').waitFor();
    await panel.getByLabel('Score', { exact: true }).fill('0.5');
    await panel.getByLabel('Notes', { exact: true }).fill('scans, but the last line is long');
    await panel.getByRole('button', { name: 'Save score' }).click();
    await panel
      .getByRole('list', { name: 'Scores given' })
      .getByText(/^0\.5$/)
      .waitFor({ timeout: 10_000 });
    await page
      .getByTestId('final-score')
      .filter({ hasText: /^0\.5$/ })
      .waitFor({ timeout: 10_000 });
    const scores = await api<ManualScoreView[]>(`/api/runs/${run.id}/manual-scores`);
    expect(scores).toMatchObject([{ agentBranchNumber: 0, score: 0.5, notes: 'scans, but the last line is long' }]);
    expect((await api<RunView>(`/api/runs/${run.id}`)).score).toBe(0.5);
    await ui.screenshot('run-page-manual-score');
  });

  it('pauses a running agent, unpauses it, and kills it', async () => {
    const runId = await createRun({
      taskFamilyDir: exampleFamily('hello_world'),
      taskName: 'sum',
      agentDir: TICKER_AGENT,
    });
    const { page } = ui;
    await openRun(runId);
    await page.locator('article.entry', { hasText: 'tick 3' }).first().waitFor({ timeout: 180_000 });
    const ticks = async () =>
      (await api<TraceEntryView[]>(`/api/runs/${runId}/trace`)).filter((e) =>
        JSON.stringify(e.content).includes('tick '),
      ).length;
    const actions = page.getByRole('toolbar', { name: 'Run actions' });

    await actions.getByRole('button', { name: 'Pause' }).click();
    await headerStatus('paused by a person').waitFor({ timeout: 10_000 });
    await ui.screenshot('run-page-paused');
    // The agent's hook calls wait while a person holds the pause: at most the one call already past the check lands.
    const atPause = await ticks();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(await ticks()).toBeLessThanOrEqual(atPause + 1);

    await actions.getByRole('button', { name: 'Unpause' }).click();
    await actions.getByRole('button', { name: 'Pause' }).waitFor({ timeout: 10_000 });
    await expect.poll(ticks, { timeout: 30_000 }).toBeGreaterThan(atPause + 3);

    page.once('dialog', (dialog) => void dialog.accept());
    await actions.getByRole('button', { name: 'Kill' }).click();
    await headerStatus('killed').waitFor({ timeout: 60_000 });
    expect((await api<RunView>(`/api/runs/${runId}`)).status).toBe('killed');
    // No action is offered on a run that has ended.
    expect(await actions.getByRole('button', { name: /^(Pause|Unpause|Kill)$/ }).count()).toBe(0);
    const atKill = await ticks();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await ticks()).toBeLessThanOrEqual(atKill + 1);
  });
});
