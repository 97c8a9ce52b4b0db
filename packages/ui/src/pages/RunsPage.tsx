import { useQueryClient } from '@tanstack/react-query';
import { lazy, Suspense, useCallback, useDeferredValue, useMemo } from 'react';
import { useSearchParams } from 'react-router';
import { useApi, useApiMutation } from '../api/query.js';
import { ErrorBanner } from '../components/ErrorBanner.js';
import { confirmKill } from '../lib/confirm-kill.js';
import { downloadText, toCsv } from '../lib/csv.js';
import { useReadOnly } from './login/auth-config.js';
import { BatchLimits } from './runs/BatchLimits.js';
import { filterRuns } from './runs/filter.js';
import { RunsTable } from './runs/RunsTable.js';
import { ScoreDistribution } from './runs/ScoreDistribution.js';
import { type RunsTableResponse, type RunsTableRow, rowsFromTable } from './runs/types.js';

// The SQL editor (CodeMirror) loads after the table, so it does not delay the first render of the runs.
const QueryPanel = lazy(() => import('./runs/QueryPanel.js').then((module) => ({ default: module.QueryPanel })));

/** The runs table's query: RunsPage reads it, main.tsx starts it before React mounts. */
export const RUNS_TABLE_PATH = '/api/runs-table';

const STATUSES = [
  'queued',
  'setting-up',
  'running',
  'scoring',
  'submitted',
  'manual-scoring',
  'error',
  'killed',
  'usage-limits',
];

const NO_ROWS: RunsTableRow[] = [];

/** The runs page: runs table (filter and sort, kill), score distributions, batch limits and the SQL editor. */
export function RunsPage() {
  const [params, setParams] = useSearchParams();
  const text = params.get('q') ?? '';
  const status = params.get('status') ?? '';
  const client = useQueryClient();
  // staleTime: the runs main.tsx (or index.html) just fetched are not fetched again when the page mounts.
  const runs = useApi<RunsTableResponse>(RUNS_TABLE_PATH, { refetchInterval: 5000, staleTime: 4000 });
  const readOnly = useReadOnly();
  const allRows = useMemo(() => (runs.data ? rowsFromTable(runs.data) : undefined), [runs.data]);
  const kill = useApiMutation<unknown, number>(
    (runId) => ({ path: `/api/runs/${runId}/kill`, init: { method: 'POST' } }),
    { onSuccess: () => client.invalidateQueries({ queryKey: [RUNS_TABLE_PATH] }) },
  );
  const { mutate: killRun } = kill;
  const onKill = useCallback(
    (runId: number) => {
      if (confirmKill(runId)) killRun(runId);
    },
    [killRun],
  );
  const rows = useMemo(() => filterRuns(allRows ?? NO_ROWS, { text, status }), [allRows, text, status]);
  // The histograms of 10,000 scores come in a second, interruptible render: the table paints first.
  const plottedRows = useDeferredValue(rows);

  function setParam(name: string, value: string) {
    setParams(
      (previous) => {
        const next = new URLSearchParams(previous);
        if (value) next.set(name, value);
        else next.delete(name);
        return next;
      },
      { replace: true },
    );
  }

  return (
    <main className="page stack">
      <h1>Runs</h1>
      <div className="row">
        <label htmlFor="runs-filter">Filter</label>
        <input
          id="runs-filter"
          type="search"
          placeholder="task, agent, batch, #id…"
          value={text}
          onChange={(event) => setParam('q', event.target.value)}
          style={{ width: 260 }}
        />
        <label htmlFor="runs-status">Status</label>
        <select id="runs-status" value={status} onChange={(event) => setParam('status', event.target.value)}>
          <option value="">all</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <span className="hint" data-testid="runs-count">
          {allRows ? `${rows.length} of ${allRows.length} runs` : 'Loading runs…'}
        </span>
        <button
          type="button"
          disabled={rows.length === 0}
          onClick={() =>
            downloadText(
              'terrarium-runs.csv',
              toCsv(
                ['id', 'status', 'task', 'agent', 'batch', 'score', 'tokens', 'cost', 'created'],
                rows.map((r) => [
                  r.id,
                  r.status,
                  r.taskId,
                  r.agentName,
                  r.batchName,
                  r.score,
                  r.tokens,
                  r.cost,
                  r.createdAt,
                ]),
              ),
            )
          }
        >
          Export CSV
        </button>
      </div>
      {runs.error && <ErrorBanner error={runs.error} title="Runs unavailable" />}
      {kill.error && <ErrorBanner error={kill.error} title="Kill failed" />}
      <RunsTable rows={rows} onKill={readOnly ? undefined : onKill} />
      <section aria-labelledby="scores-heading">
        <h2 id="scores-heading">Score distribution per task</h2>
        {plottedRows !== rows && plottedRows.length === 0 ? (
          <p className="hint">Drawing score distributions…</p>
        ) : (
          <ScoreDistribution rows={plottedRows} />
        )}
      </section>
      <BatchLimits />
      {/* After the runs: the editor's code and its schema query would otherwise compete with the first render. */}
      {(allRows || runs.error) && (
        <Suspense fallback={<p className="hint">Loading the query editor…</p>}>
          <QueryPanel />
        </Suspense>
      )}
    </main>
  );
}
