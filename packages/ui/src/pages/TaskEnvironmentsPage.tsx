import { useState } from 'react';
import { ErrorBanner } from '../components/ErrorBanner.js';
import { useUiConfig } from './run/api.js';
import { useEnvironmentAction, useTaskEnvironments } from './task-environments/api.js';
import { EnvironmentTable } from './task-environments/EnvironmentTable.js';

/**
 * Task environments (issue 5): a task's sandbox without an agent, for task authors. Lists them from
 * GET /api/task-environments with their state, and stops, starts, restarts or destroys them.
 */
export function TaskEnvironmentsPage() {
  const [includeDestroyed, setIncludeDestroyed] = useState(false);
  const list = useTaskEnvironments(includeDestroyed);
  const action = useEnvironmentAction();
  const config = useUiConfig();
  const readOnly = config.data?.readOnly === true;
  const environments = list.data ?? [];
  const busy = action.isPending ? (action.variables?.name ?? null) : null;

  return (
    <main className="page env-page">
      <div className="row">
        <h1>Task environments</h1>
        <span className="spacer" />
        <label>
          <input
            type="checkbox"
            checked={includeDestroyed}
            onChange={(event) => setIncludeDestroyed(event.target.checked)}
          />{' '}
          Show destroyed ones
        </label>
        <button type="button" onClick={() => void list.refetch()} disabled={list.isFetching}>
          Refresh
        </button>
      </div>
      <ErrorBanner error={list.error} title="Could not list the task environments" />
      {action.error && (
        <ErrorBanner
          error={action.error}
          title={`Could not ${action.variables?.action ?? 'change'} ${action.variables?.name ?? 'the environment'}`}
        />
      )}
      {busy && (
        <p className="hint" role="status">
          {progressWord(action.variables?.action)} {busy}…
        </p>
      )}
      {list.isPending && <p className="hint">Loading the task environments…</p>}
      {list.isSuccess && environments.length === 0 && (
        <section className="panel empty-state" aria-label="No task environments">
          <p>
            <strong>No task environments{includeDestroyed ? '' : ' running or stopped'}.</strong> A task environment is
            a task's sandbox without an agent, for writing and testing tasks. Start one from the command line:
          </p>
          <pre className="mono">terrarium task start examples/task-families/hello_world#sum</pre>
          <p className="hint">
            The target is a task family directory on the server's machine, with <code>#task</code> to pick a task. Then{' '}
            <code>terrarium task exec</code>, <code>score</code>, <code>test</code> and <code>ssh</code> work on it by
            name, and it appears here.
          </p>
        </section>
      )}
      {environments.length > 0 && (
        <EnvironmentTable
          environments={environments}
          readOnly={readOnly}
          busy={busy}
          onAction={(name, verb) => action.mutate({ name, action: verb })}
        />
      )}
    </main>
  );
}

function progressWord(action: string | undefined): string {
  switch (action) {
    case 'stop':
      return 'Stopping';
    case 'start':
      return 'Starting';
    case 'restart':
      return 'Restarting';
    case 'destroy':
      return 'Destroying';
    default:
      return 'Working on';
  }
}
