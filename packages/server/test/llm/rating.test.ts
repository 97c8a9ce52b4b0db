/**
 * rateOptions with a rating model (llm/options-rater.ts): logprobs for most models, sampling for those matching
 * CHAT_RATING_MODEL_REGEX. The hooks routes, the real builtin middleman and SDKs, the fake provider server, PGlite.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMiddleman } from '../../src/llm/create.js';
import {
  fillRatingTemplate,
  OptionsRater,
  ratingFromLogprobs,
  ratingFromSamples,
  topLogprobsOf,
} from '../../src/llm/options-rater.js';
import { type FakeLlmProvider, startFakeLlmProvider } from '../helpers/fake-llm-provider.js';
import { createHarness, type Harness } from '../hooks/harness.js';
import { builtinConfig } from './helpers.js';

const TEMPLATE = 'Transcript:\n{{&transcript}}\nProposed action: {{&action}}\nRate it from 1 to 5:';
const outputs = (completions: string[]) => ({ outputs: completions.map((completion) => ({ completion })) });

describe('rating arithmetic', () => {
  it('rates by sampling: the expectation of 1…5 over the samples that are ratings, on the −2…2 scale', () => {
    expect(ratingFromSamples(outputs(['5', '5', '5', '5']))).toBe(2);
    expect(ratingFromSamples(outputs(['1', '2', '3', '4', '5']))).toBe(0);
    // 3×"4" and 1×"2": 3.5 − 3; an off-format sample is left out.
    expect(ratingFromSamples(outputs(['4', ' 4', '4\n', '2', 'maybe']))).toBe(0.5);
    expect(ratingFromSamples(outputs(['yes', '']))).toBeUndefined();
  });

  it('rates by logprobs: renormalised over the rating tokens, in every provider shape', () => {
    const chat = {
      content: [
        {
          token: '4',
          logprob: Math.log(0.6),
          top_logprobs: [
            { token: '4', logprob: Math.log(0.6) },
            { token: '5', logprob: Math.log(0.2) },
            { token: 'The', logprob: Math.log(0.2) },
          ],
        },
      ],
    };
    // (0.6×4 + 0.2×5) / 0.8 = 4.25
    expect(ratingFromLogprobs({ outputs: [{ completion: '4', logprobs: chat }] })).toBe(1.25);
    const legacy = { tokens: ['3'], token_logprobs: [0], top_logprobs: [{ '3': Math.log(0.5), ' 1': Math.log(0.5) }] };
    expect(ratingFromLogprobs({ outputs: [{ completion: '3', logprobs: legacy }] })).toBe(-1);
    const gemini = { topCandidates: [{ candidates: [{ token: '2', logProbability: 0 }] }], chosenCandidates: [] };
    expect(ratingFromLogprobs({ outputs: [{ completion: '2', logprobs: gemini }] })).toBe(-1);
    expect(topLogprobsOf(undefined)).toEqual([]);
    expect(ratingFromLogprobs({ outputs: [{ completion: 'x', logprobs: { content: [] } }] })).toBeUndefined();
  });

  it('fills Vivaria and Python placeholders', () => {
    expect(fillRatingTemplate('{{&transcript}}|{{ action }}|{action}|{other}', { transcript: 'T', action: 'A' })).toBe(
      'T|A|A|{other}',
    );
  });
});

describe('rateOptions with a rating model', () => {
  let fake: FakeLlmProvider;
  let h: Harness;
  let rater: OptionsRater;

  beforeAll(async () => {
    fake = await startFakeLlmProvider();
    const middleman = createMiddleman(builtinConfig(fake), {
      retry: { maxAttempts: 1, baseDelayMs: 10, maxDelayMs: 10 },
      geminiBaseUrl: fake.url,
    });
    rater = new OptionsRater(middleman, { chatRatingModelRegex: /^(gpt-4o|claude-)/ });
    h = await createHarness({ rater });
  });
  afterAll(async () => {
    await h?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  const rate = (token: string, runId: number, body: Record<string, unknown>) =>
    h.app.inject({
      method: 'POST',
      url: `/hooks/runs/${runId}/branches/0/rating-requests`,
      headers: { authorization: `Bearer ${token}` },
      payload: body,
    });
  const ratingEntry = async (runId: number) =>
    (await h.repo.listTraceEntries(runId)).find((e) => e.kind === 'rating-request')!.content as Record<string, unknown>;
  /** The option a rating prompt is about (the fake sees the filled template as the last user message). */
  const optionOf = (lastUser: string) => /Proposed action: (.*)\n/.exec(lastUser)?.[1];

  it('builds the sampling request for chat rating models and the logprobs request for the others', () => {
    expect(rater.buildRatingRequest('gpt-4o', TEMPLATE, 't', 'a')).toEqual({
      model: 'gpt-4o',
      prompt: 'Transcript:\nt\nProposed action: a\nRate it from 1 to 5:',
      temperature: 1,
      maxTokens: 1,
      n: 128,
    });
    expect(rater.buildRatingRequest('o3-mini', TEMPLATE, 't', 'a')).toMatchObject({
      temperature: 0,
      maxTokens: 1,
      n: 1,
      logprobs: 5,
    });
  });

  it('rates a chat model by sampling 128 one-token completions per option and picks the best at once', async () => {
    const { runId, token } = await h.newRun();
    // "good": 96×"5" and 32×"4" → 4.75; "bad": every sample "1" → 1.
    fake.replyWith = ({ lastUser, index }) => (optionOf(lastUser) === 'good' ? (index % 4 === 0 ? '4' : '5') : '1');
    const response = await rate(token, runId, {
      options: [{ action: 'bad' }, { action: 'good' }, { action: 'fixed', fixedRating: 1.5 }],
      ratingModel: 'gpt-4o',
      ratingTemplate: TEMPLATE,
      transcript: 'the story so far',
    });
    expect(response.statusCode).toBe(200);
    expect(response.json().chosen).toEqual({ action: 'good', rating: 1.75 });
    // One request per option without a fixed rating, each asking for 128 samples of one token, no logprobs.
    expect(fake.requests).toHaveLength(2);
    for (const request of fake.requests) {
      const body = request.body as Record<string, unknown>;
      expect(body).toMatchObject({ model: 'gpt-4o', n: 128, temperature: 1 });
      expect(body.max_tokens ?? body.max_completion_tokens).toBe(1);
      expect(body.logprobs).toBeUndefined();
      expect(JSON.stringify(body)).toContain('the story so far');
    }
    const entry = await ratingEntry(runId);
    expect(entry).toMatchObject({ choice: 1, modelRatings: [-2, 1.75, 1.5] });
    expect(entry.ratingCalls).toMatchObject([
      { option: 0, method: 'sampling', samples: 128, rating: -2 },
      { option: 1, method: 'sampling', samples: 128, rating: 1.75 },
    ]);
    // The rating calls are the agent's model calls: charged to its usage.
    const usage = (
      await h.app.inject({
        url: `/hooks/runs/${runId}/branches/0/usage`,
        headers: { authorization: `Bearer ${token}` },
      })
    ).json();
    expect(usage.outputTokens).toBe(256);
    expect(usage.inputTokens).toBeGreaterThan(0);
  });

  it('rates by sampling on a provider without n (Anthropic: one call per sample)', async () => {
    const small = new OptionsRater(
      createMiddleman(builtinConfig(fake), { retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 } }),
      { chatRatingModelRegex: /^claude-/, samples: 6 },
    );
    fake.replyWith = ({ lastUser }) => (optionOf(lastUser) === 'a' ? '3' : '2');
    const { runId } = await h.newRun();
    const { ratings, calls } = await small.rate(
      { runId, agentBranchNumber: 0 },
      {
        ratingModel: 'claude-3-5-haiku-20241022',
        ratingTemplate: TEMPLATE,
        transcript: '',
        options: [{ action: 'a' }, { action: 'b' }],
      },
    );
    expect(ratings).toEqual([0, -1]);
    expect(calls.map((c) => c.samples)).toEqual([6, 6]);
    expect(fake.requests.filter((r) => r.path.endsWith('/messages'))).toHaveLength(12);
  });

  it('rates other models by the logprobs of one completion', async () => {
    const { runId, token } = await h.newRun();
    fake.replyWith = () => '4';
    fake.topLogprobs = ({ lastUser }) =>
      optionOf(lastUser) === 'likely'
        ? [
            { token: '5', logprob: Math.log(0.8) },
            { token: '4', logprob: Math.log(0.2) },
          ]
        : [{ token: '2', logprob: 0 }];
    const response = await rate(token, runId, {
      options: [{ action: 'unlikely' }, { action: 'likely' }],
      ratingModel: 'o3-mini',
      ratingTemplate: TEMPLATE,
    });
    expect(response.json().chosen).toEqual({ action: 'likely', rating: 1.8 });
    for (const request of fake.requests) {
      expect(request.body).toMatchObject({ model: 'o3-mini', n: 1, temperature: 0, logprobs: true, top_logprobs: 5 });
    }
    expect((await ratingEntry(runId)).modelRatings).toEqual([-1, 1.8]);
  });

  it('on an interactive run, shows the model ratings and waits for a person', async () => {
    const { runId, token } = await h.newRun({ metadata: { interactive: true } });
    fake.replyWith = ({ lastUser }) => (optionOf(lastUser) === 'x' ? '5' : '3');
    const response = await rate(token, runId, {
      options: [{ action: 'x' }, { action: 'y' }],
      ratingModel: 'gpt-4o',
      ratingTemplate: TEMPLATE,
    });
    expect(response.json().chosen).toBeNull();
    expect((await ratingEntry(runId)).modelRatings).toEqual([2, 0]);
    expect((await h.repo.getOpenPause(runId, 0))?.reason).toBe('human-rating');
  });

  it('answers 502 when the rating model gives no rating, and 400 without a template', async () => {
    const { runId, token } = await h.newRun();
    fake.replyWith = () => 'Sure';
    const none = await rate(token, runId, { options: [{ action: 'a' }], ratingModel: 'gpt-4o', ratingTemplate: 'x' });
    expect(none.statusCode).toBe(502);
    expect(none.json().error.message).toMatch(/no rating from 1 to 5 in 128 samples/);
    const noTemplate = await rate(token, runId, { options: [{ action: 'a' }], ratingModel: 'gpt-4o' });
    expect(noTemplate.statusCode).toBe(400);
    expect(noTemplate.json().error.message).toMatch(/ratingTemplate is required/);
    // Nothing was recorded for the refused requests.
    expect((await h.repo.listTraceEntries(runId)).filter((e) => e.kind === 'rating-request')).toEqual([]);
  });

  it("serves pyhooks' rateOptions with model ratings", async () => {
    const { runId, token } = await h.newRun();
    fake.replyWith = ({ lastUser }) => (optionOf(lastUser) === 'second' ? '5' : '2');
    const response = await h.app.inject({
      method: 'POST',
      url: '/rateOptions',
      headers: { 'content-type': 'application/json', 'x-agent-token': token },
      payload: JSON.stringify({
        runId,
        agentBranchNumber: 0,
        index: 77,
        calledAt: Date.now(),
        content: {
          options: [{ action: 'first' }, { action: 'second' }],
          ratingModel: 'gpt-4o',
          ratingTemplate: TEMPLATE,
          transcript: 'so far',
        },
      }),
    });
    expect(response.statusCode).toBe(200);
    expect(response.json().result.data).toEqual({ action: 'second', rating: 2 });
  });
});
