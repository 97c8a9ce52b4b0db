import type { TraceEntryView } from '@terrarium/shared';
import type { TraceEntryRecord } from './repository.js';

/** A trace entry as the API shows it (the same shape as GET /api/runs/:id/trace). */
export function toTraceEntryView(entry: TraceEntryRecord): TraceEntryView {
  return {
    id: entry.id,
    runId: entry.runId,
    agentBranchNumber: entry.agentBranchNumber,
    index: entry.index,
    kind: entry.kind,
    content: entry.content,
    calledAt: entry.calledAt.toISOString(),
    agentTimestamp: entry.agentTimestamp?.toISOString() ?? null,
  };
}
