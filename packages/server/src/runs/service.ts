import path from 'node:path';
import {
  type RunView as BaseRunView,
  CreateRunRequest,
  isTerminalRunStatus,
  QueuedRunView,
  resolveUsageLimits,
  RunPriority as SharedRunPriority,
  RunViewStatus as SharedRunViewStatus,
  type TraceEntryView,
  UsageLimits,
} from '@terrarium/shared';
import { z } from 'zod';
import { KILLED_MESSAGE, type RunEngine } from './engine.js';
import { ConflictError, NotFoundError } from './errors.js';
import { type BatchInfo, defaultBatchName, type RunQueue } from './queue.js';
import type { Reaper } from './reaper.js';
import type { RunRecord, RunRepository } from './repository.js';
import { toTraceEntryView } from './trace-view.js';

export { ConflictError, NotFoundError };

/** A request a route should refuse with 400 (e.g. a usage limit above the server's maximum). */
export class InvalidRunRequestError extends Error {
  override name = 'InvalidRunRequestError';
}

/** PATCH /api/runs/:id/usage-limits: new limits (merged into the current ones) and/or a new checkpoint. */
export const UpdateUsageLimitsRequest = z.object({
  usageLimits: UsageLimits.optional(),
  checkpoint: UsageLimits.nullable().optional().describe('null removes the checkpoint'),
});
export type UpdateUsageLimitsRequest = z.infer<typeof UpdateUsageLimitsRequest>;

function checkedLimits(limits: UsageLimits | undefined) {
  try {
    return resolveUsageLimits(limits);
  } catch (error) {
    if (error instanceof RangeError) throw new InvalidRunRequestError(error.message);
    throw error;
  }
}

/** Shared with the CLI and UI: the queue fields of the run view live in @terrarium/shared. */
export const RunPriority = SharedRunPriority;
export const RunViewStatus = SharedRunViewStatus;
export const RunView = QueuedRunView;
export type RunView = QueuedRunView;

/** A run request with the queue's options. */
export const CreateQueuedRunRequest = CreateRunRequest.extend({
  priority: RunPriority.optional().describe('high runs start before low ones (default low)'),
  batchConcurrencyLimit: z
    .number()
    .int()
    .min(0)
    .nullable()
    .optional()
    .describe('limit of the batch, when this request creates it (null: no limit)'),
});
export type CreateQueuedRunRequest = z.infer<typeof CreateQueuedRunRequest>;

export const BatchView = z.object({
  name: z.string(),
  concurrencyLimit: z.number().int().nullable(),
  queued: z.number().int(),
  active: z.number().int(),
  createdAt: z.string(),
});
export type BatchView = z.infer<typeof BatchView>;

export interface RunServiceOptions {
  queue?: RunQueue;
  reaper?: Reaper;
  /** DEFAULT_RUN_BATCH_CONCURRENCY_LIMIT: the limit of a user's default batch when it is created. */
  defaultBatchConcurrencyLimit?: number;
}

/** What users do with runs: create, list, read, kill; and batches. Routes call these and nothing else. */
export class RunService {
  constructor(
    private readonly repo: RunRepository,
    private readonly engine: RunEngine,
    private readonly options: RunServiceOptions = {},
  ) {}

  async createRun(request: CreateQueuedRunRequest, userId: string): Promise<RunView> {
    const taskFamilyDir = path.resolve(request.taskFamilyDir);
    const taskFamilyName = path.basename(taskFamilyDir);
    const taskName = request.taskName ?? '';
    const agentDir = path.resolve(request.agentDir);
    const usageLimits = checkedLimits(request.usageLimits);
    if (request.checkpoint) checkedLimits(request.checkpoint);
    const queue = this.options.queue;
    let batchName = request.batchName ?? null;
    if (queue) {
      // Every queued run belongs to a batch: without one, the user's default batch caps how many run at once.
      if (batchName === null) {
        batchName = defaultBatchName(userId);
        await queue.store.ensureBatch(batchName, this.options.defaultBatchConcurrencyLimit ?? 60);
      } else {
        await queue.store.ensureBatch(batchName, request.batchConcurrencyLimit ?? null);
      }
    }
    const id = await this.repo.insertRun({
      taskId: taskName ? `${taskFamilyName}/${taskName}` : taskFamilyName,
      taskFamilyName,
      taskName,
      taskFamilyDir,
      agentDir,
      agentName: path.basename(agentDir),
      userId,
      batchName,
      metadata: request.metadata ?? {},
      priority: request.priority ?? 'low',
      usageLimits: { usageLimits, checkpoint: request.checkpoint ?? null },
      keepTaskEnvironmentRunning: request.keepTaskEnvironmentRunning ?? false,
    });
    if (queue) queue.poke();
    else void this.engine.start(id);
    return this.getRun(id);
  }

  async getRun(id: number): Promise<RunView> {
    const run = await this.repo.getRun(id);
    if (!run) throw new NotFoundError(`Run ${id} does not exist.`);
    const branch = await this.repo.getBranch(id, 0);
    const [view] = await this.withQueueDetails([toBaseRunView(run, branch ?? null)], [run]);
    return view!;
  }

  async listRuns(limit: number): Promise<RunView[]> {
    const runs = await this.repo.listRuns({ limit });
    const views = await Promise.all(
      runs.map(async (run) => toBaseRunView(run, (await this.repo.getBranch(run.id, 0)) ?? null)),
    );
    return this.withQueueDetails(views, runs);
  }

  private async withQueueDetails(views: BaseRunView[], runs: RunRecord[]): Promise<RunView[]> {
    const queuedIds = runs.filter((run) => run.status === 'queued').map((run) => run.id);
    const store = this.options.queue?.store;
    const positions = store && queuedIds.length > 0 ? await store.queuePositions(queuedIds) : new Map();
    const full = store && queuedIds.length > 0 ? await store.fullBatches() : new Set<string>();
    return views.map((view, i) => {
      const run = runs[i]!;
      const limited = run.status === 'queued' && run.batchName !== null && full.has(run.batchName);
      const status: RunView['status'] = limited ? 'concurrency-limited' : view.status;
      return {
        ...view,
        status,
        queuePosition: positions.get(run.id) ?? null,
        batchName: run.batchName,
        priority: run.priority,
      };
    });
  }

  /**
   * Kills a run in any state: a queued one ends without starting; one this server is setting up or running is
   * aborted, its sandbox torn down and removed. A run another server process owns is asked to stop (that process
   * kills it on its next queue pass). Killing a finished run changes nothing.
   */
  /**
   * Takes back a kill that came before the run had a sandbox (queued, or during the image build): the run goes back
   * in the queue. A run killed later had its sandbox torn down, so there is nothing to resume: start a new run.
   */
  async unkillRun(id: number): Promise<RunView> {
    const run = await this.repo.getRun(id);
    if (!run) throw new NotFoundError(`Run ${id} does not exist.`);
    if (run.status !== 'killed')
      throw new ConflictError(`Run ${id} is ${run.status}, not killed: there is nothing to unkill.`);
    const store = this.options.queue?.store;
    if (!store || !(await store.unkill(id))) {
      throw new ConflictError(
        `Run ${id} was killed after its sandbox was created, and the sandbox was torn down: it cannot be resumed. ` +
          'Start a new run with the same task and agent.',
      );
    }
    this.options.queue?.poke();
    return this.getRun(id);
  }

  async killRun(id: number): Promise<RunView> {
    const run = await this.repo.getRun(id);
    if (!run) throw new NotFoundError(`Run ${id} does not exist.`);
    if (isTerminalRunStatus(run.status)) return this.getRun(id);
    const store = this.options.queue?.store;
    if (run.status === 'queued' && store && (await store.killQueued(id, KILLED_MESSAGE))) {
      this.options.queue?.poke();
      return this.getRun(id);
    }
    if (await this.engine.kill(id)) return this.getRun(id);
    const current = await this.repo.getRun(id);
    if (!current || isTerminalRunStatus(current.status)) return this.getRun(id);
    const queue = this.options.queue;
    if (queue && !queue.exclusive && current.runnerId !== null && current.runnerId !== queue.runnerId) {
      await queue.store.requestKill(id);
      return this.getRun(id);
    }
    // Nobody is working on it (an orphan): end it here and remove what it left.
    if (store) await store.finish(id, 'killed', null, KILLED_MESSAGE, [current.status]);
    else await this.repo.updateRun(id, { status: 'killed', errorMessage: KILLED_MESSAGE, finishedAt: new Date() });
    // Picked up by the engine in the meantime (claimed a moment ago)? Then it must stop too.
    await this.engine.kill(id);
    await this.options.reaper?.destroyRunSandboxes(id);
    this.options.queue?.poke();
    return this.getRun(id);
  }

  /**
   * Changes a run's usage limits and/or checkpoint (a person raising them at a checkpoint, say). Given limits are
   * merged into the current ones; a checkpoint replaces the current one (null removes it). Unpausing is separate.
   */
  async setUsageLimits(id: number, request: UpdateUsageLimitsRequest): Promise<RunView> {
    const run = await this.repo.getRun(id);
    if (!run) throw new NotFoundError(`Run ${id} does not exist.`);
    if (isTerminalRunStatus(run.status)) throw new ConflictError(`Run ${id} has ended (${run.status}).`);
    const usageLimits = checkedLimits({ ...run.usageLimits.usageLimits, ...request.usageLimits });
    let checkpoint = run.usageLimits.checkpoint;
    if (request.checkpoint !== undefined) {
      if (request.checkpoint) checkedLimits(request.checkpoint);
      checkpoint = request.checkpoint;
    }
    await this.repo.updateRun(id, { usageLimits: { usageLimits, checkpoint } });
    return this.getRun(id);
  }

  async listBatches(): Promise<BatchView[]> {
    return (await this.requireQueue().store.listBatches()).map(toBatchView);
  }

  async getBatch(name: string): Promise<BatchView> {
    const [batch] = await this.requireQueue().store.listBatches(name);
    if (!batch) throw new NotFoundError(`Run batch ${JSON.stringify(name)} does not exist.`);
    return toBatchView(batch);
  }

  /** Creates the batch or changes its limit; a higher limit (or none) releases queued runs at once. */
  async setBatchLimit(name: string, concurrencyLimit: number | null): Promise<BatchView> {
    const queue = this.requireQueue();
    await queue.store.setBatchLimit(name, concurrencyLimit);
    queue.poke();
    return this.getBatch(name);
  }

  private requireQueue(): RunQueue {
    if (!this.options.queue) throw new ConflictError('This server has no run queue.');
    return this.options.queue;
  }

  async trace(runId: number, afterId?: number): Promise<TraceEntryView[]> {
    if (!(await this.repo.getRun(runId))) throw new NotFoundError(`Run ${runId} does not exist.`);
    const entries = await this.repo.listTraceEntries(runId, { afterId });
    return entries.map(toTraceEntryView);
  }
}

function toBatchView(batch: BatchInfo): BatchView {
  return { ...batch, createdAt: batch.createdAt.toISOString() };
}

export function toBaseRunView(
  run: RunRecord,
  branch: { submission: string | null; score: number | null; agentCommandResult: RunView['agentCommandResult'] } | null,
): BaseRunView {
  return {
    id: run.id,
    taskId: run.taskId,
    agentName: run.agentName,
    status: run.status,
    score: branch?.score ?? null,
    submission: branch?.submission ?? null,
    errorStep: run.errorStep,
    errorMessage: run.errorMessage,
    steps: run.steps,
    agentCommandResult: branch?.agentCommandResult ?? null,
    createdAt: run.createdAt.toISOString(),
    startedAt: run.startedAt?.toISOString() ?? null,
    finishedAt: run.finishedAt?.toISOString() ?? null,
    usageLimits: resolveUsageLimits(run.usageLimits.usageLimits),
    checkpoint: run.usageLimits.checkpoint,
  };
}
