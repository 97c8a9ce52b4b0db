/**
 * Sign-in in a real browser: OpenID Connect (Authorization Code + PKCE) through a real provider's authorization page
 * (packages/server/test/auth/oidc-provider.ts on 127.0.0.1), sign-out, expiry, and read-only mode.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestOidcProvider } from '../../server/test/auth/oidc-provider.js';
import { startUiHarness, type UiHarness } from './harness.js';

/** Where the UI keeps the token (src/api/client.ts); evaluated in the page as strings (no DOM types here). */
const TOKEN_KEY = 'terrarium.accessToken';

describe('OIDC sign-in in the browser (USE_AUTH0=true)', () => {
  let provider: TestOidcProvider;
  let ui: UiHarness;

  beforeAll(async () => {
    provider = await new TestOidcProvider().start();
    ui = await startUiHarness({ server: { withBaseImage: false, env: provider.env() } });
  }, 120_000);
  afterAll(async () => {
    await ui?.close();
    await provider?.close();
  });

  it("signs in on the provider's page with PKCE and lands on the page asked for", async () => {
    const { page, baseUrl } = ui;
    const wanted = '/runs?status=running';
    await page.goto(`${baseUrl}${wanted}`);
    await page.waitForURL(/\/login\?next=/);
    const signIn = page.getByRole('button', { name: `Sign in with ${new URL(provider.issuer).host}` });
    await signIn.waitFor();
    await ui.screenshot('sign-in-oidc-login');
    await signIn.click();

    // The provider's own authorization page, on its own origin.
    await page.waitForURL((url) => url.href.startsWith(`${provider.issuer}authorize`));
    const authorize = new URL(page.url());
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('client_id')).toBe(provider.clientId);
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${baseUrl}/login/callback`);
    expect(authorize.searchParams.get('audience')).toBe(provider.audience);
    await ui.screenshot('sign-in-oidc-provider-page');
    await page.getByRole('button', { name: `Continue as ${provider.user.name}` }).click();

    await page.waitForURL(`${baseUrl}${wanted}`);
    await page
      .getByTestId('runs-count')
      .filter({ hasText: /of \d+ runs/ })
      .waitFor();
    await page.getByText(provider.user.name).waitFor();
    expect(provider.grants).toEqual(['authorization_code']);
    // The token is kept for this tab's session only.
    const stored = await page.evaluate<{ session: string | null; local: string | null }>(
      `({ session: sessionStorage.getItem('${TOKEN_KEY}'), local: localStorage.getItem('${TOKEN_KEY}') })`,
    );
    expect(stored.session).toMatch(/^ey/);
    expect(stored.local).toBeNull();
    await ui.screenshot('sign-in-oidc-signed-in');
  });

  it('sends the user back to sign in when the token stops working, then returns to the same page', async () => {
    const { page, baseUrl } = ui;
    // A token that has expired at the provider (the server says 401).
    const expired = await provider.mintAccessToken({ expiresIn: -60 });
    await page.evaluate(`sessionStorage.setItem('${TOKEN_KEY}', ${JSON.stringify(expired)})`);
    await page.goto(`${baseUrl}/runs?q=hello`);
    await page.waitForURL(/\/login\?next=%2Fruns%3Fq%3Dhello&reason=expired/);
    await page.getByText('Your sign-in has expired').waitFor();
    await page.getByRole('button', { name: /Sign in with/ }).click();
    // The provider's page again (a real provider would remember the session and skip it).
    await page.getByRole('button', { name: `Continue as ${provider.user.name}` }).click();
    await page.waitForURL(`${baseUrl}/runs?q=hello`);
  });

  it('signs out', async () => {
    const { page, baseUrl } = ui;
    await page.getByRole('button', { name: 'Sign out' }).click();
    // Through the provider's end-session endpoint, which ends its own session too, and back to sign-in.
    await page.waitForURL(`${baseUrl}/login`);
    expect(provider.logouts).toEqual([{ sub: provider.user.sub, clientId: provider.clientId }]);
    expect(await page.evaluate(`sessionStorage.getItem('${TOKEN_KEY}')`)).toBeNull();
    await page.goto(`${baseUrl}/runs`);
    await page.waitForURL(/\/login\?next=%2Fruns/);
    await ui.screenshot('sign-in-oidc-signed-out');
  });
});

describe('read-only mode in the browser (VIVARIA_IS_READ_ONLY=true)', () => {
  let ui: UiHarness;
  let runId: number;

  beforeAll(async () => {
    ui = await startUiHarness({ server: { withBaseImage: false, env: { VIVARIA_IS_READ_ONLY: 'true' } } });
    // A running run, as a writable server sharing the database would have recorded it.
    const repo = ui.test.server.repo;
    await repo.ensureUser('u1', 'Test user');
    await ui.test.server.queue.store.ensureBatch('public-batch', 3);
    runId = await repo.insertRun({
      taskId: 'hello_world/sum',
      taskFamilyName: 'hello_world',
      taskName: 'sum',
      taskFamilyDir: '/nonexistent',
      agentDir: '/nonexistent',
      agentName: 'solver',
      userId: 'u1',
      batchName: 'public-batch',
      metadata: {},
    });
    await repo.insertBranch(runId, 0);
    await repo.updateRun(runId, { status: 'running', startedAt: new Date() });
    await repo.appendTraceEntry({
      runId,
      agentBranchNumber: 0,
      kind: 'log',
      content: { content: ['hello from a read-only trace'] },
    });
  }, 120_000);
  afterAll(async () => {
    await ui?.close();
  });

  it('shows the runs and a run without signing in, and offers no action', async () => {
    try {
      await showsEverythingWithoutActions();
    } catch (error) {
      await ui.screenshot('read-only-failure');
      throw error;
    }
  }, 90_000);

  async function showsEverythingWithoutActions() {
    const { page, baseUrl } = ui;
    await page.goto(`${baseUrl}/runs`);
    await page.getByTestId('runs-count').filter({ hasText: '1 of 1 runs' }).waitFor();
    expect(page.url()).toBe(`${baseUrl}/runs`);
    await page.getByText('Read-only', { exact: true }).waitFor();
    expect(await page.getByRole('button', { name: /Kill/ }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Sign out' }).count()).toBe(0);
    await page.getByText('public-batch').first().waitFor();
    expect(await page.getByRole('button', { name: 'Save' }).count()).toBe(0);
    await ui.screenshot('read-only-runs');

    await page.goto(`${baseUrl}/runs/${runId}`);
    await page.getByRole('heading', { name: new RegExp(`Run ${runId}`) }).waitFor();
    await page.getByText('hello from a read-only trace').first().waitFor();
    expect(page.url()).toBe(`${baseUrl}/runs/${runId}`);
    for (const name of [/^Kill$/, /^Pause$/, /Fork/, /Add comment/, /Add tag/, /Save score/, /Summary/]) {
      expect({ name: String(name), count: await page.getByRole('button', { name }).count() }).toEqual({
        name: String(name),
        count: 0,
      });
    }
    expect(await page.getByRole('toolbar', { name: 'Run actions' }).count()).toBe(0);
    await ui.screenshot('read-only-run');
  }
});
