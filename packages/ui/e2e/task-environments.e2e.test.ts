/**
 * The task environments page in a real browser (Debian's Chromium via playwright-core) against a real server with a
 * real task environment (hello_world#sum in a Docker container, started through the API): the empty state, the list
 * with its state, stop and start, and destroy with its confirmation, after which the row and the container are gone.
 * Screenshots go to test-artifacts/ui/.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exampleFamily } from '../../server/test/helpers/server.js';
import { startUiHarness, type UiHarness } from './harness.js';

const run = promisify(execFile);

interface EnvironmentView {
  name: string;
  state: string;
}

describe('task environments page (e2e)', { timeout: 300_000 }, () => {
  let ui: UiHarness;

  beforeAll(async () => {
    ui = await startUiHarness();
    await ui.signIn();
  }, 300_000);
  afterAll(async () => {
    await ui?.close();
  });

  /** This server's containers of one environment (test files run in parallel: filter by this instance). */
  async function containersOf(name: string): Promise<string[]> {
    const { stdout } = await run('docker', [
      'ps',
      '--all',
      '--quiet',
      '--filter',
      `label=terrarium.task-environment=${name}`,
      '--filter',
      `label=terrarium.instance=${ui.test.server.instanceId}`,
    ]);
    return stdout.split('\n').filter(Boolean);
  }

  async function startEnvironment(name: string): Promise<EnvironmentView> {
    const created = await ui.test.api<EnvironmentView>('POST', '/api/task-environments', {
      taskFamilyDir: exampleFamily('hello_world'),
      taskName: 'sum',
      name,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const deadline = Date.now() + 240_000;
    while (Date.now() < deadline) {
      const { body } = await ui.test.api<EnvironmentView>('GET', `/api/task-environments/${name}`);
      if (body.state !== 'building' && body.state !== 'starting') return body;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`task environment ${name} was not ready in time`);
  }

  it('tells the person how to start one when there are none', async () => {
    const { page, baseUrl } = ui;
    await page.goto(`${baseUrl}/task-environments`);
    const empty = page.getByRole('region', { name: 'No task environments' });
    await empty.waitFor();
    expect(await empty.textContent()).toContain('terrarium task start examples/task-families/hello_world#sum');
    await ui.screenshot('task-environments-empty');
  });

  it('lists a real environment, stops and starts it, and destroys it with its container', async () => {
    const name = `ui-env-${Date.now().toString(36)}`;
    expect((await startEnvironment(name)).state).toBe('running');
    expect(await containersOf(name)).toHaveLength(1);

    const { page, baseUrl } = ui;
    await page.goto(`${baseUrl}/task-environments`);
    const row = page.getByTestId(`env-${name}`);
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    expect(cells.slice(0, 3)).toEqual([name, 'hello_world/sum', 'running']);
    expect(cells[4]).toBe('static-user');
    await ui.screenshot('task-environments');

    await page.getByRole('button', { name: `Stop ${name}` }).click();
    await row.getByText('stopped', { exact: true }).waitFor({ timeout: 60_000 });
    await page.getByRole('button', { name: `Start ${name}` }).click();
    await row.getByText('running', { exact: true }).waitFor({ timeout: 60_000 });

    // Destroy asks first: dismissing keeps the environment.
    page.once('dialog', (dialog) => void dialog.dismiss());
    await page.getByRole('button', { name: `Destroy ${name}` }).click();
    expect((await ui.test.api<EnvironmentView>('GET', `/api/task-environments/${name}`)).body.state).toBe('running');

    let question = '';
    page.once('dialog', (dialog) => {
      question = dialog.message();
      void dialog.accept();
    });
    await page.getByRole('button', { name: `Destroy ${name}` }).click();
    await row.waitFor({ state: 'detached', timeout: 120_000 });
    expect(question).toMatch(new RegExp(`^Destroy task environment ${name}\\?`));
    await page.getByRole('region', { name: 'No task environments' }).waitFor();
    expect((await ui.test.api<EnvironmentView>('GET', `/api/task-environments/${name}`)).body.state).toBe('destroyed');
    expect(await containersOf(name)).toEqual([]);

    // The destroyed one is still there for whoever asks.
    await page.getByLabel('Show destroyed ones').check();
    await row.getByText('destroyed', { exact: true }).waitFor();
    expect(await row.getByRole('button').count()).toBe(0);
    await ui.screenshot('task-environments-destroyed');
  });
});
