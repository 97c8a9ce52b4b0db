import { useQueryClient } from '@tanstack/react-query';
import { useApi, useApiMutation } from '../../api/query.js';

/**
 * The task environments API (packages/server/src/api/routes/task-environments.ts) as the page uses it. The view's
 * schema lives with the server's service, not in @terrarium/shared, so the fields the page reads are written here.
 */

export type TaskEnvironmentState = 'building' | 'starting' | 'running' | 'stopped' | 'error' | 'destroyed';

export interface TaskEnvironment {
  name: string;
  state: TaskEnvironmentState;
  taskId: string;
  taskFamilyName: string;
  taskName: string;
  backend: string;
  sandboxName: string | null;
  ipAddress: string | null;
  owner: string;
  createdAt: string;
  destroyedAt: string | null;
  errorMessage: string | null;
  progress: Array<{ seq: number; at: string; message: string }>;
}

export type EnvironmentAction = 'stop' | 'start' | 'restart' | 'destroy';

const LIST_KEY = ['task-environments'] as const;

/** States that change by themselves (setup under way): the list is polled while one is shown. */
export const isTransient = (state: TaskEnvironmentState) => state === 'building' || state === 'starting';

export function useTaskEnvironments(includeDestroyed: boolean) {
  return useApi<TaskEnvironment[]>(`/api/task-environments?all=${includeDestroyed}`, {
    queryKey: [...LIST_KEY, includeDestroyed],
    refetchInterval: (query) => (query.state.data?.some((e) => isTransient(e.state)) ? 2000 : 10_000),
  });
}

/** Stop, start, restart (POST …/<action>) or destroy (DELETE); the list is read again afterwards. */
export function useEnvironmentAction() {
  const client = useQueryClient();
  return useApiMutation<TaskEnvironment, { name: string; action: EnvironmentAction }>(
    ({ name, action }) => {
      const path = `/api/task-environments/${encodeURIComponent(name)}`;
      return action === 'destroy'
        ? { path, init: { method: 'DELETE' } }
        : { path: `${path}/${action}`, init: { method: 'POST' } };
    },
    { onSettled: () => client.invalidateQueries({ queryKey: LIST_KEY }) },
  );
}

/** Which actions a state allows (the service refuses the others with a 400 anyway). */
export function actionsFor(state: TaskEnvironmentState): EnvironmentAction[] {
  switch (state) {
    case 'running':
      return ['stop', 'restart', 'destroy'];
    case 'stopped':
      return ['start', 'destroy'];
    // Destroying one still being set up cancels the setup.
    case 'error':
    case 'building':
    case 'starting':
      return ['destroy'];
    default:
      return [];
  }
}
