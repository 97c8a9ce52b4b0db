// @vitest-environment jsdom
import { QueryClientProvider } from '@tanstack/react-query';
import type { HookUsageResponse, RunView } from '@terrarium/shared';
import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createQueryClient } from '../../src/api/query.js';
import { pauseLabel, personCanUnpause, RunHeader } from '../../src/pages/run/RunHeader.js';

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const run: RunView = {
  id: 7,
  taskId: 'hello_world/sum',
  agentName: 'solver',
  status: 'running',
  score: null,
  submission: null,
  errorStep: null,
  errorMessage: null,
  steps: [],
  agentCommandResult: null,
  createdAt: '2026-01-01T00:00:00.000Z',
  startedAt: '2026-01-01T00:00:01.000Z',
  finishedAt: null,
  usageLimits: { tokens: 1000, actions: 10, totalSeconds: 60, cost: 1 },
  checkpoint: null,
};

const usage = (pausedReason: string | null): HookUsageResponse => ({
  actions: 1,
  tokens: 10,
  inputTokens: 5,
  outputTokens: 5,
  cost: 0,
  totalSeconds: 3,
  pausedSeconds: 0,
  isPaused: pausedReason !== null,
  pausedReason,
  usageLimits: { tokens: 1000, actions: 10, totalSeconds: 60, cost: 1 },
  checkpoint: null,
});

/** The run header of a running branch paused for `reason`. */
function showHeaderPausedFor(reason: string) {
  render(
    <QueryClientProvider client={createQueryClient()}>
      <MemoryRouter>
        <RunHeader
          run={run}
          branch={0}
          usage={usage(reason)}
          intermediateScores={[]}
          branchScore={undefined}
          readOnly={false}
          summaryModel={null}
        />
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

describe('the run page’s pause', () => {
  it('says who paused a branch', () => {
    expect(pauseLabel('user')).toBe('paused by a person');
    expect(pauseLabel('pause-hook')).toBe('paused by the agent');
    expect(pauseLabel('human-input')).toBe('paused (waiting for human input)');
    // A person's pause from before the 'user' reason existed.
    expect(pauseLabel('legacy')).toBe('paused (legacy)');
    expect(pauseLabel('something-new')).toBe('paused (something-new)');
  });

  it('offers Unpause only for pauses a person can end', () => {
    for (const reason of ['user', 'pause-hook', 'pyhooks-retry', 'checkpoint', 'legacy']) {
      expect(personCanUnpause(reason)).toBe(true);
    }
    for (const reason of ['human-input', 'human-rating', 'scoring']) expect(personCanUnpause(reason)).toBe(false);
  });

  it('waits for the answer, not for Unpause, while the agent asks a person', () => {
    vi.stubGlobal('fetch', vi.fn());
    showHeaderPausedFor('human-input');
    screen.getByText('paused (waiting for human input)');
    expect(screen.queryByRole('button', { name: 'Unpause' })).toBeNull();
    expect(screen.queryByRole('button', { name: 'Pause' })).toBeNull();
    screen.getByRole('button', { name: 'Kill' });
  });

  it('shows a person’s pause in the header and offers Unpause, which calls the unpause route', async () => {
    const fetch = vi.fn(async (_url: string, _init?: RequestInit) => Response.json({ paused: false, reason: null }));
    vi.stubGlobal('fetch', fetch);
    showHeaderPausedFor('user');
    const badge = screen.getByText('paused by a person');
    expect(badge.getAttribute('title')).toBe('Pause reason: user');
    fireEvent.click(screen.getByRole('button', { name: 'Unpause' }));
    await waitFor(() => expect(fetch).toHaveBeenCalled());
    expect(fetch.mock.calls[0]?.[0]).toBe('/api/runs/7/branches/0/unpause');
    expect(fetch.mock.calls[0]?.[1]?.method).toBe('POST');
  });
});
