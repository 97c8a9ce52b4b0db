// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { filterRuns, histogram, matchesFilter, scoresByTask } from '../src/pages/runs/filter.js';
import { RunsTable } from '../src/pages/runs/RunsTable.js';
import { ScoreDistribution } from '../src/pages/runs/ScoreDistribution.js';
import { sortRuns } from '../src/pages/runs/sort.js';
import { type RunsTableRow, rowsFromTable } from '../src/pages/runs/types.js';

afterEach(cleanup);

// jsdom lays nothing out: give elements a size so the virtualizer sees a 1200×300 viewport, as a browser would.
beforeAll(() => {
  Object.defineProperty(HTMLElement.prototype, 'clientHeight', { configurable: true, get: () => 300 });
  Object.defineProperty(HTMLElement.prototype, 'clientWidth', { configurable: true, get: () => 1200 });
});

function row(id: number, overrides: Partial<RunsTableRow> = {}): RunsTableRow {
  return {
    id,
    status: 'submitted',
    taskId: 'hello_world/sum',
    agentName: 'solver',
    batchName: null,
    score: 1,
    tokens: 0,
    cost: 0,
    createdAt: new Date(Date.UTC(2026, 0, id)).toISOString(),
    ...overrides,
  };
}

const rows = [
  row(1, { score: 0.5 }),
  row(2, { status: 'running', taskId: 'count_odds/main', agentName: 'echo', batchName: 'nightly', score: null }),
  row(12, { score: 0.25, batchName: 'nightly' }),
];

describe('runs filter', () => {
  it('needs every word somewhere in task, agent, batch, status or id', () => {
    expect(filterRuns(rows, { text: 'nightly', status: '' }).map((r) => r.id)).toEqual([2, 12]);
    expect(filterRuns(rows, { text: 'nightly SOLVER', status: '' }).map((r) => r.id)).toEqual([12]);
    expect(filterRuns(rows, { text: '', status: 'running' }).map((r) => r.id)).toEqual([2]);
    expect(filterRuns(rows, { text: 'nightly', status: 'submitted' }).map((r) => r.id)).toEqual([12]);
  });

  it('treats #42 as one run id exactly, where a bare number matches anywhere', () => {
    expect(filterRuns(rows, { text: '#1', status: '' }).map((r) => r.id)).toEqual([1]);
    expect(filterRuns(rows, { text: '1', status: '' }).map((r) => r.id)).toEqual([1, 12]);
    expect(matchesFilter(row(7), { text: '#70', status: '' })).toBe(false);
  });

  it('groups scores per task, most scored first, and bins them', () => {
    expect(scoresByTask(rows)).toEqual([{ taskId: 'hello_world/sum', scores: [0.5, 0.25] }]);
    expect(histogram([0, 0.05, 0.5, 1, 1], 4, 0, 1)).toEqual([2, 0, 1, 2]);
  });
});

describe('sortRuns', () => {
  it('sorts either way by any column, runs without a value last, ties newest first; leaves its input alone', () => {
    const input = [...rows];
    const ids = (column: Parameters<typeof sortRuns>[1]['column'], desc: boolean) =>
      sortRuns(input, { column, desc }).map((r) => r.id);
    expect(ids('id', true)).toEqual([12, 2, 1]);
    expect(ids('score', false)).toEqual([12, 1, 2]);
    expect(ids('score', true)).toEqual([1, 12, 2]);
    expect(ids('batchName', false)).toEqual([12, 2, 1]);
    expect(ids('taskId', false)).toEqual([2, 12, 1]);
    expect(input.map((r) => r.id)).toEqual([1, 2, 12]);
  });

  it('sorts 10,000 runs', () => {
    const many = Array.from({ length: 10_000 }, (_, i) =>
      row(i + 1, { taskId: `family_${i % 12}/task_${i % 5}`, score: i % 3 === 0 ? null : (i % 100) / 100 }),
    );
    const sorted = sortRuns(many, { column: 'taskId', desc: false });
    expect(sorted[0]!.taskId).toBe('family_0/task_0');
    expect(sortRuns(many, { column: 'score', desc: true }).at(-1)!.score).toBeNull();
  });
});

describe('rowsFromTable', () => {
  it('reads the column-wise answer by column name', () => {
    expect(
      rowsFromTable({
        columns: ['status', 'id', 'taskId', 'agentName', 'batchName', 'score', 'tokens', 'cost', 'createdAt', 'later'],
        rows: [['running', 7, 'a/b', null, 'nightly', null, 12, 0.5, '2026-01-01T00:00:00.000Z', 'x']],
      }),
    ).toEqual([
      {
        id: 7,
        status: 'running',
        taskId: 'a/b',
        agentName: null,
        batchName: 'nightly',
        score: null,
        tokens: 12,
        cost: 0.5,
        createdAt: '2026-01-01T00:00:00.000Z',
      },
    ]);
  });
});

describe('RunsTable', () => {
  const renderTable = (props: Parameters<typeof RunsTable>[0]) =>
    render(
      <MemoryRouter>
        <RunsTable {...props} />
      </MemoryRouter>,
    );
  const renderedIds = () =>
    screen
      .getAllByRole('row')
      .map((r) => r.getAttribute('data-run-id'))
      .filter((id) => id !== null)
      .map(Number);

  it('shows each run with a link to its page, newest first', () => {
    renderTable({ rows });
    expect(renderedIds()).toEqual([12, 2, 1]);
    const second = screen.getAllByRole('row')[2]!;
    expect(within(second).getByRole('link', { name: '#2' }).getAttribute('href')).toBe('/runs/2');
    expect(second.textContent).toContain('count_odds/main');
    expect(second.textContent).toContain('nightly');
    expect(second.textContent).toContain('—'); // no score yet
  });

  it('sorts by a column when its header is clicked, and says so to assistive technology', () => {
    renderTable({ rows });
    const scoreHeader = screen.getAllByRole('columnheader').find((h) => h.textContent?.startsWith('Score'))!;
    fireEvent.click(within(scoreHeader).getByRole('button'));
    const first = scoreHeader.getAttribute('aria-sort');
    expect(['ascending', 'descending']).toContain(first);
    // Unscored runs go last either way.
    expect(renderedIds().at(-1)).toBe(2);
    expect(renderedIds().slice(0, 2)).toEqual(first === 'ascending' ? [12, 1] : [1, 12]);
  });

  it('offers Kill only for runs that are not over', () => {
    const onKill = vi.fn();
    renderTable({ rows, onKill });
    const buttons = screen.getAllByRole('button', { name: /^Kill run/ });
    expect(buttons.map((b) => b.getAttribute('aria-label'))).toEqual(['Kill run 2']);
    fireEvent.click(buttons[0]!);
    expect(onKill).toHaveBeenCalledWith(2);
  });

  it('renders only the rows in view of 10,000', () => {
    const many = Array.from({ length: 10_000 }, (_, i) => row(i + 1));
    renderTable({ rows: many, height: 300 });
    const rendered = renderedIds();
    expect(rendered.length).toBeGreaterThan(5);
    expect(rendered.length).toBeLessThan(60);
    expect(rendered[0]).toBe(10_000);
    expect(screen.getByRole('table', { name: 'Runs' }).getAttribute('aria-rowcount')).toBe('10001');
  });
});

describe('ScoreDistribution', () => {
  it('draws one labelled histogram per task with scores', () => {
    render(<ScoreDistribution rows={rows} />);
    expect(screen.getByRole('img').getAttribute('aria-label')).toBe(
      'Score distribution of hello_world/sum: 2 runs, mean 0.38',
    );
  });

  it('says so when nothing is scored', () => {
    render(<ScoreDistribution rows={[row(1, { score: null })]} />);
    expect(screen.getByText(/No scored runs yet/)).toBeTruthy();
  });
});
