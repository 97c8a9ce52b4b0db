import {
  type AgentStateView,
  type BranchStatus,
  type BranchUsage,
  type BranchView,
  type ForkBranchRequest,
  type IntermediateScoreView,
  type ManualScoreRequest,
  type ManualScoreView,
  resolveUsageLimits,
} from '@terrarium/shared';
import { BranchConflictError, type RunEngine } from './engine.js';
import { ConflictError, NotFoundError } from './errors.js';
import type { BranchRecord, ManualScoreRecord, RunRepository } from './repository.js';
import { InvalidRunRequestError } from './service.js';

export interface BranchServiceOptions {
  /** What a branch has used so far (the hooks service measures it); absent: branches show no usage. */
  branchUsage?: (runId: number, agentBranchNumber: number) => Promise<BranchUsage>;
}

/**
 * What users do with a run's branches and scores: list branches, read a saved agent state, fork a branch from it,
 * enter a manual score, list intermediate scores. Routes call these and nothing else.
 */
export class BranchService {
  constructor(
    private readonly repo: RunRepository,
    private readonly engine: RunEngine,
    private readonly options: BranchServiceOptions = {},
  ) {}

  private async requireRun(runId: number) {
    const run = await this.repo.getRun(runId);
    if (!run) throw new NotFoundError(`Run ${runId} does not exist.`);
    return run;
  }

  async listBranches(runId: number): Promise<BranchView[]> {
    const run = await this.requireRun(runId);
    const [branches, manual] = await Promise.all([this.repo.listBranches(runId), this.repo.listManualScores(runId)]);
    return Promise.all(
      branches.map(async (branch) => {
        const usage =
          branch.startedAt && this.options.branchUsage
            ? await this.options.branchUsage(runId, branch.agentBranchNumber).catch(() => null)
            : null;
        return {
          agentBranchNumber: branch.agentBranchNumber,
          parentAgentBranchNumber: branch.parentAgentBranchNumber,
          parentTraceEntryId: branch.parentTraceEntryId,
          status: branchStatus(branch),
          score: branch.score ?? latestManualScore(manual, branch.agentBranchNumber)?.score ?? null,
          submission: branch.submission,
          startedAt: branch.startedAt?.toISOString() ?? null,
          completedAt: branch.completedAt?.toISOString() ?? null,
          usage: usage && {
            tokens: usage.tokens,
            actions: usage.actions,
            totalSeconds: usage.totalSeconds,
            cost: usage.cost,
            isPaused: usage.isPaused,
          },
          usageLimits: resolveUsageLimits({ ...run.usageLimits.usageLimits, ...branch.usageLimits }),
          agentCommandResult: branch.agentCommandResult
            ? { ...branch.agentCommandResult, timedOut: branch.agentCommandResult.timedOut ?? false }
            : null,
        };
      }),
    );
  }

  /** The latest state the agent saved at or before the trace entry (on that entry's branch). */
  async agentState(runId: number, traceEntryId: number): Promise<AgentStateView> {
    await this.requireRun(runId);
    const found = await this.repo.findAgentStateAtOrBefore(runId, traceEntryId);
    if (!found) {
      throw new NotFoundError(
        `Run ${runId} has no agent state saved at or before trace entry ${traceEntryId} (the agent saves states with the saveState hook).`,
      );
    }
    return { traceEntryId: found.traceEntryId, state: found.state };
  }

  /**
   * Forks a branch at a trace entry of its parent: the new branch's agent starts in the run's sandbox with the state
   * given, or else the one saved at or before the entry. The run's sandbox must be up (the run still going).
   */
  async fork(runId: number, request: ForkBranchRequest): Promise<{ agentBranchNumber: number }> {
    await this.requireRun(runId);
    const parent = await this.repo.getBranch(runId, request.parentAgentBranchNumber);
    if (!parent) {
      throw new NotFoundError(`Run ${runId} has no branch ${request.parentAgentBranchNumber} to fork from.`);
    }
    const entry = await this.repo.getTraceEntry(runId, request.traceEntryId);
    if (!entry || entry.agentBranchNumber !== request.parentAgentBranchNumber) {
      throw new InvalidRunRequestError(
        `Trace entry ${request.traceEntryId} is not an entry of branch ${request.parentAgentBranchNumber} of run ${runId}.`,
      );
    }
    let state = request.agentState;
    if (state === undefined) {
      const saved = await this.repo.findAgentStateAtOrBefore(runId, request.traceEntryId);
      if (!saved) {
        throw new InvalidRunRequestError(
          `No agent state was saved at or before trace entry ${request.traceEntryId}: give agentState in the request.`,
        );
      }
      state = saved.state;
    }
    let usageLimits = null;
    if (request.usageLimits) {
      try {
        resolveUsageLimits(request.usageLimits);
      } catch (error) {
        if (error instanceof RangeError) throw new InvalidRunRequestError(error.message);
        throw error;
      }
      usageLimits = Object.fromEntries(Object.entries(request.usageLimits).filter(([, v]) => v !== undefined));
    }
    if (!this.engine.isActive(runId)) {
      throw new ConflictError(
        `Run ${runId} is not running in this server: a branch can only be forked while the run's sandbox is up.`,
      );
    }
    // Branch numbers are taken in order; two forks at once may race for one, so a clash tries the next.
    for (let attempt = 0; ; attempt++) {
      const branches = await this.repo.listBranches(runId);
      const agentBranchNumber = Math.max(...branches.map((b) => b.agentBranchNumber)) + 1;
      try {
        await this.repo.insertBranch(runId, agentBranchNumber, {
          parentAgentBranchNumber: request.parentAgentBranchNumber,
          parentTraceEntryId: request.traceEntryId,
          usageLimits,
        });
      } catch (error) {
        if (attempt < 5) continue;
        throw error;
      }
      try {
        await this.engine.startBranch(runId, agentBranchNumber, state);
      } catch (error) {
        await this.repo.updateBranch(runId, agentBranchNumber, {
          completedAt: new Date(),
          scoreStatus: 'error',
        });
        if (error instanceof BranchConflictError) throw new ConflictError(error.message);
        throw error;
      }
      return { agentBranchNumber };
    }
  }

  /** A person's score for a branch the task could not score; the branch then shows it as its score. */
  async manualScore(
    runId: number,
    agentBranchNumber: number,
    request: ManualScoreRequest,
    userId: string,
  ): Promise<ManualScoreView> {
    const run = await this.requireRun(runId);
    const branch = await this.repo.getBranch(runId, agentBranchNumber);
    if (!branch) throw new NotFoundError(`Run ${runId} has no branch ${agentBranchNumber}.`);
    const awaitsManualScore =
      branch.scoreStatus === 'manual-scoring' ||
      (agentBranchNumber === 0 && branch.scoreStatus === null && run.status === 'manual-scoring');
    if (!awaitsManualScore) {
      const state =
        branch.completedAt === null ? 'has not ended yet' : `ended ${branch.scoreStatus ?? 'without a score'}`;
      throw new ConflictError(
        `Branch ${agentBranchNumber} of run ${runId} ${state}: manual scores are for branches that ended in manual scoring (the task's score returned None).`,
      );
    }
    const id = await this.repo.insertManualScore({
      runId,
      agentBranchNumber,
      score: request.score,
      secondsToScore: request.secondsToScore ?? null,
      notes: request.notes ?? null,
      userId,
    });
    // The latest manual score is the branch's score (and, on the trunk, the run's).
    await this.repo.updateBranch(runId, agentBranchNumber, { score: request.score });
    await this.repo.appendTraceEntry({
      runId,
      agentBranchNumber,
      kind: 'score',
      content: { score: request.score, manual: true, by: userId },
    });
    const stored = (await this.repo.listManualScores(runId)).find((s) => s.id === id)!;
    return toManualScoreView(stored);
  }

  async listManualScores(runId: number): Promise<ManualScoreView[]> {
    await this.requireRun(runId);
    return (await this.repo.listManualScores(runId)).map(toManualScoreView);
  }

  async intermediateScores(runId: number): Promise<IntermediateScoreView[]> {
    await this.requireRun(runId);
    return (await this.repo.listRunIntermediateScores(runId)).map((score) => ({
      id: score.id,
      agentBranchNumber: score.agentBranchNumber,
      scoredAt: score.scoredAt.toISOString(),
      elapsedSeconds: score.elapsedMs / 1000,
      score: score.score === null || Number.isNaN(score.score) ? null : score.score,
      invalid: score.score !== null && Number.isNaN(score.score),
      message: score.message,
      details: score.details,
    }));
  }
}

function branchStatus(branch: BranchRecord): BranchStatus {
  if (branch.isRunning) return 'running';
  if (branch.completedAt === null) return branch.startedAt === null ? 'pending' : 'running';
  switch (branch.scoreStatus) {
    case 'submitted':
    case 'manual-scoring':
    case 'usage-limits':
    case 'error':
    case 'killed':
      return branch.scoreStatus;
    default:
      return branch.score !== null ? 'submitted' : 'error';
  }
}

function latestManualScore(scores: ManualScoreRecord[], agentBranchNumber: number): ManualScoreRecord | undefined {
  return scores.filter((s) => s.agentBranchNumber === agentBranchNumber).at(-1);
}

function toManualScoreView(score: ManualScoreRecord): ManualScoreView {
  return {
    id: score.id,
    agentBranchNumber: score.agentBranchNumber,
    score: score.score,
    secondsToScore: score.secondsToScore,
    notes: score.notes,
    userId: score.userId,
    createdAt: score.createdAt.toISOString(),
  };
}
