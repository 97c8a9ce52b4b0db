import { useQueryClient } from '@tanstack/react-query';
import type {
  AgentOutputView,
  HookUsageResponse,
  HumanRequestView,
  ManualScoreView,
  RunSummaryView,
  RunView,
  TraceEntryComment,
  TraceEntryTag,
  UiConfigView,
} from '@terrarium/shared';
import { ApiError } from '../../api/client.js';
import { useApi, useApiMutation } from '../../api/query.js';
import type { BranchInfo } from './trace-model.js';

/** The run page's queries and mutations, one place for their paths and cache keys. */

export const runKey = (runId: number) => ['run', runId] as const;

export function useRun(runId: number, live: boolean) {
  return useApi<RunView & { batchName?: string | null }>(`/api/runs/${runId}`, {
    queryKey: runKey(runId),
    refetchInterval: live ? 1000 : false,
  });
}

export function useUiConfig() {
  return useApi<UiConfigView>('/api/ui-config', { staleTime: Number.POSITIVE_INFINITY });
}

/** Branches (the branches API); a server without it shows branch 0 alone. */
export function useBranches(runId: number, live: boolean) {
  return useApi<BranchInfo[]>(`/api/runs/${runId}/branches`, {
    queryKey: ['branches', runId],
    refetchInterval: live ? 2000 : false,
    retry: false,
  });
}

export function useUsage(runId: number, branch: number, live: boolean) {
  return useApi<HookUsageResponse>(`/api/runs/${runId}/branches/${branch}/usage`, {
    queryKey: ['usage', runId, branch],
    refetchInterval: live ? 1000 : false,
    retry: false,
  });
}

export interface IntermediateScore {
  agentBranchNumber?: number;
  scoredAt?: string;
  score: number | null;
  message?: unknown;
  [key: string]: unknown;
}

export function useIntermediateScores(runId: number, live: boolean) {
  return useApi<IntermediateScore[]>(`/api/runs/${runId}/intermediate-scores`, {
    queryKey: ['intermediate-scores', runId],
    refetchInterval: live ? 2000 : false,
    retry: false,
  });
}

export function useHumanRequests(runId: number, branch: number, live: boolean) {
  return useApi<HumanRequestView[]>(`/api/runs/${runId}/branches/${branch}/human-requests`, {
    queryKey: ['human-requests', runId, branch],
    refetchInterval: live ? 1000 : false,
  });
}

export function useAgentOutput(runId: number, branch: number, live: boolean) {
  return useApi<AgentOutputView>(`/api/runs/${runId}/branches/${branch}/agent-output`, {
    queryKey: ['agent-output', runId, branch],
    refetchInterval: live ? 2000 : false,
  });
}

export function useComments(runId: number) {
  return useApi<TraceEntryComment[]>(`/api/runs/${runId}/comments`, { queryKey: ['comments', runId] });
}

export function useManualScores(runId: number) {
  return useApi<ManualScoreView[]>(`/api/runs/${runId}/manual-scores`, { queryKey: ['manual-scores', runId] });
}

export function useTags(runId: number) {
  return useApi<TraceEntryTag[]>(`/api/runs/${runId}/tags`, { queryKey: ['tags', runId] });
}

/** Invalidates what a change on the run may have changed. */
export function useInvalidateRun(runId: number) {
  const client = useQueryClient();
  return () =>
    Promise.all(
      [
        runKey(runId),
        ['usage', runId],
        ['branches', runId],
        ['human-requests', runId],
        ['intermediate-scores', runId],
        ['agent-output', runId],
        ['manual-scores', runId],
      ].map((queryKey) => client.invalidateQueries({ queryKey })),
    );
}

export function useRunAction(runId: number) {
  const invalidate = useInvalidateRun(runId);
  return useApiMutation<unknown, { path: string; json?: unknown }>(
    ({ path, json }) => ({ path, init: { method: 'POST', ...(json !== undefined && { json }) } }),
    { onSettled: () => void invalidate() },
  );
}

export function useSummary(runId: number) {
  return useApiMutation<RunSummaryView, void>(() => ({ path: `/api/runs/${runId}/summary`, init: { method: 'POST' } }));
}

/** True when an endpoint simply does not exist on this server (an API still being built). */
export const isMissingRoute = (error: unknown) =>
  error instanceof ApiError && error.status === 404 && /^No route /.test(error.message);
