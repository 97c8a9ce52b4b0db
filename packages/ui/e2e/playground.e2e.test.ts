/**
 * The playground in a real browser (Debian's Chromium via playwright-core) against a real server whose middleman
 * talks to the fake OpenAI-compatible provider on loopback: pick a model, write turns, send, see the completions with
 * tokens and cost; a mistake in the advanced JSON is named; the draft survives a reload. Screenshots go to
 * test-artifacts/ui/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeLlmProvider, startFakeLlmProvider } from '../../server/test/helpers/fake-llm-provider.js';
import { replaceEditorText, startUiHarness, type UiHarness } from './harness.js';

describe('playground (e2e)', { timeout: 120_000 }, () => {
  let ui: UiHarness;
  let fake: FakeLlmProvider;

  beforeAll(async () => {
    fake = await startFakeLlmProvider();
    ui = await startUiHarness({
      server: { withBaseImage: false, env: { OPENAI_API_URL: fake.url, OPENAI_API_KEY: fake.keys.openai } },
    });
    await ui.signIn();
  }, 300_000);
  afterAll(async () => {
    await ui?.close();
    await fake?.close();
  });

  it('sends a generation through the middleman and shows the completions, tokens and cost', async () => {
    const { page, baseUrl } = ui;
    await page.goto(`${baseUrl}/playground`);
    await page.getByRole('heading', { name: 'Playground' }).waitFor();
    // The models come from the middleman (the fake provider's list, filtered by routing).
    await page.getByRole('option', { name: 'gpt-4o-mini (openai)' }).waitFor({ state: 'attached' });
    await page.getByLabel('Model').selectOption('gpt-4o-mini');
    await page.getByRole('button', { name: 'Add system message' }).click();
    await page.getByLabel('Content of message 1').fill('You are terse.');
    await page.getByLabel('Content of message 2').fill('hello from the browser');
    await page.getByLabel('Temperature').fill('0.3');
    await page.getByLabel('Completions (n)').fill('2');
    fake.reset();
    await page.getByRole('button', { name: 'Send' }).click();

    const result = page.getByRole('region', { name: 'Generation result' });
    await result.waitFor();
    expect(await result.getByTestId('playground-completion').allTextContents()).toEqual([
      'echo[0]: hello from the browser',
      'echo[1]: hello from the browser',
    ]);
    // The fake counts words: 3 + 4 in, 5 out per completion.
    expect(await result.getByTestId('playground-tokens').textContent()).toBe('7 in · 10 out');
    expect(await result.getByTestId('playground-cost').textContent()).toMatch(/^\$\d/);
    expect(await result.getByTestId('playground-duration').textContent()).toMatch(/^\d+\.\d\d s/);
    // What reached the provider: the person's turns and parameters, through the middleman's OpenAI adapter.
    const sent = fake.requests.find((r) => r.path.endsWith('/chat/completions'))?.body;
    expect(sent).toMatchObject({
      model: 'gpt-4o-mini',
      temperature: 0.3,
      n: 2,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'hello from the browser' },
      ],
    });
    await ui.screenshot('playground');

    // A reload keeps the work.
    await page.reload();
    await page.getByLabel('Content of message 2').waitFor();
    expect(await page.getByLabel('Content of message 2').inputValue()).toBe('hello from the browser');
    expect(await page.getByLabel('Model').inputValue()).toBe('gpt-4o-mini');

    // Ctrl-Enter in a turn sends too.
    fake.reset();
    await page.getByLabel('Content of message 2').fill('sent with the keyboard');
    await page.getByLabel('Content of message 2').press('Control+Enter');
    await page.getByText('echo[1]: sent with the keyboard').waitFor();
    expect(fake.requests.filter((r) => r.path.endsWith('/chat/completions'))).toHaveLength(1);
  });

  it('edits the raw request as JSON; a bad field is named, and the server’s refusal is shown', async () => {
    const { page, baseUrl } = ui;
    await page.goto(`${baseUrl}/playground`);
    await page.getByRole('button', { name: 'Edit as JSON (advanced)' }).click();
    const editor = page.getByLabel('Generation request as JSON');
    await editor.waitFor();
    expect(
      JSON.parse((await page.getByTestId('playground-json').locator('.cm-content').textContent()) ?? ''),
    ).toMatchObject({
      model: 'gpt-4o-mini',
      messages: [{ role: 'system' }, { role: 'user', content: 'sent with the keyboard' }],
    });

    const setJson = (text: string) => replaceEditorText(page, editor, text);
    await setJson('{"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "hi"}]}');
    await page.getByRole('button', { name: 'Send' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toMatch(/The request is not ready: messages\.0\.role: role must be one of/);

    // A model the middleman does not permit: the server says so, next to the form.
    await setJson('{"model": "gpt-imaginary", "prompt": "say hi", "stop": ["\\n"]}');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.getByText('The generation failed:').waitFor();
    expect(await page.getByRole('alert').textContent()).toMatch(
      /The generation failed: Model "gpt-imaginary" is not permitted; permitted models: gpt-4o, gpt-4o-mini/,
    );
    await ui.screenshot('playground-json-error');

    // A valid prompt request with stop sequences works from the JSON editor with Ctrl-Enter.
    await setJson('{"model": "gpt-4o", "prompt": "json mode works", "stop": ["zzz"]}');
    fake.reset();
    await editor.press('Control+Enter');
    await page.getByText('echo: json mode works').waitFor();
    // Sent once (the editor's Ctrl-Enter and the form's are not both taken), with the stop sequence.
    const sent = fake.requests.filter((r) => r.path.endsWith('/chat/completions'));
    expect(sent.map((r) => (r.body as { stop?: unknown }).stop)).toEqual([['zzz']]);
    // This request has fields the form lacks: going back to the form is refused with the reason.
    await page.getByRole('button', { name: 'Back to the form' }).click();
    expect(await page.getByRole('alert').textContent()).toMatch(
      /^Cannot show this request as the form: The form has no prompt or stop fields: keep editing this request as JSON\./,
    );
    await ui.screenshot('playground-json');
  });
});
