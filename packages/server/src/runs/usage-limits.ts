import type { SafetyPolicy } from '../llm/safety.js';
import type { LlmServiceOptions } from '../llm/service.js';
import { LlmError } from '../llm/types.js';
import { NotFoundError } from './errors.js';
import { whileCallerConnected } from './hooks/caller-connection.js';
import { BranchEndedError, BranchPausedError, CallerGoneError, UsageLimitsReachedError } from './hooks/errors.js';
import type { HooksService } from './hooks-service.js';

/**
 * The LlmService hooks that enforce a run's usage limits on generations: before a call the branch must be live, not
 * paused (the call waits, as hook calls do) and have room under its limits; after a call the limits are checked again
 * (a call that took usage past a limit ends the branch; one that reached a checkpoint pauses it). With a safety
 * policy, an unsupervised full-internet run is also refused (403) a model outside NON_INTERVENTION_FULL_INTERNET_MODELS.
 */
export function llmUsageLimits(
  hooks: HooksService,
  safety?: Pick<SafetyPolicy, 'assertModelPermitted'>,
): Required<LlmServiceOptions> {
  return {
    beforeCall: async (ctx, call) => {
      try {
        await safety?.assertModelPermitted(ctx.runId, call.model);
        const key = { runId: ctx.runId, agentBranchNumber: ctx.agentBranchNumber };
        // A generation held for a pause is dropped if the agent hangs up meanwhile: its client sends it again, and
        // running both would charge the run twice.
        if (ctx.signal) await whileCallerConnected(ctx.signal, () => hooks.beforeGeneration(key));
        else await hooks.beforeGeneration(key);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (error instanceof UsageLimitsReachedError) throw new LlmError(429, message);
        if (error instanceof BranchEndedError) throw new LlmError(403, message);
        if (error instanceof BranchPausedError) throw new LlmError(503, message, { retryable: true });
        if (error instanceof CallerGoneError) throw new LlmError(499, message);
        if (error instanceof NotFoundError) throw new LlmError(404, message);
        throw error;
      }
    },
    afterCall: async (ctx) => {
      await hooks.enforceUsageLimits({ runId: ctx.runId, agentBranchNumber: ctx.agentBranchNumber });
    },
  };
}
