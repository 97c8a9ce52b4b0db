import { and, eq } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { branchUsage } from '../db/schema.js';
import { chargeGeneration } from '../runs/hooks/usage-counters.js';
import type { RunRepository } from '../runs/repository.js';
import type { Middleman } from './middleman.js';
import {
  type CompletionSummary,
  type EmbeddingsRequest,
  type EmbeddingsResult,
  type GenerationRequest,
  type GenerationResult,
  isBookkeepingOperation,
  type LlmCallContext,
  LlmError,
  type PassthroughRequest,
  type PassthroughResult,
  type SseEvent,
  type TokenUsage,
} from './types.js';

/** What the service needs from the run repository. */
export type LlmRepository = Pick<RunRepository, 'appendTraceEntry'>;

/** Content of a `generation` trace entry. */
export interface GenerationTraceContent {
  /** Which API was called: 'middleman.generate', 'openai.chat.completions', 'anthropic.messages', … */
  api: string;
  model: string;
  provider: string;
  stream: boolean;
  /** The request, with long texts shortened. */
  request: unknown;
  completion: CompletionSummary | null;
  usage: TokenUsage;
  durationMs: number;
  retryWaitMs: number;
  attempts: number;
  error?: string;
}

/** The usage a branch has accumulated. `cost` is a lower bound when `unknownCostGenerations` > 0. */
export interface BranchUsage {
  generations: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cost: number;
  unknownCostGenerations: number;
  generationMs: number;
  retryWaitMs: number;
}

export const EMPTY_BRANCH_USAGE: BranchUsage = {
  generations: 0,
  inputTokens: 0,
  outputTokens: 0,
  cacheReadTokens: 0,
  cost: 0,
  unknownCostGenerations: 0,
  generationMs: 0,
  retryWaitMs: 0,
};

const MAX_TEXT = 4000;

/** The request as the trace keeps it: every string longer than 4000 characters shortened, base64 data dropped. */
export function summarizeRequest(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') {
    if (/^data:[^;]+;base64,/.test(value)) return `${value.slice(0, 40)}… (${value.length} characters)`;
    return value.length > MAX_TEXT
      ? `${value.slice(0, MAX_TEXT)}… (${value.length - MAX_TEXT} more characters)`
      : value;
  }
  if (depth > 12 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => summarizeRequest(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    out[key] =
      key === 'data' && typeof v === 'string' && v.length > 200
        ? `(${v.length} characters of data)`
        : summarizeRequest(v, depth + 1);
  }
  return out;
}

/**
 * Every LLM call of an agent: calls the middleman, records one `generation` trace entry per call, and charges its
 * usage to the branch (`branch_usage`). A streamed call is recorded exactly once, when its stream ends (completed,
 * failed or abandoned by the client).
 */
export interface LlmServiceOptions {
  /**
   * Called before every call an agent makes; throw (ideally an LlmError: 429 for a usage limit reached, 403 for a
   * paused or ended branch) to refuse it. This is where the run engine plugs in usage limits.
   */
  beforeCall?: (ctx: LlmCallContext, call: { api: string; model: string }) => Promise<void>;
  /**
   * Called after every call has been recorded and charged to the branch (the run engine ends the branch here when
   * the call took usage past a limit). Its errors do not fail the call: the generation has already happened.
   */
  afterCall?: (ctx: LlmCallContext) => Promise<void>;
}

export class LlmService {
  constructor(
    readonly middleman: Middleman,
    private readonly db: Database,
    private readonly repo: LlmRepository,
    private readonly options: LlmServiceOptions = {},
  ) {}

  async generate(
    ctx: LlmCallContext,
    request: GenerationRequest,
  ): Promise<{ result: GenerationResult; traceEntryId: number }> {
    await this.options.beforeCall?.(ctx, { api: 'middleman.generate', model: request.model });
    const started = performance.now();
    try {
      const result = await this.middleman.generate(request, ctx);
      const traceEntryId = await this.record(ctx, {
        api: 'middleman.generate',
        model: result.model,
        provider: result.provider,
        stream: false,
        request: summarizeRequest(request),
        completion: {
          completions: result.outputs.map((o) => o.completion),
          finishReasons: result.outputs.map((o) => o.finishReason ?? null),
          ...(result.outputs.some((o) => o.toolCalls) && {
            toolCalls: result.outputs.flatMap((o) => o.toolCalls ?? []),
          }),
        },
        usage: result.usage,
        durationMs: result.durationMs,
        retryWaitMs: result.retryWaitMs,
        attempts: result.attempts,
      });
      return { result, traceEntryId };
    } catch (error) {
      await this.recordFailure(ctx, 'middleman.generate', request.model, request, started, error);
      throw error;
    }
  }

  async embeddings(ctx: LlmCallContext, request: EmbeddingsRequest): Promise<EmbeddingsResult> {
    await this.options.beforeCall?.(ctx, { api: 'middleman.embeddings', model: request.model });
    const result = await this.middleman.embeddings(request, ctx);
    await this.record(ctx, {
      api: 'middleman.embeddings',
      model: result.model,
      provider: result.provider,
      stream: false,
      request: summarizeRequest(request),
      completion: null,
      usage: result.usage,
      durationMs: result.durationMs,
      retryWaitMs: result.retryWaitMs,
      attempts: result.attempts,
    });
    return result;
  }

  /**
   * A provider-compatible call. JSON answers are recorded before they are returned; streams are recorded when the
   * returned `events` finish (iterate them to the end or break out: either way the call is recorded once).
   */
  async passthrough(
    ctx: LlmCallContext,
    request: PassthroughRequest,
  ): Promise<PassthroughResult & { traceEntryId: Promise<number | undefined> }> {
    const api = `${request.api}.${request.operation}`;
    const body = 'body' in request ? request.body : {};
    const requestModel = request.api === 'gemini' ? request.model : String(body.model ?? '');
    if (!isBookkeepingOperation(request)) await this.options.beforeCall?.(ctx, { api, model: requestModel });
    const started = performance.now();
    let result: PassthroughResult;
    try {
      result = await this.middleman.passthrough(request, ctx);
    } catch (error) {
      if (!isBookkeepingOperation(request)) await this.recordFailure(ctx, api, requestModel, body, started, error);
      throw error;
    }
    if (isBookkeepingOperation(request)) return { ...result, traceEntryId: Promise.resolve(undefined) };
    const provider = this.middleman.mode === 'remote' ? 'remote' : request.api;
    if (result.kind === 'json') {
      const traceEntryId = await this.record(ctx, {
        api,
        model: result.model,
        provider,
        stream: false,
        request: summarizeRequest(body),
        completion: request.operation === 'embeddings' ? null : result.summary,
        usage: result.usage,
        durationMs: result.durationMs,
        retryWaitMs: result.retryWaitMs,
        attempts: result.attempts,
      });
      return { ...result, traceEntryId: Promise.resolve(traceEntryId) };
    }
    const stream = result;
    let resolveId!: (id: number | undefined) => void;
    const traceEntryId = new Promise<number | undefined>((resolve) => {
      resolveId = resolve;
    });
    let recorded = false;
    const recordOnce = async (error?: unknown) => {
      if (recorded) return;
      recorded = true;
      try {
        const { usage, summary } = await stream.final();
        const id = await this.record(ctx, {
          api,
          model: stream.model || requestModel,
          provider,
          stream: true,
          request: summarizeRequest(body),
          completion: summary,
          usage,
          durationMs: Math.round(performance.now() - started),
          retryWaitMs: stream.retryWaitMs,
          attempts: stream.attempts,
          ...(error !== undefined && { error: errorMessage(error) }),
        });
        resolveId(id);
      } catch (recordError) {
        resolveId(undefined);
        throw recordError;
      }
    };
    let iterating = false;
    let cancelled = false;
    async function* events(): AsyncGenerator<SseEvent> {
      iterating = true;
      let failure: unknown;
      try {
        yield* stream.events;
      } catch (error) {
        failure = error;
        throw error;
      } finally {
        await recordOnce(
          failure ?? (cancelled ? new Error('the client went away before the stream ended') : undefined),
        );
      }
    }
    return {
      ...stream,
      events: events(),
      cancel: () => {
        cancelled = true;
        stream.cancel();
        // Once iteration has begun, the generator's `finally` records the call.
        if (!iterating) void recordOnce(new Error('cancelled before streaming began')).catch(() => {});
      },
      traceEntryId,
    };
  }

  async branchUsage(runId: number, agentBranchNumber: number): Promise<BranchUsage> {
    const [row] = await this.db
      .select()
      .from(branchUsage)
      .where(and(eq(branchUsage.runId, runId), eq(branchUsage.agentBranchNumber, agentBranchNumber)));
    if (!row) return { ...EMPTY_BRANCH_USAGE };
    // Only the middleman's columns: the row also holds the hooks' counters (actions, burned tokens).
    return Object.fromEntries(
      (Object.keys(EMPTY_BRANCH_USAGE) as (keyof BranchUsage)[]).map((key) => [key, row[key]]),
    ) as unknown as BranchUsage;
  }

  private async record(ctx: LlmCallContext, content: GenerationTraceContent): Promise<number> {
    const id = await this.repo.appendTraceEntry({
      runId: ctx.runId,
      agentBranchNumber: ctx.agentBranchNumber,
      kind: 'generation',
      content,
    });
    const u = content.usage;
    await chargeGeneration(this.db, ctx, {
      inputTokens: u.inputTokens,
      outputTokens: u.outputTokens,
      cacheReadTokens: u.cacheReadTokens ?? 0,
      cost: u.cost,
      generationMs: content.durationMs,
      retryWaitMs: content.retryWaitMs,
    });
    await this.options.afterCall?.(ctx).catch(() => undefined);
    return id;
  }

  /** A failed call is traced (no usage is charged: nothing was generated). */
  private async recordFailure(
    ctx: LlmCallContext,
    api: string,
    model: string,
    request: unknown,
    started: number,
    error: unknown,
  ): Promise<void> {
    await this.repo.appendTraceEntry({
      runId: ctx.runId,
      agentBranchNumber: ctx.agentBranchNumber,
      kind: 'generation',
      content: {
        api,
        model,
        provider: this.middleman.mode,
        stream: false,
        request: summarizeRequest(request),
        completion: null,
        usage: { inputTokens: 0, outputTokens: 0, cost: 0 },
        durationMs: Math.round(performance.now() - started),
        retryWaitMs: 0,
        attempts: 0,
        error: errorMessage(error),
      } satisfies GenerationTraceContent,
    });
  }
}

function errorMessage(error: unknown): string {
  return error instanceof LlmError || error instanceof Error ? error.message : String(error);
}
