import { z } from 'zod';

/** Where a run is in its life. Terminal states end with no further transition. */
export const RunStatus = z.enum([
  'queued',
  'setting-up',
  'running',
  'scoring',
  'submitted',
  'manual-scoring',
  'error',
  'killed',
  'usage-limits',
]);
export type RunStatus = z.infer<typeof RunStatus>;

export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = [
  'submitted',
  'manual-scoring',
  'error',
  'killed',
  'usage-limits',
];
export const isTerminalRunStatus = (status: RunStatus): boolean => TERMINAL_RUN_STATUSES.includes(status);

/** The named steps of a run; an error names the step it happened in. */
export const RunStep = z.enum([
  'load-task',
  'build-image',
  'create-sandbox',
  'task-setup-data',
  'task-start',
  'install-agent',
  'agent',
  'score',
  'teardown',
]);
export type RunStep = z.infer<typeof RunStep>;

export const StepRecord = z.object({
  step: RunStep,
  status: z.enum(['running', 'succeeded', 'failed', 'skipped']),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  durationMs: z.number().nullable(),
  detail: z.string().nullable(),
  stdoutTail: z.string().nullable(),
  stderrTail: z.string().nullable(),
  error: z.string().nullable(),
});
export type StepRecord = z.infer<typeof StepRecord>;

/**
 * Usage limits of a run's branch (all optional in a request: a missing one takes its default). A limit L is the most
 * the branch may use: usage equal to L is allowed, an event that would take usage past L ends the branch with status
 * `usage-limits` (see docs/agents.md, "Usage limits").
 */
export const UsageLimits = z.object({
  tokens: z.number().int().nonnegative().optional(),
  actions: z.number().int().nonnegative().optional(),
  totalSeconds: z.number().nonnegative().optional(),
  cost: z.number().nonnegative().optional(),
});
export type UsageLimits = z.infer<typeof UsageLimits>;
export type ResolvedUsageLimits = Required<UsageLimits>;

/** Vivaria's defaults, used for a limit a run does not name. */
export const DEFAULT_USAGE_LIMITS: ResolvedUsageLimits = {
  tokens: 300_000,
  actions: 3000,
  totalSeconds: 86_400,
  cost: 100,
};
/** The most any run may ask for; a request above is refused. */
export const MAX_USAGE_LIMITS: ResolvedUsageLimits = {
  tokens: 100_000_000,
  actions: 1_000_000,
  totalSeconds: 30 * 86_400,
  cost: 10_000,
};

/** A run's limits and checkpoint as stored on the run (checkpoint: a usage at which the branch pauses). */
export const RunUsageLimits = z.object({
  usageLimits: UsageLimits,
  checkpoint: UsageLimits.nullable(),
});
export type RunUsageLimits = z.infer<typeof RunUsageLimits>;

/** Fills in defaults; refuses (throws) a limit above the server's maximum. */
export function resolveUsageLimits(limits: UsageLimits | undefined): ResolvedUsageLimits {
  const resolved = { ...DEFAULT_USAGE_LIMITS, ...stripUndefined(limits ?? {}) };
  for (const key of Object.keys(MAX_USAGE_LIMITS) as (keyof ResolvedUsageLimits)[]) {
    if (resolved[key] > MAX_USAGE_LIMITS[key]) {
      throw new RangeError(`usageLimits.${key} (${resolved[key]}) is above the maximum of ${MAX_USAGE_LIMITS[key]}.`);
    }
  }
  return resolved;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A user's request to run an agent on a task. Paths are on the server's machine. */
export const CreateRunRequest = z.object({
  taskFamilyDir: z.string().min(1, 'taskFamilyDir must name a task family directory'),
  taskName: z
    .string()
    .min(1)
    .optional()
    .describe('Task within the family; defaults to the first one get_tasks returns'),
  agentDir: z.string().min(1, 'agentDir must name an agent directory'),
  batchName: z.string().min(1).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
  usageLimits: UsageLimits.optional().describe('Limits of the run; each missing one takes its default'),
  checkpoint: UsageLimits.optional().describe('Usage at which the run pauses until a person raises it and unpauses'),
  keepTaskEnvironmentRunning: z
    .boolean()
    .optional()
    .describe(
      'When the run ends, keep its sandbox running (no TaskFamily.teardown) as a task environment named run-<id>, ' +
        'for `terrarium task exec|ssh|score|destroy`',
    ),
});
export type CreateRunRequest = z.infer<typeof CreateRunRequest>;

export const AgentCommandResult = z.object({
  exitCode: z.number().nullable(),
  stdoutTail: z.string(),
  stderrTail: z.string(),
  durationMs: z.number(),
  timedOut: z.boolean(),
});
export type AgentCommandResult = z.infer<typeof AgentCommandResult>;

export const RunView = z.object({
  id: z.number(),
  taskId: z.string(),
  agentName: z.string(),
  status: RunStatus,
  score: z.number().nullable(),
  submission: z.string().nullable(),
  errorStep: RunStep.nullable(),
  errorMessage: z.string().nullable(),
  steps: z.array(StepRecord),
  agentCommandResult: AgentCommandResult.nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  usageLimits: UsageLimits.required(),
  checkpoint: UsageLimits.nullable(),
});
export type RunView = z.infer<typeof RunView>;

// --- Queue details of a run (the API's run view) ---

export const RunPriority = z.enum(['high', 'low']);
export type RunPriority = z.infer<typeof RunPriority>;

/** `queued` as stored; `concurrency-limited` when the run waits because its batch is at its limit. */
export const RunViewStatus = z.union([RunStatus, z.literal('concurrency-limited')]);
export type RunViewStatus = z.infer<typeof RunViewStatus>;

/** The run as the user API shows it: the run plus its queue details. */
export const QueuedRunView = RunView.extend({
  status: RunViewStatus,
  /** 1-based place in the queue (priority, then first come first served) while queued; null otherwise. */
  queuePosition: z.number().int().positive().nullable(),
  batchName: z.string().nullable(),
  priority: RunPriority,
});
export type QueuedRunView = z.infer<typeof QueuedRunView>;

// --- Branches and scores ---

/** How a branch stands: running, or how it ended. */
export const BranchStatus = z.enum([
  'pending',
  'running',
  'submitted',
  'manual-scoring',
  'usage-limits',
  'error',
  'killed',
]);
export type BranchStatus = z.infer<typeof BranchStatus>;

export const BranchUsage = z.object({
  tokens: z.number(),
  actions: z.number(),
  /** Working seconds: since the branch started, pauses excluded. */
  totalSeconds: z.number(),
  cost: z.number(),
  isPaused: z.boolean(),
});
export type BranchUsage = z.infer<typeof BranchUsage>;

/** GET /api/runs/:runId/branches: one agent branch of a run (0 is the trunk). */
export const BranchView = z.object({
  agentBranchNumber: z.number().int().nonnegative(),
  parentAgentBranchNumber: z.number().int().nonnegative().nullable(),
  parentTraceEntryId: z.number().int().nullable(),
  status: BranchStatus,
  /** The task's score, or the latest manual score; null when there is none (yet). */
  score: z.number().nullable(),
  submission: z.string().nullable(),
  startedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  /** What the branch has used; null before it started. */
  usage: BranchUsage.nullable(),
  /** The branch's limits (its own when forked with some, else the run's), defaults filled in. */
  usageLimits: UsageLimits.required(),
  agentCommandResult: AgentCommandResult.nullable(),
});
export type BranchView = z.infer<typeof BranchView>;

/** POST /api/runs/:runId/branches: fork a new branch from the agent state saved at or before a trace entry. */
export const ForkBranchRequest = z.object({
  parentAgentBranchNumber: z.number().int().nonnegative().describe('the branch the trace entry belongs to'),
  traceEntryId: z.number().int().positive().describe('fork at this trace entry (of the parent branch)'),
  agentState: z
    .unknown()
    .optional()
    .describe('the starting state (any JSON); default: the state saved at or before the trace entry'),
  usageLimits: UsageLimits.optional().describe("the new branch's limits; each missing one takes the run's"),
});
export type ForkBranchRequest = z.infer<typeof ForkBranchRequest>;

/** GET /api/runs/:runId/agent-state?traceEntryId=: the latest state saved at or before that entry. */
export const AgentStateView = z.object({ traceEntryId: z.number().int(), state: z.unknown() });
export type AgentStateView = z.infer<typeof AgentStateView>;

/** POST /api/runs/:runId/branches/:n/manual-score. */
export const ManualScoreRequest = z.object({
  score: z.number().finite('score must be a finite number'),
  secondsToScore: z.number().nonnegative().optional().describe('how long scoring took the person'),
  notes: z.string().max(10_000).optional(),
});
export type ManualScoreRequest = z.infer<typeof ManualScoreRequest>;

export const ManualScoreView = z.object({
  id: z.number().int(),
  agentBranchNumber: z.number().int(),
  score: z.number(),
  secondsToScore: z.number().nullable(),
  notes: z.string().nullable(),
  userId: z.string(),
  createdAt: z.string(),
});
export type ManualScoreView = z.infer<typeof ManualScoreView>;

/** GET /api/runs/:runId/intermediate-scores: TaskFamily.intermediate_score results, every branch, oldest first. */
export const IntermediateScoreView = z.object({
  id: z.number().int(),
  agentBranchNumber: z.number().int(),
  scoredAt: z.string(),
  elapsedSeconds: z.number(),
  /** null: no score; NaN is shown as null with `invalid: true`. */
  score: z.number().nullable(),
  invalid: z.boolean(),
  message: z.record(z.string(), z.unknown()),
  details: z.record(z.string(), z.unknown()),
});
export type IntermediateScoreView = z.infer<typeof IntermediateScoreView>;
