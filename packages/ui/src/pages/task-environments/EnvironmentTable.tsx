import { actionsFor, type EnvironmentAction, type TaskEnvironment } from './api.js';

const ACTION_LABELS: Record<EnvironmentAction, string> = {
  stop: 'Stop',
  start: 'Start',
  restart: 'Restart',
  destroy: 'Destroy',
};

export interface EnvironmentTableProps {
  environments: TaskEnvironment[];
  /** Hides every action (VIVARIA_IS_READ_ONLY). */
  readOnly: boolean;
  /** The environment an action is under way on (its buttons are disabled meanwhile). */
  busy: string | null;
  /** Destroy asks for confirmation before this is called. */
  onAction: (name: string, action: EnvironmentAction) => void;
  /** Asks the person to confirm destroying; window.confirm by default (a parameter so tests can answer). */
  confirm?: (message: string) => boolean;
}

/** One row per environment: name, task, state, created, owner, and the actions its state allows. */
export function EnvironmentTable({
  environments,
  readOnly,
  busy,
  onAction,
  confirm = (message) => window.confirm(message),
}: EnvironmentTableProps) {
  return (
    <table className="env-table">
      <caption className="visually-hidden">Task environments</caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Task</th>
          <th scope="col">State</th>
          <th scope="col">Created</th>
          <th scope="col">Owner</th>
          <th scope="col">Sandbox</th>
          {!readOnly && <th scope="col">Actions</th>}
        </tr>
      </thead>
      <tbody>
        {environments.map((env) => (
          <tr key={env.name} data-testid={`env-${env.name}`}>
            <td className="mono">{env.name}</td>
            <td className="mono">{env.taskId}</td>
            <td>
              <span className={`status env-state-${env.state}`}>{env.state}</span>
              {env.errorMessage && (
                <div className="env-error" title={env.errorMessage}>
                  {env.errorMessage}
                </div>
              )}
              {(env.state === 'building' || env.state === 'starting') && env.progress.length > 0 && (
                <div className="hint">{env.progress.at(-1)?.message}</div>
              )}
            </td>
            <td>
              <time dateTime={env.createdAt}>{new Date(env.createdAt).toLocaleString()}</time>
            </td>
            <td>{env.owner || '—'}</td>
            <td className="mono">
              {env.backend}
              {env.ipAddress ? ` · ${env.ipAddress}` : ''}
            </td>
            {!readOnly && (
              <td>
                <div className="row">
                  {actionsFor(env.state).map((action) => (
                    <button
                      key={action}
                      type="button"
                      className={action === 'destroy' ? 'danger' : undefined}
                      disabled={busy === env.name}
                      aria-label={`${ACTION_LABELS[action]} ${env.name}`}
                      onClick={() => {
                        if (
                          action === 'destroy' &&
                          !confirm(
                            `Destroy task environment ${env.name}? TaskFamily.teardown runs and its sandbox is removed; this cannot be undone.`,
                          )
                        )
                          return;
                        onAction(env.name, action);
                      }}
                    >
                      {ACTION_LABELS[action]}
                    </button>
                  ))}
                </div>
              </td>
            )}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
