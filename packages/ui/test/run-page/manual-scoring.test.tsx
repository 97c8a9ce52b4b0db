// @vitest-environment jsdom
import { QueryClientProvider } from '@tanstack/react-query';
import type { ManualScoreView } from '@terrarium/shared';
import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createQueryClient } from '../../src/api/query.js';
import { ManualScoring } from '../../src/pages/run/ManualScoring.js';

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const given: ManualScoreView = {
  id: 1,
  agentBranchNumber: 0,
  score: 0.25,
  secondsToScore: 12,
  notes: 'half right',
  userId: 'u1',
  createdAt: '2026-01-01T00:00:00.000Z',
};

/** A fetch that answers the manual-scores list from `scores` and records every call. */
function fakeApi(scores: ManualScoreView[]) {
  const fetch = vi.fn(async (url: string, init?: RequestInit) => {
    if (url === '/api/runs/7/manual-scores') return Response.json(scores);
    if (url === '/api/runs/7/branches/0/manual-score' && init?.method === 'POST') {
      const body = JSON.parse(String(init.body)) as { score: number; notes?: string };
      const saved = { ...given, id: scores.length + 1, score: body.score, notes: body.notes ?? null };
      scores.push(saved);
      return Response.json(saved, { status: 201 });
    }
    return Response.json({ error: `unexpected ${url}` }, { status: 500 });
  });
  vi.stubGlobal('fetch', fetch);
  return fetch;
}

function show(props: { awaitsManualScore: boolean; readOnly: boolean; branch?: number }) {
  return render(
    <QueryClientProvider client={createQueryClient()}>
      <ManualScoring runId={7} branch={props.branch ?? 0} {...props} />
    </QueryClientProvider>,
  );
}

describe('manual scoring on the run page', () => {
  it('is absent on a branch that does not wait for a person’s score and has none', async () => {
    const fetch = fakeApi([]);
    const { container } = show({ awaitsManualScore: false, readOnly: false });
    await waitFor(() => expect(fetch).toHaveBeenCalled());
    expect(container.textContent).toBe('');
  });

  it('lists the scores given on this branch only, with who gave them and their notes', async () => {
    fakeApi([given, { ...given, id: 2, agentBranchNumber: 1, score: 0.9, notes: 'other branch' }]);
    show({ awaitsManualScore: true, readOnly: false });
    const list = await screen.findByRole('list', { name: 'Scores given' });
    expect(list.textContent).toContain('0.25 by u1');
    expect(list.textContent).toContain('half right');
    expect(list.textContent).not.toContain('other branch');
  });

  it('saves a score with notes and the time spent, then lists it', async () => {
    const fetch = fakeApi([]);
    show({ awaitsManualScore: true, readOnly: false });
    await screen.findByText('The task leaves this branch to a person to score.');
    const save = screen.getByRole('button', { name: 'Save score' }) as HTMLButtonElement;
    expect(save.disabled).toBe(true);
    fireEvent.change(screen.getByLabelText('Score'), { target: { value: '0.75' } });
    fireEvent.change(screen.getByLabelText('Notes'), { target: { value: '  mostly right  ' } });
    fireEvent.click(save);
    const list = await screen.findByRole('list', { name: 'Scores given' });
    expect(list.textContent).toContain('0.75 by u1');
    const post = fetch.mock.calls.find(([, init]) => init?.method === 'POST')!;
    const body = JSON.parse(String(post[1]!.body)) as Record<string, unknown>;
    expect(body).toMatchObject({ score: 0.75, notes: 'mostly right' });
    expect(body.secondsToScore).toBeGreaterThanOrEqual(0);
    expect((screen.getByLabelText('Score') as HTMLInputElement).value).toBe('');
  });

  it('shows the scores but offers no form in read-only mode', async () => {
    fakeApi([given]);
    show({ awaitsManualScore: true, readOnly: true });
    await screen.findByRole('list', { name: 'Scores given' });
    expect(screen.queryByRole('button', { name: 'Save score' })).toBeNull();
  });
});
