// @vitest-environment jsdom
import { QueryClientProvider } from '@tanstack/react-query';
import type { PlaygroundGenerateView } from '@terrarium/shared';
import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { useState } from 'react';
import { MemoryRouter } from 'react-router';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createQueryClient } from '../src/api/query.js';
import { PlaygroundPage } from '../src/pages/PlaygroundPage.js';
import {
  buildRequest,
  DRAFT_KEY,
  type Draft,
  type DraftMessage,
  draftToJson,
  EMPTY_DRAFT,
  formatCost,
  jsonToDraft,
  loadDraft,
} from '../src/pages/playground/draft.js';
import { GenerationResult } from '../src/pages/playground/GenerationResult.js';
import { MessagesEditor } from '../src/pages/playground/MessagesEditor.js';

afterEach(cleanup);

const draft = (patch: Partial<Draft>): Draft => ({ ...EMPTY_DRAFT, ...patch });

describe('playground draft → request', () => {
  it('builds the request from the form: numbers parsed, empty fields left to the provider', () => {
    const built = buildRequest(
      draft({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'hi' },
        ],
        temperature: '0.2',
        maxTokens: '',
        n: '2',
      }),
    );
    expect(built).toEqual({
      ok: true,
      request: {
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'hi' },
        ],
        temperature: 0.2,
        n: 2,
      },
    });
  });

  it('names the field that is wrong, with the server’s own schema', () => {
    expect(buildRequest(draft({ model: '', messages: [{ role: 'user', content: 'x' }] }))).toEqual({
      ok: false,
      error: 'model: model must name a model',
    });
    expect(buildRequest(draft({ model: 'm', temperature: 'warm' }))).toEqual({
      ok: false,
      error: 'temperature: "warm" is not a number',
    });
    expect(buildRequest(draft({ model: 'm', n: '99' }))).toEqual({ ok: false, error: 'n: n is at most 16' });
    const json = buildRequest(
      draft({ mode: 'json', json: '{"model":"m","messages":[{"role":"robot","content":"x"}]}' }),
    );
    expect(json.ok).toBe(false);
    expect(!json.ok && json.error).toMatch(/^messages\.0\.role: role must be one of system/);
    const broken = buildRequest(draft({ mode: 'json', json: '{"model": ' }));
    expect(!broken.ok && broken.error).toMatch(/^The request is not valid JSON: /);
  });

  it('goes from the form to JSON and back without losing anything', () => {
    const form = draft({ model: 'gpt-4o', messages: [{ role: 'user', content: 'a\nb' }], temperature: '1', n: '1' });
    const json = draftToJson(form);
    expect(JSON.parse(json)).toEqual({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'a\nb' }],
      temperature: 1,
      n: 1,
    });
    const back = jsonToDraft({ ...form, mode: 'json', json });
    expect(back).toEqual({ ok: true, draft: { ...form, mode: 'form', json } });
    const withStop = jsonToDraft({ ...form, mode: 'json', json: '{"model":"m","prompt":"p","stop":["x"]}' });
    expect(withStop).toEqual({
      ok: false,
      error: 'The form has no prompt or stop fields: keep editing this request as JSON.',
    });
  });

  it('reads a stored draft only when it has the expected shape', () => {
    const stored = draft({ model: 'gpt-4o', messages: [{ role: 'assistant', content: 'ok' }] });
    expect(loadDraft({ getItem: () => JSON.stringify(stored) })).toEqual(stored);
    expect(loadDraft({ getItem: () => '{"mode":"form","model":3}' })).toEqual(EMPTY_DRAFT);
    expect(loadDraft({ getItem: () => 'not json' })).toEqual(EMPTY_DRAFT);
    expect(loadDraft({ getItem: () => null })).toEqual(EMPTY_DRAFT);
  });

  it('formats costs, and says when a model has no price', () => {
    expect(formatCost(0.000123)).toBe('$0.000123');
    expect(formatCost(0.5)).toBe('$0.5000');
    expect(formatCost(null)).toBe('unknown (model not in the price table)');
  });
});

function Messages({ initial }: { initial: DraftMessage[] }) {
  const [messages, setMessages] = useState(initial);
  return (
    <>
      <MessagesEditor messages={messages} onChange={setMessages} />
      <output data-testid="state">{JSON.stringify(messages)}</output>
    </>
  );
}

describe('MessagesEditor', () => {
  it('adds turns that alternate, a system message first, edits roles and text, and removes turns', () => {
    render(<Messages initial={[{ role: 'user', content: 'hi' }]} />);
    const state = () => JSON.parse(screen.getByTestId('state').textContent ?? '[]') as DraftMessage[];
    fireEvent.click(screen.getByRole('button', { name: 'Add assistant message' }));
    fireEvent.change(screen.getByLabelText('Content of message 2'), { target: { value: 'hello' } });
    fireEvent.click(screen.getByRole('button', { name: 'Add system message' }));
    expect(state()).toEqual([
      { role: 'system', content: '' },
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ]);
    expect(screen.queryByRole('button', { name: 'Add system message' })).toBeNull();
    fireEvent.change(screen.getByLabelText('Role of message 3'), { target: { value: 'user' } });
    fireEvent.click(screen.getByRole('button', { name: 'Remove message 1' }));
    expect(state()).toEqual([
      { role: 'user', content: 'hi' },
      { role: 'user', content: 'hello' },
    ]);
  });
});

const RESULT: PlaygroundGenerateView = {
  model: 'gpt-4o-mini',
  provider: 'openai',
  outputs: [
    { completion: 'echo[0]: hi', finishReason: 'stop' },
    { completion: 'echo[1]: hi', finishReason: 'length' },
  ],
  usage: { inputTokens: 12, outputTokens: 4, cost: 0.0000042 },
  durationMs: 1234,
  attempts: 2,
};

describe('GenerationResult', () => {
  it('shows each completion, the tokens, the cost and the duration', () => {
    render(<GenerationResult result={RESULT} />);
    expect(screen.getAllByTestId('playground-completion').map((e) => e.textContent)).toEqual([
      'echo[0]: hi',
      'echo[1]: hi',
    ]);
    expect(screen.getByText('Completion 2 · finished: length')).toBeTruthy();
    expect(screen.getByTestId('playground-tokens').textContent).toBe('12 in · 4 out');
    expect(screen.getByTestId('playground-cost').textContent).toBe('$0.00000420');
    expect(screen.getByTestId('playground-duration').textContent).toBe('1.23 s (2 attempts)');
  });
});

describe('PlaygroundPage', () => {
  const calls: Array<{ url: string; body: unknown }> = [];
  let generateAnswer: () => Response;

  beforeEach(() => {
    localStorage.clear();
    calls.length = 0;
    generateAnswer = () => Response.json(RESULT);
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string, init?: RequestInit) => {
        calls.push({ url, body: init?.body ? JSON.parse(String(init.body)) : undefined });
        if (url === '/api/playground/models') {
          return Response.json({ mode: 'builtin', models: [{ name: 'gpt-4o-mini', provider: 'openai' }] });
        }
        if (url === '/api/ui-config') return Response.json({ readOnly: false, runSummaryModel: null });
        if (url === '/api/playground/generate') return generateAnswer();
        return Response.json({ error: { code: 'not_found', message: `No route ${url}` } }, { status: 404 });
      }),
    );
  });
  afterEach(() => vi.unstubAllGlobals());

  const renderPage = () =>
    render(
      <QueryClientProvider client={createQueryClient()}>
        <MemoryRouter>
          <PlaygroundPage />
        </MemoryRouter>
      </QueryClientProvider>,
    );

  it('sends the form as a request and shows the completions; the draft survives a reload', async () => {
    const page = renderPage();
    const model = await screen.findByRole('option', { name: 'gpt-4o-mini (openai)' });
    fireEvent.change(screen.getByLabelText('Model'), { target: { value: (model as HTMLOptionElement).value } });
    fireEvent.change(screen.getByLabelText('Content of message 1'), { target: { value: 'hi' } });
    fireEvent.change(screen.getByLabelText('Completions (n)'), { target: { value: '2' } });
    fireEvent.click(screen.getByRole('button', { name: 'Send' }));
    const result = await screen.findByRole('region', { name: 'Generation result' });
    expect(within(result).getAllByTestId('playground-completion')).toHaveLength(2);
    expect(calls.find((c) => c.url === '/api/playground/generate')?.body).toEqual({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      n: 2,
    });
    expect(JSON.parse(localStorage.getItem(DRAFT_KEY) ?? '{}')).toMatchObject({ model: 'gpt-4o-mini', n: '2' });

    page.unmount();
    renderPage();
    expect((screen.getByLabelText('Content of message 1') as HTMLTextAreaElement).value).toBe('hi');
  });

  it('names a mistake before sending, and shows the server’s error next to the form', async () => {
    renderPage();
    await screen.findByRole('option', { name: 'gpt-4o-mini (openai)' });
    fireEvent.click(screen.getByRole('button', { name: 'Send' }));
    expect(screen.getByRole('alert').textContent).toBe('The request is not ready: model: model must name a model');
    expect(calls.some((c) => c.url === '/api/playground/generate')).toBe(false);

    fireEvent.change(screen.getByLabelText('Model'), { target: { value: 'gpt-4o-mini' } });
    fireEvent.change(screen.getByLabelText('Content of message 1'), { target: { value: 'hi' } });
    generateAnswer = () =>
      Response.json(
        { error: { code: 'error', message: 'The middleman refused or failed the request: openai answered 500' } },
        { status: 502 },
      );
    fireEvent.click(screen.getByRole('button', { name: 'Send' }));
    await waitFor(() =>
      expect(screen.getByRole('alert').textContent).toBe(
        'The generation failed: The middleman refused or failed the request: openai answered 500',
      ),
    );
  });
});
