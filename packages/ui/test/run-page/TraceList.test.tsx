// @vitest-environment jsdom

import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import type { TraceEntryView } from '@terrarium/shared';
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TraceList } from '../../src/pages/run/TraceList.js';

// jsdom has no layout: give the scroll container a size so the virtualizer renders a window of rows.
beforeAll(() => {
  // The scroll container's size comes from clientHeight; each row's measured height from offsetHeight.
  Object.defineProperty(HTMLElement.prototype, 'clientHeight', { configurable: true, get: () => 600 });
  Object.defineProperty(HTMLElement.prototype, 'clientWidth', { configurable: true, get: () => 800 });
  Object.defineProperty(HTMLElement.prototype, 'offsetHeight', { configurable: true, get: () => 30 });
  globalThis.ResizeObserver ??= class {
    observe() {}
    unobserve() {}
    disconnect() {}
  } as unknown as typeof ResizeObserver;
});
afterEach(cleanup);

function entries(n: number): TraceEntryView[] {
  return Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    runId: 1,
    agentBranchNumber: 0,
    index: i,
    kind: i === 0 ? 'generation' : i % 2 ? 'action' : 'observation',
    content:
      i === 0
        ? {
            model: 'gpt-x',
            request: { prompt: 'the prompt' },
            completion: { completions: ['the completion'] },
            usage: { inputTokens: 3, outputTokens: 2, cost: 0.01 },
          }
        : i % 2
          ? { action: { step: i } }
          : { observation: { step: i } },
    calledAt: new Date(1_700_000_000_000 + i).toISOString(),
    agentTimestamp: null,
  }));
}

async function renderList(list: TraceEntryView[], highlightId: number | null = null) {
  const client = new QueryClient();
  const result = render(
    <QueryClientProvider client={client}>
      <TraceList
        runId={1}
        entries={list}
        commentsByEntry={new Map()}
        tagsByEntry={new Map()}
        readOnly
        highlightId={highlightId}
        follow={false}
      />
    </QueryClientProvider>,
  );
  // The virtualizer measures its scroll element after the first render, then renders the rows in view.
  await act(async () => {
    await new Promise((resolve) => setTimeout(resolve, 20));
  });
  return result;
}

describe('TraceList', () => {
  it('renders only a window of a 100,000-entry trace', async () => {
    await renderList(entries(100_000));
    const rendered = document.querySelectorAll('article.entry');
    expect(rendered.length).toBeGreaterThan(5);
    expect(rendered.length).toBeLessThan(100);
    expect(screen.getByRole('region', { name: 'Trace' })).toBeTruthy();
  });

  it('shows each kind distinctly and opens a generation with its prompt, completion, tokens and cost', async () => {
    await renderList(entries(20));
    const first = document.getElementById('entry-1')!;
    expect(first.className).toContain('kind-generation');
    expect(first.textContent).toContain('gpt-x · 3+2 tokens · $0.0100');
    const toggle = first.querySelector<HTMLButtonElement>('.entry-toggle')!;
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    fireEvent.click(toggle);
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    expect(screen.getByLabelText('Prompt').textContent).toBe('the prompt');
    expect(screen.getByLabelText('Completion 1').textContent).toBe('the completion');
    expect(first.textContent).toContain('$0.010000');
    expect(document.getElementById('entry-2')!.className).toContain('kind-action');
  });

  it('moves focus between rows with the arrow keys', async () => {
    await renderList(entries(20));
    const toggles = () => [...document.querySelectorAll<HTMLButtonElement>('.entry-toggle')];
    toggles()[0]!.focus();
    await act(async () => {
      fireEvent.keyDown(toggles()[0]!, { key: 'ArrowDown' });
      await new Promise((r) => requestAnimationFrame(() => r(null)));
    });
    expect(document.activeElement).toBe(toggles()[1]);
  });

  it('opens the entry named by a deep link', async () => {
    await renderList(entries(20), 5);
    const target = document.getElementById('entry-5')!;
    expect(target.className).toContain('highlighted');
    expect(target.querySelector('.entry-toggle')!.getAttribute('aria-expanded')).toBe('true');
  });
});
