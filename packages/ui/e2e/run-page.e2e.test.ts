/**
 * The run page in a real browser (Debian's Chromium via playwright-core) against a real server running a real agent
 * in Docker: open a run, watch entries arrive live, answer the agent's question and see it continue to its
 * submission, comment and tag an entry, move through the trace with the keyboard, follow a deep link, fork a branch.
 * Screenshots go to test-artifacts/ui/.
 */
import type { RunView, TraceEntryView } from '@terrarium/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exampleAgent, exampleFamily } from '../../server/test/helpers/server.js';
import { startUiHarness, type UiHarness } from './harness.js';

describe('run page (e2e)', { timeout: 240_000 }, () => {
  let ui: UiHarness;
  let runId: number;

  beforeAll(async () => {
    ui = await startUiHarness();
    await ui.signIn();
  });
  afterAll(async () => ui?.close());

  const trace = async () => (await ui.test.api<TraceEntryView[]>('GET', `/api/runs/${runId}/trace`)).body;
  const run = async () => (await ui.test.api<RunView>('GET', `/api/runs/${runId}`)).body;

  /** Run status and steps, for a failure message that says where the run is. */
  const where = async () => {
    const r = await run();
    return `run ${r.id} is ${r.status}; steps: ${r.steps.map((s) => `${s.step}:${s.status}`).join(', ')}`;
  };
  const answerQuestion = async (label: RegExp, answer: string) => {
    const { page } = ui;
    const question = page.getByLabel(label);
    await question.waitFor({ timeout: 60_000 });
    await question.fill(answer);
    await page.getByRole('button', { name: 'Send answer' }).click();
  };

  it('shows entries arriving live while the agent works', async () => {
    const created = await ui.test.api<RunView>('POST', '/api/runs', {
      taskFamilyDir: exampleFamily('hello_world'),
      taskName: 'sum',
      agentDir: exampleAgent('asks_human'),
      metadata: { interactive: true },
    });
    expect(created.status).toBe(201);
    runId = created.body.id;
    const { page, baseUrl } = ui;
    await page.goto(`${baseUrl}/runs/${runId}`);
    await page.getByRole('heading', { name: new RegExp(`Run ${runId}`) }).waitFor();

    // The agent's first step shows up, then later steps arrive while the page stays open (no reload).
    const step = (n: number) => page.locator('article.entry', { hasText: `step ${n} of 6 done` });
    await step(1).waitFor({ timeout: 180_000 });
    const count = async () => Number((await page.getByTestId('entry-count').textContent())!.replace(/\D/g, ''));
    const countAtFirst = await count();
    await step(6).waitFor({ timeout: 30_000 });
    expect(await count()).toBeGreaterThan(countAtFirst);
    await ui.screenshot('run-page-live');
  });

  it('shows a new entry within a second of it being written', async () => {
    const { page } = ui;
    // Wait until the agent is quiet (waiting for a person), then write entries and time each one to the DOM.
    await page.getByLabel('What should I submit?', { exact: true }).waitFor({ timeout: 60_000 });
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const written = Date.now();
      const id = await ui.test.server.repo.appendTraceEntry({
        runId,
        agentBranchNumber: 0,
        kind: 'log',
        content: { content: [`written by the test (${i})`] },
      });
      await page.locator(`#entry-${id}`).waitFor({ timeout: 5_000 });
      latencies.push(Date.now() - written);
    }
    console.log(`run page: new entry in the DOM after ${latencies.join(', ')} ms`);
    // The server sends an entry within ~100 ms (packages/server/test/run-page asserts < 1 s on every entry); here
    // Chromium and the server share a 2-core machine with other suites, so the typical (median) case is asserted.
    const sorted = [...latencies].sort((a, b) => a - b);
    expect(sorted[2]).toBeLessThan(1000);
  });

  it('forks a branch from the saved state, with the state edited, and the branch runs', async () => {
    const { page } = ui;
    const saved = (await trace()).find((e) => e.kind === 'save-state')!;
    const entry = page.locator(`#entry-${saved.id}`);
    await entry.locator('.entry-toggle').click();
    await entry.getByRole('button', { name: 'Fork from here' }).click();
    const editor = page.getByLabel('Agent state (JSON; empty for none)');
    await editor.waitFor();
    expect(JSON.parse(await editor.inputValue())).toEqual({ stepsDone: 6, plan: 'ask a person what to submit' });
    await editor.fill(JSON.stringify({ stepsDone: 6, plan: 'edited by a person' }));
    await ui.screenshot('run-page-fork');
    await page.getByRole('button', { name: 'Start branch' }).click();
    await page.waitForURL(/[?&]branch=1/, { timeout: 15_000 }).catch(async (error: unknown) => {
      const alert = await page.getByRole('alert').allTextContents();
      throw new Error(`the fork did not open branch 1 (${alert.join('; ') || 'no error shown'}): ${error}`);
    });
    const branches = (
      await ui.test.api<{ agentBranchNumber: number; parentTraceEntryId: number | null }[]>(
        'GET',
        `/api/runs/${runId}/branches`,
      )
    ).body;
    expect(branches.find((b) => b.agentBranchNumber === 1)?.parentTraceEntryId).toBe(saved.id);
    // Branch 1 shows the trunk up to the fork, then its own entries as they arrive.
    await page.locator('article.entry', { hasText: 'Resuming from a saved state: edited by a person' }).waitFor({
      timeout: 60_000,
    });
    expect(await page.locator(`#entry-${saved.id}`).count()).toBe(1);
    await answerQuestion(/plan: edited by a person/, '100');
    await page.locator('article.entry.kind-submission').waitFor({ timeout: 30_000 });
    await ui.screenshot('run-page-branch');
  });

  it('lets a person answer the agent’s question on the trunk, and the agent continues to its score', async () => {
    const { page } = ui;
    await page.getByLabel('Branch').selectOption('0');
    await page.waitForURL((url) => !url.search.includes('branch='));
    await page.getByRole('region', { name: 'The agent is waiting for you' }).waitFor({ timeout: 30_000 });
    await ui.screenshot('run-page-human-input');
    await answerQuestion(/^What should I submit\?$/, '100');
    await page.locator('article.entry', { hasText: 'A person answered: 100' }).waitFor({ timeout: 30_000 });
    await page.locator('article.entry.kind-submission').waitFor({ timeout: 30_000 });
    await page
      .locator('.run-header .status', { hasText: 'submitted' })
      .waitFor({ timeout: 120_000 })
      .catch(async (error: unknown) => {
        throw new Error(`${await where()}: ${error}`);
      });
    await page.getByTestId('final-score').filter({ hasText: '1' }).waitFor({ timeout: 10_000 });
    expect((await run()).score).toBe(1);
    // The agent process's stdout.
    await page
      .getByRole('tabpanel', { name: 'stdout' })
      .filter({ hasText: "submitting '100'" })
      .waitFor({ timeout: 10_000 });
    await ui.screenshot('run-page-submitted');
  });

  it('comments on and tags an entry', async () => {
    const { page } = ui;
    const submission = page.locator('article.entry.kind-submission');
    await submission.locator('.entry-toggle').click();
    await submission.getByLabel('Tag', { exact: true }).fill('answer');
    await submission.getByRole('button', { name: 'Add tag' }).click();
    await submission.getByLabel('Comment', { exact: true }).fill('a person chose this');
    await submission.getByRole('button', { name: 'Add comment' }).click();
    await submission.locator('.comments li', { hasText: 'a person chose this' }).waitFor();
    await submission.locator('.tag', { hasText: '#answer' }).waitFor();
    const comments = (await ui.test.api<{ content: string }[]>('GET', `/api/runs/${runId}/comments`)).body;
    expect(comments.map((c) => c.content)).toEqual(['a person chose this']);
    await ui.screenshot('run-page-annotations');
  });

  it('moves through the trace with the keyboard and collapses a frame', async () => {
    const { page, baseUrl } = ui;
    await page.goto(`${baseUrl}/runs/${runId}`);
    await page.getByLabel('Follow new entries').uncheck();
    const first = page.locator('article.entry .entry-toggle').first();
    await first.focus();
    await page.keyboard.press('ArrowDown');
    const focusedRow = () =>
      page.evaluate<string | null>(
        "document.activeElement?.closest('[data-row-index]')?.getAttribute('data-row-index')",
      );
    await expect.poll(focusedRow).toBe('1');
    await page.keyboard.press('Enter');
    expect(await page.evaluate<string | null>("document.activeElement?.getAttribute('aria-expanded')")).toBe('true');
    await page.keyboard.press('End');
    await expect.poll(async () => Number(await focusedRow())).toBeGreaterThan(10);

    const frameToggle = page.getByRole('button', { name: /Collapse frame/ });
    const before = Number((await page.getByTestId('entry-count').textContent())!.replace(/\D/g, ''));
    const rowsBefore = await page.locator('article.entry').count();
    await frameToggle.click();
    await page.getByRole('button', { name: /Expand frame \(12 entries\)/ }).waitFor();
    expect(await page.locator('article.entry').count()).toBeLessThan(rowsBefore);
    expect(before).toBeGreaterThan(12);
  });

  it('opens a deep link to an entry, scrolled to and highlighted', async () => {
    const { page, baseUrl } = ui;
    const submission = (await trace()).find((e) => e.kind === 'submission' && e.agentBranchNumber === 0)!;
    await page.goto(`${baseUrl}/runs/${runId}#entry-${submission.id}`);
    const target = page.locator(`#entry-${submission.id}`);
    await target.waitFor();
    expect(await target.getAttribute('class')).toContain('highlighted');
    expect(await target.isVisible()).toBe(true);
    await ui.screenshot('run-page-deep-link');
  });
});
