import type { TraceEntryComment, TraceEntryTag } from '@terrarium/shared';
import { and, asc, eq } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { traceEntries, traceEntryComments, traceEntryTags } from '../../db/schema.js';
import { ConflictError, NotFoundError } from '../errors.js';

/** Comments and tags people put on trace entries (the run page). Every entry is checked to belong to the run. */
export class AnnotationStore {
  constructor(private readonly db: Database) {}

  private async requireEntry(runId: number, traceEntryId: number): Promise<void> {
    const [row] = await this.db
      .select({ id: traceEntries.id })
      .from(traceEntries)
      .where(and(eq(traceEntries.id, traceEntryId), eq(traceEntries.runId, runId)));
    if (!row) throw new NotFoundError(`Run ${runId} has no trace entry ${traceEntryId}.`);
  }

  async listComments(runId: number): Promise<TraceEntryComment[]> {
    const rows = await this.db
      .select()
      .from(traceEntryComments)
      .where(eq(traceEntryComments.runId, runId))
      .orderBy(asc(traceEntryComments.id));
    return rows.map(commentView);
  }

  async addComment(runId: number, traceEntryId: number, userId: string, content: string): Promise<TraceEntryComment> {
    await this.requireEntry(runId, traceEntryId);
    const [row] = await this.db.insert(traceEntryComments).values({ runId, traceEntryId, userId, content }).returning();
    return commentView(row!);
  }

  async deleteComment(runId: number, commentId: number): Promise<void> {
    const deleted = await this.db
      .delete(traceEntryComments)
      .where(and(eq(traceEntryComments.id, commentId), eq(traceEntryComments.runId, runId)))
      .returning({ id: traceEntryComments.id });
    if (deleted.length === 0) throw new NotFoundError(`Run ${runId} has no comment ${commentId}.`);
  }

  async listTags(runId: number): Promise<TraceEntryTag[]> {
    const rows = await this.db
      .select()
      .from(traceEntryTags)
      .where(eq(traceEntryTags.runId, runId))
      .orderBy(asc(traceEntryTags.id));
    return rows.map(tagView);
  }

  async addTag(runId: number, traceEntryId: number, userId: string, tag: string): Promise<TraceEntryTag> {
    await this.requireEntry(runId, traceEntryId);
    const [row] = await this.db
      .insert(traceEntryTags)
      .values({ runId, traceEntryId, userId, tag })
      .onConflictDoNothing()
      .returning();
    if (!row) throw new ConflictError(`Trace entry ${traceEntryId} already has the tag ${JSON.stringify(tag)}.`);
    return tagView(row);
  }

  async deleteTag(runId: number, tagId: number): Promise<void> {
    const deleted = await this.db
      .delete(traceEntryTags)
      .where(and(eq(traceEntryTags.id, tagId), eq(traceEntryTags.runId, runId)))
      .returning({ id: traceEntryTags.id });
    if (deleted.length === 0) throw new NotFoundError(`Run ${runId} has no tag ${tagId}.`);
  }
}

function commentView(row: typeof traceEntryComments.$inferSelect): TraceEntryComment {
  return { ...row, createdAt: row.createdAt.toISOString() };
}

function tagView(row: typeof traceEntryTags.$inferSelect): TraceEntryTag {
  return { ...row, createdAt: row.createdAt.toISOString() };
}
