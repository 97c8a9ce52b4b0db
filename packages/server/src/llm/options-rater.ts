/**
 * Rating an agent's options with a model (rateOptions with a `ratingModel`), as Vivaria's OptionsRater does.
 *
 * The rating prompt (the agent's template filled with the transcript and the option) asks for one token, a rating
 * from 1 to 5. Two ways to turn the answer into a number on Vivaria's −2…2 scale:
 *
 * - logprobs (the default): one completion at temperature 0 with the top 5 logprobs; the rating is the expectation
 *   of 1…5 under the probabilities of those tokens, renormalised over the five.
 * - sampling, for models matching CHAT_RATING_MODEL_REGEX (chat models that return no logprobs): `samples` (128)
 *   one-token completions at temperature 1; the probability of each rating is its share of the samples that are a
 *   rating, and the rating is their expectation. (Vivaria divides by every sample, so an off-format sample pulls
 *   the rating down; here such samples are left out, as the logprobs path leaves out other tokens.)
 *
 * Both subtract 3 and round to 3 decimals.
 */
import { ModelUnavailableError } from '../runs/hooks/errors.js';
import type { Middleman } from './middleman.js';
import type { GenerationRequest, GenerationResult, LlmCallContext } from './types.js';

const RATINGS = [1, 2, 3, 4, 5] as const;

export interface OptionsRaterOptions {
  /** CHAT_RATING_MODEL_REGEX: rating models rated by sampling instead of logprobs. */
  chatRatingModelRegex?: RegExp | undefined;
  /** Completions sampled per option for chat rating models (Vivaria: 128). */
  samples?: number;
}

export interface RatingInput {
  ratingModel: string;
  ratingTemplate: string;
  transcript: string;
  options: ReadonlyArray<{ action: string; fixedRating?: number | null | undefined }>;
}

/** One model call made to rate one option. */
export interface RatingCall {
  option: number;
  model: string;
  method: 'logprobs' | 'sampling';
  rating: number;
  samples: number;
  inputTokens: number;
  outputTokens: number;
  cost: number | null;
  durationMs: number;
  retryWaitMs: number;
}

export class OptionsRater {
  private readonly samples: number;

  constructor(
    private readonly middleman: Middleman,
    private readonly options: OptionsRaterOptions = {},
  ) {
    this.samples = options.samples ?? 128;
  }

  /** Whether a model is rated by sampling (it matches CHAT_RATING_MODEL_REGEX). */
  usesSampling(model: string): boolean {
    return this.options.chatRatingModelRegex?.test(model) ?? false;
  }

  /** The generation that rates one option. */
  buildRatingRequest(model: string, template: string, transcript: string, action: string): GenerationRequest {
    const prompt = fillRatingTemplate(template, { transcript, action });
    return this.usesSampling(model)
      ? { model, prompt, temperature: 1, maxTokens: 1, n: this.samples }
      : { model, prompt, temperature: 0, maxTokens: 1, n: 1, logprobs: 5 };
  }

  /**
   * A rating per option: the fixed rating where the option has one, else the model's. The options needing a model
   * rating are rated concurrently. Throws ModelUnavailableError when a call fails or yields no rating.
   */
  async rate(ctx: LlmCallContext, input: RatingInput): Promise<{ ratings: number[]; calls: RatingCall[] }> {
    const calls = await Promise.all(
      input.options.map(async (option, index): Promise<RatingCall | undefined> => {
        if (typeof option.fixedRating === 'number') return undefined;
        const request = this.buildRatingRequest(
          input.ratingModel,
          input.ratingTemplate,
          input.transcript,
          option.action,
        );
        let result: GenerationResult;
        try {
          result = await this.middleman.generate(request, ctx);
        } catch (error) {
          throw new ModelUnavailableError(
            `Rating option ${index} with ${input.ratingModel} failed: ${error instanceof Error ? error.message : String(error)}`,
          );
        }
        const sampling = request.logprobs === undefined;
        const rating = sampling ? ratingFromSamples(result) : ratingFromLogprobs(result);
        if (rating === undefined) {
          throw new ModelUnavailableError(
            sampling
              ? `Rating model ${input.ratingModel} answered no rating from 1 to 5 in ${result.outputs.length} samples for option ${index}.`
              : `Rating model ${input.ratingModel} returned no logprobs for the tokens 1 to 5 for option ${index}; if it is a chat model without logprobs, add it to CHAT_RATING_MODEL_REGEX.`,
          );
        }
        return {
          option: index,
          model: result.model,
          method: sampling ? 'sampling' : 'logprobs',
          rating,
          samples: result.outputs.length,
          inputTokens: result.usage.inputTokens,
          outputTokens: result.usage.outputTokens,
          cost: result.usage.cost,
          durationMs: result.durationMs,
          retryWaitMs: result.retryWaitMs,
        };
      }),
    );
    const ratings = input.options.map((option, index) =>
      typeof option.fixedRating === 'number' ? option.fixedRating : calls[index]!.rating,
    );
    return { ratings, calls: calls.filter((c): c is RatingCall => c !== undefined) };
  }
}

/** `{{&name}}`, `{{name}}` (Vivaria's templates) and `{name}` (Python format strings) placeholders. */
export function fillRatingTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{&?\s*(\w+)\s*\}\}|\{(\w+)\}/g, (whole, a: string | undefined, b: string | undefined) => {
    const key = (a ?? b)!;
    return key in values ? values[key]! : whole;
  });
}

/** The expected rating (−2…2) from how often each of 1…5 was sampled; undefined when none was. */
export function ratingFromSamples(result: Pick<GenerationResult, 'outputs'>): number | undefined {
  const counts = RATINGS.map((r) => result.outputs.filter((o) => o.completion.trim() === String(r)).length);
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const expected = counts.reduce((acc, count, i) => acc + (count / total) * RATINGS[i]!, 0);
  return round3(expected - 3);
}

/** The expected rating (−2…2) under the first token's top logprobs; undefined when no rating token is among them. */
export function ratingFromLogprobs(result: Pick<GenerationResult, 'outputs'>): number | undefined {
  const logprobs = topLogprobsOf(result.outputs[0]?.logprobs);
  const probs = RATINGS.map((r) => {
    let p = 0;
    for (const [token, logprob] of logprobs) if (token.trim() === String(r)) p += Math.exp(logprob);
    return p;
  });
  const total = probs.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const expected = probs.reduce((acc, p, i) => acc + p * RATINGS[i]!, 0) / total;
  return round3(expected - 3);
}

/**
 * The first token's top logprobs as [token, logprob] pairs, from any of the shapes providers return: OpenAI chat
 * (`content[0].top_logprobs`), OpenAI legacy completions (`top_logprobs[0]` as a record) and Gemini
 * (`topCandidates[0].candidates`).
 */
export function topLogprobsOf(logprobs: unknown): Array<[string, number]> {
  if (!logprobs || typeof logprobs !== 'object') return [];
  const l = logprobs as Record<string, unknown>;
  const pairs: Array<[string, number]> = [];
  const push = (token: unknown, logprob: unknown) => {
    if (typeof token === 'string' && typeof logprob === 'number' && Number.isFinite(logprob))
      pairs.push([token, logprob]);
  };
  if (Array.isArray(l.content)) {
    const first = l.content[0] as { top_logprobs?: Array<{ token?: unknown; logprob?: unknown }> } | undefined;
    for (const t of first?.top_logprobs ?? []) push(t.token, t.logprob);
  } else if (Array.isArray(l.top_logprobs)) {
    const first = l.top_logprobs[0];
    if (first && typeof first === 'object') {
      if ('token' in first) push((first as { token: unknown }).token, (first as { logprob?: unknown }).logprob);
      else for (const [token, logprob] of Object.entries(first)) push(token, logprob);
    }
  } else if (Array.isArray(l.topCandidates)) {
    const first = l.topCandidates[0] as { candidates?: Array<{ token?: unknown; logProbability?: unknown }> };
    for (const c of first?.candidates ?? []) push(c.token, c.logProbability);
  }
  return pairs;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
