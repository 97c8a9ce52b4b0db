import { z } from 'zod';

/**
 * Contracts of the run page's own API (issue 5, part B): comments and tags on trace entries, the agent process's
 * output, the run summary and the UI configuration. Shared so the server validates and the UI parses one shape.
 */

export const TraceEntryComment = z.object({
  id: z.number(),
  runId: z.number(),
  traceEntryId: z.number(),
  userId: z.string(),
  content: z.string(),
  createdAt: z.string(),
});
export type TraceEntryComment = z.infer<typeof TraceEntryComment>;

export const AddCommentBody = z.object({
  traceEntryId: z.number().int().positive().describe('the trace entry the comment is about'),
  content: z.string().trim().min(1, 'a comment needs some text').max(10_000, 'a comment is at most 10,000 characters'),
});
export type AddCommentBody = z.infer<typeof AddCommentBody>;

export const TraceEntryTag = z.object({
  id: z.number(),
  runId: z.number(),
  traceEntryId: z.number(),
  userId: z.string(),
  tag: z.string(),
  createdAt: z.string(),
});
export type TraceEntryTag = z.infer<typeof TraceEntryTag>;

export const AddTagBody = z.object({
  traceEntryId: z.number().int().positive().describe('the trace entry to tag'),
  tag: z
    .string()
    .trim()
    .min(1, 'a tag cannot be empty')
    .max(64, 'a tag is at most 64 characters')
    .regex(/^[^\s,]+$/, 'a tag is one word: no spaces or commas'),
});
export type AddTagBody = z.infer<typeof AddTagBody>;

/** The agent process's output on one branch, reassembled from its `agent-output` trace entries. */
export const AgentOutputView = z.object({
  agentBranchNumber: z.number(),
  stdout: z.string(),
  stderr: z.string(),
  /** Exit code etc. once the process has ended; null while it runs. */
  exitCode: z.number().nullable(),
  finished: z.boolean(),
});
export type AgentOutputView = z.infer<typeof AgentOutputView>;

export const RunSummaryView = z.object({
  model: z.string(),
  summary: z.string(),
  /** How many trace entries went into the prompt (long traces are shortened). */
  entriesSummarized: z.number(),
});
export type RunSummaryView = z.infer<typeof RunSummaryView>;

/** What the UI needs to know about the server before showing actions. */
export const UiConfigView = z.object({
  readOnly: z.boolean(),
  runSummaryModel: z.string().nullable(),
});
export type UiConfigView = z.infer<typeof UiConfigView>;

export const UserPauseResponse = z.object({ paused: z.boolean(), reason: z.string().nullable() });
export type UserPauseResponse = z.infer<typeof UserPauseResponse>;
