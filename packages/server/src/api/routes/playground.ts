import {
  PlaygroundGenerateRequest,
  PlaygroundGenerateView,
  type PlaygroundModel,
  PlaygroundModelsView,
} from '@terrarium/shared';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Middleman } from '../../llm/middleman.js';
import { bareModelName } from '../../llm/routing.js';
import { LlmError } from '../../llm/types.js';
import { abortOnDisconnect } from '../disconnect.js';
import { HttpError } from '../errors.js';

export interface PlaygroundDependencies {
  /** The same middleman agents call (routing, retries, prices): the playground is not a side door to providers. */
  middleman: Middleman;
  /** VIVARIA_IS_READ_ONLY: a generation spends money, so it is refused. */
  readOnly: boolean;
}

/**
 * The playground has no run: LlmCallContext wants one, and run ids start at 1, so 0 names "no run". The call goes to
 * the middleman directly (not LlmService), so nothing is written to any trace and no branch is charged.
 */
const NO_RUN = { runId: 0, agentBranchNumber: 0 } as const;
const MODEL_LIST_TTL_MS = 60_000;

/**
 * The web UI's playground (user-authenticated by the enclosing /api scope):
 *   GET  /playground/models     the models the middleman permits
 *   POST /playground/generate   one generation request through the middleman; completions, tokens, cost, duration
 */
export function playgroundRoutes(deps: PlaygroundDependencies): FastifyPluginAsyncZod {
  // The providers' model lists change rarely: kept a minute so a generation does not first list every provider's models.
  let cached: { at: number; models: PlaygroundModel[] } | undefined;
  const permittedModels = async (signal: AbortSignal) => {
    if (cached && Date.now() - cached.at < MODEL_LIST_TTL_MS) return cached.models;
    const models = await mapped(() => listPermitted(deps.middleman, signal));
    // An empty list may be a provider that failed to answer: asked again next time rather than kept.
    cached = models.length > 0 ? { at: Date.now(), models } : undefined;
    return models;
  };
  return async (app) => {
    app.get('/playground/models', { schema: { response: { 200: PlaygroundModelsView } } }, async (_request, reply) => {
      const models = await permittedModels(abortOnDisconnect(reply));
      return { mode: deps.middleman.mode, models };
    });

    app.post(
      '/playground/generate',
      { schema: { body: PlaygroundGenerateRequest, response: { 200: PlaygroundGenerateView } } },
      async (request, reply) => {
        if (deps.readOnly) {
          throw new HttpError(
            403,
            'This Terrarium is read-only (VIVARIA_IS_READ_ONLY): the playground cannot generate.',
          );
        }
        const body = request.body;
        // A person who closes the page stops paying for the call.
        const signal = abortOnDisconnect(reply);
        const permitted = await permittedModels(signal);
        const names = new Set(permitted.map((m) => m.name));
        if (!names.has(body.model) && !names.has(bareModelName(body.model))) {
          throw new HttpError(
            400,
            permitted.length === 0
              ? `Model "${body.model}" is not permitted: this server's middleman permits no models (mode ${deps.middleman.mode}).`
              : `Model "${body.model}" is not permitted; permitted models: ${[...names].sort().join(', ')}.`,
          );
        }
        const result = await mapped(() =>
          deps.middleman.generate(
            {
              model: body.model,
              ...(body.messages && { messages: body.messages }),
              ...(body.prompt !== undefined && { prompt: body.prompt }),
              ...(body.temperature !== undefined && { temperature: body.temperature }),
              ...(body.maxTokens !== undefined && { maxTokens: body.maxTokens }),
              ...(body.n !== undefined && { n: body.n }),
              ...(body.stop && { stop: body.stop }),
            },
            { ...NO_RUN, signal },
          ),
        );
        return {
          model: result.model,
          provider: result.provider,
          outputs: result.outputs.map((o) => ({ completion: o.completion, finishReason: o.finishReason ?? null })),
          usage: result.usage,
          durationMs: result.durationMs,
          attempts: result.attempts,
        };
      },
    );
  };
}

/** Middleman errors as HTTP errors that keep the middleman's words and status (a provider's 4xx stays a 4xx). */
async function mapped<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof LlmError) {
      // 401/403 from a provider mean the server's key is wrong, not the person's sign-in: they become 502.
      const passThrough = error.status >= 400 && error.status < 600 && ![401, 403, 499].includes(error.status);
      const status = passThrough ? error.status : 502;
      throw new HttpError(status, `The middleman refused or failed the request: ${error.message}`);
    }
    throw error;
  }
}

/** The models the middleman permits, with their provider, sorted by name. */
async function listPermitted(middleman: Middleman, signal: AbortSignal): Promise<PlaygroundModel[]> {
  const [all, permitted] = await Promise.all([
    middleman.listModels({ ...NO_RUN, signal }),
    middleman.permittedModels({ ...NO_RUN, signal }),
  ]);
  const allowed = new Set(permitted);
  const seen = new Set<string>();
  return all
    .filter((m) => allowed.has(m.name) && !seen.has(m.name) && seen.add(m.name))
    .map((m) => ({ name: m.name, provider: m.provider }))
    .sort((a, b) => a.name.localeCompare(b.name));
}
