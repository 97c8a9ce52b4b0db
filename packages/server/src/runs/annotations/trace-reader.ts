import type { TraceEntryView } from '@terrarium/shared';
import { and, asc, desc, eq, gt } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { traceEntries } from '../../db/schema.js';
import type { TraceEntryRecord } from '../repository.js';
import { toTraceEntryView } from '../trace-view.js';

/**
 * Reads of the trace the run page needs that the run repository does not offer: pages of entries (so a 100,000-entry
 * trace streams in pieces and the first ones show at once, instead of after the whole trace is read) and one kind of
 * entry newest-first (the agent's output without reading every other entry).
 */
export class TraceReader {
  constructor(private readonly db: Database) {}

  /** Up to `limit` entries of the run (every branch) with id > afterId, oldest first. */
  async page(runId: number, afterId: number, limit: number): Promise<TraceEntryView[]> {
    const rows = await this.db
      .select()
      .from(traceEntries)
      .where(and(eq(traceEntries.runId, runId), gt(traceEntries.id, afterId)))
      .orderBy(asc(traceEntries.id))
      .limit(limit);
    return rows.map((row) => toTraceEntryView(toRecord(row)));
  }

  /** The newest `limit` entries of one kind on a branch, newest first. */
  async newestOfKind(
    runId: number,
    agentBranchNumber: number,
    kind: TraceEntryView['kind'],
    limit: number,
  ): Promise<TraceEntryRecord[]> {
    const rows = await this.db
      .select()
      .from(traceEntries)
      .where(
        and(
          eq(traceEntries.runId, runId),
          eq(traceEntries.agentBranchNumber, agentBranchNumber),
          eq(traceEntries.kind, kind),
        ),
      )
      .orderBy(desc(traceEntries.id))
      .limit(limit);
    return rows.map(toRecord);
  }
}

function toRecord(row: typeof traceEntries.$inferSelect): TraceEntryRecord {
  return {
    id: row.id,
    runId: row.runId,
    agentBranchNumber: row.agentBranchNumber,
    index: row.index,
    kind: row.kind as TraceEntryRecord['kind'],
    content: row.content,
    calledAt: row.calledAt,
    agentTimestamp: row.agentTimestamp,
  };
}
