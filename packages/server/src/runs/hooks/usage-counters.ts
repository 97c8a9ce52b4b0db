/**
 * Per-branch usage counters, so a usage-limit check costs the same whatever the length of the trace.
 *
 * Generations are charged by the LLM service (llm/service.ts) to the same `branch_usage` row; this module adds the
 * counters the hooks service owns (actions, tokens burned outside the middleman) and reads everything back in one
 * query, together with the paused time of the branch (an aggregate over its pauses, not over its trace) and its
 * open pause.
 *
 * Every change is a single `x = x + n` statement, so concurrent events never lose an update, and the action counter
 * is taken with a conditional update (`… where actions < limit`), so two processes sharing a PostgreSQL database
 * cannot both take the last action.
 */
import { and, eq, sql } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { branchUsage, runPauses } from '../../db/schema.js';
import type { RunRepository } from '../repository.js';

export interface CounterKey {
  runId: number;
  agentBranchNumber: number;
}

/** What the counters hold for a branch. */
export interface BranchCounters {
  actions: number;
  /** Input tokens: the middleman's generations plus tokens burned by the agent (burnTokens). */
  inputTokens: number;
  outputTokens: number;
  /** USD of the generations whose price is known. */
  cost: number;
  /** Time spent waiting to retry provider errors: not the agent's time. */
  retryWaitMs: number;
  /** Milliseconds of the branch's pauses inside [start, end] (an open pause lasts until end). */
  pausedMs: number;
  /** The reason of the branch's open pause, null when it is not paused. */
  openPauseReason: string | null;
}

export interface UsageCounterStore {
  /**
   * Takes one action if the branch has taken fewer than `limit`; returns the new count, or undefined (nothing taken)
   * when the branch is at its limit.
   */
  takeAction(key: CounterKey, limit: number): Promise<number | undefined>;
  /** Gives back an action taken by takeAction whose trace entry could not be written. */
  returnAction(key: CounterKey): Promise<void>;
  addBurnedTokens(key: CounterKey, inputTokens: number, outputTokens: number): Promise<void>;
  /** A generation made for the branch outside the LLM service (model-rated options). */
  addGeneration(key: CounterKey, charge: GenerationCharge): Promise<void>;
  read(key: CounterKey, window: { start: Date; end: Date }): Promise<BranchCounters>;
}

/** One generation's charge to its branch (what LlmService records after each call). */
export interface GenerationCharge {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  /** USD; null when the model's price is unknown (counted in unknown_cost_generations, never as 0). */
  cost: number | null;
  generationMs: number;
  retryWaitMs: number;
}

/** Adds one generation to the branch's `branch_usage` row (created on the branch's first charge). */
export async function chargeGeneration(db: Database, key: CounterKey, charge: GenerationCharge): Promise<void> {
  const row = {
    ...key,
    generations: 1,
    inputTokens: charge.inputTokens,
    outputTokens: charge.outputTokens,
    cacheReadTokens: charge.cacheReadTokens,
    cost: charge.cost ?? 0,
    unknownCostGenerations: charge.cost === null ? 1 : 0,
    generationMs: Math.round(charge.generationMs),
    retryWaitMs: Math.round(charge.retryWaitMs),
  };
  await db
    .insert(branchUsage)
    .values(row)
    .onConflictDoUpdate({
      target: [branchUsage.runId, branchUsage.agentBranchNumber],
      set: {
        generations: sql`${branchUsage.generations} + ${row.generations}`,
        inputTokens: sql`${branchUsage.inputTokens} + ${row.inputTokens}`,
        outputTokens: sql`${branchUsage.outputTokens} + ${row.outputTokens}`,
        cacheReadTokens: sql`${branchUsage.cacheReadTokens} + ${row.cacheReadTokens}`,
        cost: sql`${branchUsage.cost} + ${row.cost}`,
        unknownCostGenerations: sql`${branchUsage.unknownCostGenerations} + ${row.unknownCostGenerations}`,
        generationMs: sql`${branchUsage.generationMs} + ${row.generationMs}`,
        retryWaitMs: sql`${branchUsage.retryWaitMs} + ${row.retryWaitMs}`,
        updatedAt: sql`now()`,
      },
    });
}

/** The counters in `branch_usage` (the server's store). */
export class DbUsageCounters implements UsageCounterStore {
  constructor(private readonly db: Database) {}

  async takeAction(key: CounterKey, limit: number): Promise<number | undefined> {
    if (limit < 1) return undefined;
    // One statement: the branch's first action creates its row; later ones increment it while under the limit
    // (no row comes back when the update's condition fails).
    const [row] = await this.db
      .insert(branchUsage)
      .values({ ...key, actions: 1 })
      .onConflictDoUpdate({
        target: [branchUsage.runId, branchUsage.agentBranchNumber],
        set: { actions: sql`${branchUsage.actions} + 1`, updatedAt: sql`now()` },
        setWhere: sql`${branchUsage.actions} < ${limit}`,
      })
      .returning({ actions: branchUsage.actions });
    return row?.actions;
  }

  async returnAction(key: CounterKey): Promise<void> {
    await this.db
      .update(branchUsage)
      .set({ actions: sql`greatest(${branchUsage.actions} - 1, 0)` })
      .where(this.where(key));
  }

  async addBurnedTokens(key: CounterKey, inputTokens: number, outputTokens: number): Promise<void> {
    await this.db
      .insert(branchUsage)
      .values({ ...key, burnedInputTokens: inputTokens, burnedOutputTokens: outputTokens })
      .onConflictDoUpdate({
        target: [branchUsage.runId, branchUsage.agentBranchNumber],
        set: {
          burnedInputTokens: sql`${branchUsage.burnedInputTokens} + ${inputTokens}`,
          burnedOutputTokens: sql`${branchUsage.burnedOutputTokens} + ${outputTokens}`,
          updatedAt: sql`now()`,
        },
      });
  }

  addGeneration(key: CounterKey, charge: GenerationCharge): Promise<void> {
    return chargeGeneration(this.db, key, charge);
  }

  async read(key: CounterKey, window: { start: Date; end: Date }): Promise<BranchCounters> {
    const start = window.start.toISOString();
    const end = window.end.toISOString();
    // One round trip: the counters row (if any) and the paused milliseconds clipped to the window.
    const pausedMs = sql<number>`(
      select coalesce(sum(greatest(0,
        extract(epoch from (least(coalesce(${runPauses.end}, ${end}::timestamptz), ${end}::timestamptz)
          - greatest(${runPauses.start}, ${start}::timestamptz))) * 1000)), 0)::float8
      from ${runPauses}
      where ${runPauses.runId} = ${key.runId} and ${runPauses.agentBranchNumber} = ${key.agentBranchNumber}
    )`;
    const openPauseReason = sql<string | null>`(
      select ${runPauses.reason} from ${runPauses}
      where ${runPauses.runId} = ${key.runId} and ${runPauses.agentBranchNumber} = ${key.agentBranchNumber}
        and ${runPauses.end} is null
      order by ${runPauses.id} desc limit 1
    )`;
    const result = await this.db.execute<Record<string, unknown>>(sql`
      select u.actions, u.input_tokens, u.output_tokens, u.burned_input_tokens, u.burned_output_tokens, u.cost,
        u.retry_wait_ms, p.paused_ms, p.open_pause_reason
      from (select ${pausedMs} as paused_ms, ${openPauseReason} as open_pause_reason) p
      left join ${branchUsage} u on u.run_id = ${key.runId} and u.agent_branch_number = ${key.agentBranchNumber}
    `);
    const row = result.rows[0] ?? {};
    return {
      actions: n(row.actions),
      inputTokens: n(row.input_tokens) + n(row.burned_input_tokens),
      outputTokens: n(row.output_tokens) + n(row.burned_output_tokens),
      cost: n(row.cost),
      retryWaitMs: n(row.retry_wait_ms),
      pausedMs: Math.round(n(row.paused_ms)),
      openPauseReason: typeof row.open_pause_reason === 'string' ? row.open_pause_reason : null,
    };
  }

  private where(key: CounterKey) {
    return and(eq(branchUsage.runId, key.runId), eq(branchUsage.agentBranchNumber, key.agentBranchNumber));
  }
}

/**
 * Counters kept in this process, for a HooksService built without a database (unit tests of the routes): pauses
 * still come from the repository, and the LLM service's generations are not seen (it charges the database).
 */
export class MemoryUsageCounters implements UsageCounterStore {
  private readonly counters = new Map<string, Omit<BranchCounters, 'pausedMs' | 'openPauseReason'>>();

  constructor(private readonly repo: Pick<RunRepository, 'listPauses' | 'getOpenPause'>) {}

  async takeAction(key: CounterKey, limit: number): Promise<number | undefined> {
    const c = this.entry(key);
    if (c.actions >= limit) return undefined;
    c.actions++;
    return c.actions;
  }

  async returnAction(key: CounterKey): Promise<void> {
    const c = this.entry(key);
    c.actions = Math.max(0, c.actions - 1);
  }

  async addBurnedTokens(key: CounterKey, inputTokens: number, outputTokens: number): Promise<void> {
    const c = this.entry(key);
    c.inputTokens += inputTokens;
    c.outputTokens += outputTokens;
  }

  async addGeneration(key: CounterKey, charge: GenerationCharge): Promise<void> {
    const c = this.entry(key);
    c.inputTokens += charge.inputTokens;
    c.outputTokens += charge.outputTokens;
    c.cost += charge.cost ?? 0;
    c.retryWaitMs += charge.retryWaitMs;
  }

  async read(key: CounterKey, window: { start: Date; end: Date }): Promise<BranchCounters> {
    const c = this.entry(key);
    let pausedMs = 0;
    for (const pause of await this.repo.listPauses(key.runId, key.agentBranchNumber)) {
      const from = Math.max(pause.start.getTime(), window.start.getTime());
      const to = Math.min((pause.end ?? window.end).getTime(), window.end.getTime());
      if (to > from) pausedMs += to - from;
    }
    const open = await this.repo.getOpenPause(key.runId, key.agentBranchNumber);
    return { ...c, pausedMs, openPauseReason: open?.reason ?? null };
  }

  private entry(key: CounterKey) {
    const id = `${key.runId}:${key.agentBranchNumber}`;
    let c = this.counters.get(id);
    if (!c) {
      c = { actions: 0, inputTokens: 0, outputTokens: 0, cost: 0, retryWaitMs: 0 };
      this.counters.set(id, c);
    }
    return c;
  }
}

function n(value: unknown): number {
  const number = typeof value === 'string' ? Number(value) : value;
  return typeof number === 'number' && Number.isFinite(number) ? number : 0;
}
