// @vitest-environment jsdom
import { QueryClientProvider } from '@tanstack/react-query';
import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createQueryClient } from '../src/api/query.js';
import { TaskEnvironmentsPage } from '../src/pages/TaskEnvironmentsPage.js';
import { actionsFor, type TaskEnvironment } from '../src/pages/task-environments/api.js';
import { EnvironmentTable } from '../src/pages/task-environments/EnvironmentTable.js';

afterEach(cleanup);

function env(name: string, patch: Partial<TaskEnvironment> = {}): TaskEnvironment {
  return {
    name,
    state: 'running',
    taskId: 'hello_world/sum',
    taskFamilyName: 'hello_world',
    taskName: 'sum',
    backend: 'docker',
    sandboxName: `sandbox-${name}`,
    ipAddress: '172.30.0.5',
    owner: 'u1',
    createdAt: '2026-01-02T03:04:05.000Z',
    destroyedAt: null,
    errorMessage: null,
    progress: [],
    ...patch,
  };
}

describe('actionsFor', () => {
  it('offers what each state allows', () => {
    expect(actionsFor('running')).toEqual(['stop', 'restart', 'destroy']);
    expect(actionsFor('stopped')).toEqual(['start', 'destroy']);
    expect(actionsFor('building')).toEqual(['destroy']);
    expect(actionsFor('destroyed')).toEqual([]);
  });
});

describe('EnvironmentTable', () => {
  it('shows name, task, state, owner, and destroys only after confirmation', () => {
    const onAction = vi.fn();
    let answer = false;
    const confirm = vi.fn(() => answer);
    render(
      <EnvironmentTable
        environments={[
          env('alpha'),
          env('beta', { state: 'stopped', ipAddress: null, errorMessage: 'teardown failed' }),
        ]}
        readOnly={false}
        busy={null}
        onAction={onAction}
        confirm={confirm}
      />,
    );
    const alpha = within(screen.getByTestId('env-alpha'));
    expect(alpha.getByText('hello_world/sum')).toBeTruthy();
    expect(alpha.getByText('running')).toBeTruthy();
    expect(alpha.getByText('u1')).toBeTruthy();
    expect(within(screen.getByTestId('env-beta')).getByText('teardown failed')).toBeTruthy();
    expect(screen.queryByRole('button', { name: 'Start alpha' })).toBeNull();

    fireEvent.click(screen.getByRole('button', { name: 'Destroy alpha' }));
    expect(confirm).toHaveBeenCalledWith(expect.stringMatching(/^Destroy task environment alpha\?/));
    expect(onAction).not.toHaveBeenCalled();
    answer = true;
    fireEvent.click(screen.getByRole('button', { name: 'Destroy alpha' }));
    fireEvent.click(screen.getByRole('button', { name: 'Start beta' }));
    fireEvent.click(screen.getByRole('button', { name: 'Stop alpha' }));
    expect(onAction.mock.calls).toEqual([
      ['alpha', 'destroy'],
      ['beta', 'start'],
      ['alpha', 'stop'],
    ]);
  });

  it('offers no action when read-only, and none on an environment that is busy', () => {
    const { rerender } = render(
      <EnvironmentTable environments={[env('alpha')]} readOnly={true} busy={null} onAction={() => {}} />,
    );
    expect(screen.queryAllByRole('button')).toEqual([]);
    rerender(<EnvironmentTable environments={[env('alpha')]} readOnly={false} busy="alpha" onAction={() => {}} />);
    expect(screen.getAllByRole('button').every((b) => (b as HTMLButtonElement).disabled)).toBe(true);
  });
});

describe('TaskEnvironmentsPage', () => {
  let environments: TaskEnvironment[];
  let deleteAnswer: () => Response;

  beforeEach(() => {
    environments = [];
    deleteAnswer = () => Response.json(env('alpha', { state: 'destroyed' }));
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string, init?: RequestInit) => {
        if (url.startsWith('/api/task-environments?')) return Response.json(environments);
        if (url === '/api/ui-config') return Response.json({ readOnly: false, runSummaryModel: null });
        if (url === '/api/task-environments/alpha' && init?.method === 'DELETE') return deleteAnswer();
        return Response.json({ error: { code: 'not_found', message: `No route ${url}` } }, { status: 404 });
      }),
    );
    vi.stubGlobal('confirm', () => true);
  });
  afterEach(() => vi.unstubAllGlobals());

  const renderPage = () =>
    render(
      <QueryClientProvider client={createQueryClient()}>
        <MemoryRouter>
          <TaskEnvironmentsPage />
        </MemoryRouter>
      </QueryClientProvider>,
    );

  it('tells the person how to start one when there are none', async () => {
    renderPage();
    const empty = await screen.findByRole('region', { name: 'No task environments' });
    expect(empty.textContent).toContain('terrarium task start examples/task-families/hello_world#sum');
  });

  it('shows the server’s refusal of an action as a readable message', async () => {
    environments = [env('alpha')];
    deleteAnswer = () =>
      Response.json(
        { error: { code: 'forbidden', message: 'Task environment alpha belongs to u2.' } },
        { status: 403 },
      );
    renderPage();
    fireEvent.click(await screen.findByRole('button', { name: 'Destroy alpha' }));
    await waitFor(() =>
      expect(screen.getByRole('alert').textContent).toBe(
        'Could not destroy alpha: Task environment alpha belongs to u2.',
      ),
    );
  });
});
