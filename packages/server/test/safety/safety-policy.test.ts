/**
 * The safety policy (llm/safety.ts) end to end: the hooks routes (Terrarium's and pyhooks'), the real builtin
 * middleman and the OpenAI SDK against the fake provider server, PGlite.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMiddleman } from '../../src/llm/create.js';
import type { Middleman } from '../../src/llm/middleman.js';
import {
  SAFETY_NOTICE,
  type SafetyCheckTraceContent,
  SafetyPolicy,
  type SafetyPolicyOptions,
} from '../../src/llm/safety.js';
import { LlmService } from '../../src/llm/service.js';
import { LlmError } from '../../src/llm/types.js';
import { llmUsageLimits } from '../../src/runs/usage-limits.js';
import { type FakeLlmProvider, startFakeLlmProvider } from '../helpers/fake-llm-provider.js';
import { createHarness, type Harness } from '../hooks/harness.js';
import { builtinConfig } from '../llm/helpers.js';

const FULL = ['full_internet'];

describe('checkActionSafety and the full-internet model rule', () => {
  let fake: FakeLlmProvider;
  let middleman: Middleman;
  let h: Harness;
  let skipped: Harness;
  let policy: SafetyPolicy;
  const options: SafetyPolicyOptions = {
    skip: false,
    nonInterventionModels: [/^gpt-4o-mini$/, /^claude-.*$/],
    checkModels: ['gpt-4o-mini', 'gpt-4o'],
  };

  beforeAll(async () => {
    fake = await startFakeLlmProvider();
    middleman = createMiddleman(builtinConfig(fake), {
      retry: { maxAttempts: 2, baseDelayMs: 10, maxDelayMs: 10 },
      geminiBaseUrl: fake.url,
    });
    h = await createHarness({}, ({ repo }) => {
      policy = new SafetyPolicy(middleman, repo, options);
      return { safety: policy };
    });
    skipped = await createHarness({}, ({ repo }) => ({
      safety: new SafetyPolicy(middleman, repo, { ...options, skip: true }),
    }));
  });
  afterAll(async () => {
    await h?.close();
    await skipped?.close();
    await fake?.close();
  });
  beforeEach(() => fake.reset());

  const check = (harness: Harness, token: string, runId: number, body: unknown, branch = 0) =>
    harness.app.inject({
      method: 'POST',
      url: `/hooks/runs/${runId}/branches/${branch}/check-action-safety`,
      headers: { authorization: `Bearer ${token}` },
      payload: body as Record<string, unknown>,
    });
  const safetyEntries = async (runId: number) =>
    (await h.repo.listTraceEntries(runId))
      .filter((e) => e.kind === 'safety-check')
      .map((e) => e.content as SafetyCheckTraceContent);
  /** The check models answer by name: `answers[model]`, else the fake's echo (which is not a verdict). */
  const answer = (answers: Record<string, string>) => {
    fake.replyWith = ({ model }) => answers[model] ?? `echo ${model}`;
  };

  it('asks no model when the task has no full internet, the run is supervised, or checking is skipped', async () => {
    const plain = await h.newRun();
    expect((await check(h, plain.token, plain.runId, { action: 'curl https://example.com' })).json()).toEqual({
      notice: null,
    });
    const supervised = await h.newRun({ permissions: FULL, metadata: { interactive: true } });
    expect((await check(h, supervised.token, supervised.runId, { action: 'rm -rf /' })).json()).toEqual({
      notice: null,
    });
    const unchecked = await skipped.newRun({ permissions: FULL });
    expect((await check(skipped, unchecked.token, unchecked.runId, { action: 'rm -rf /' })).json()).toEqual({
      notice: null,
    });
    expect(fake.requests).toHaveLength(0);
    expect(await safetyEntries(plain.runId)).toEqual([]);
    expect(await safetyEntries(supervised.runId)).toEqual([]);
  });

  it('lets an action go ahead once a check model answers No, and traces the verdict', async () => {
    const { runId, token } = await h.newRun({ permissions: FULL });
    answer({ 'gpt-4o-mini': 'No' });
    const response = await check(h, token, runId, { action: 'pip install requests' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ notice: null });
    expect(fake.requests).toHaveLength(1);
    const body = fake.requests[0]!.body as { model: string; max_tokens?: number; max_completion_tokens?: number };
    expect(body.model).toBe('gpt-4o-mini');
    expect(JSON.stringify(body)).toContain('pip install requests');
    expect(JSON.stringify(body)).toContain('must not attempt to escape from any sandbox');
    const [entry] = await safetyEntries(runId);
    expect(entry).toMatchObject({
      action: 'pip install requests',
      verdict: 'allowed',
      reason: 'model',
      notice: null,
      checks: [{ model: 'gpt-4o-mini', answer: 'No', violates: false }],
    });
  });

  it('asks the next model when the first says Yes, and gives the notice when every model says Yes', async () => {
    const { runId, token } = await h.newRun({ permissions: FULL });
    answer({ 'gpt-4o-mini': 'Yes', 'gpt-4o': 'No.' });
    expect((await check(h, token, runId, { action: 'post a comment on a forum' })).json()).toEqual({ notice: null });
    expect(fake.requests.map((r) => (r.body as { model: string }).model)).toEqual(['gpt-4o-mini', 'gpt-4o']);

    fake.reset();
    answer({ 'gpt-4o-mini': 'Yes', 'gpt-4o': 'Yes' });
    const unsafe = await check(h, token, runId, { action: 'email the task author asking for the answer' });
    expect(unsafe.json()).toEqual({ notice: SAFETY_NOTICE });
    expect(unsafe.json().notice).toMatch(/^That action was unsafe/);
    const entries = await safetyEntries(runId);
    expect(entries.at(-1)).toMatchObject({ verdict: 'unsafe', reason: 'model', notice: SAFETY_NOTICE });
    expect(entries.at(-1)?.checks).toHaveLength(2);
  });

  it('treats an answer that is neither Yes nor No as not safe', async () => {
    const { runId, token } = await h.newRun({ permissions: FULL });
    answer({}); // both models echo, which is no verdict
    expect((await check(h, token, runId, { action: 'ls' })).json()).toEqual({ notice: SAFETY_NOTICE });
  });

  it('refuses government sites without asking a model', async () => {
    const { runId, token } = await h.newRun({ permissions: FULL });
    const response = await check(h, token, runId, { action: 'open https://www.irs.gov/forms' });
    expect(response.json()).toEqual({ notice: SAFETY_NOTICE });
    expect(fake.requests).toHaveLength(0);
    expect(await safetyEntries(runId)).toMatchObject([{ verdict: 'unsafe', reason: 'government-site' }]);
  });

  it('answers 502 (and traces an error, not a verdict) when no check model can answer', async () => {
    const { runId, token } = await h.newRun({ permissions: FULL });
    fake.failNext(10, 500);
    const response = await check(h, token, runId, { action: 'ls' });
    expect(response.statusCode).toBe(502);
    expect(response.json().error.message).toMatch(/safety check could not be made: gpt-4o-mini: .*gpt-4o: /);
    expect(await safetyEntries(runId)).toMatchObject([{ verdict: 'error', notice: null }]);
  });

  it('validates the body, scopes the token to its run, and refuses an ended branch', async () => {
    const { runId, token } = await h.newRun({ permissions: FULL });
    const other = await h.newRun({ permissions: FULL });
    const missing = await check(h, token, runId, {});
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error.message).toMatch(/action/);
    expect((await check(h, token, runId, { action: '' })).statusCode).toBe(400);
    expect((await check(h, token, other.runId, { action: 'ls' })).statusCode).toBe(403);
    await h.repo.updateBranch(runId, 0, { isRunning: false });
    const ended = await check(h, token, runId, { action: 'ls' });
    expect(ended.statusCode).toBe(409);
    expect(fake.requests).toHaveLength(0);
  });

  it("serves pyhooks' checkActionSafety with Vivaria's shape", async () => {
    const { runId, token } = await h.newRun({ permissions: FULL });
    answer({ 'gpt-4o-mini': 'Yes', 'gpt-4o': 'Yes' });
    const response = await h.app.inject({
      method: 'POST',
      url: '/checkActionSafety',
      headers: { 'content-type': 'application/json', 'x-agent-token': token },
      payload: JSON.stringify({ runId, agentBranchNumber: 0, action: 'wire money to an account' }),
    });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ result: { data: { notice: SAFETY_NOTICE } } });
  });

  it('refuses an unsupervised full-internet run a model outside NON_INTERVENTION_FULL_INTERNET_MODELS', async () => {
    const llm = new LlmService(middleman, h.database.db, h.repo, llmUsageLimits(h.hooks, policy));
    const prompt = { prompt: 'hello there' };
    const unsupervised = await h.newRun({ permissions: FULL });
    const key = { runId: unsupervised.runId, agentBranchNumber: 0 };
    const refused = await llm.generate(key, { model: 'gpt-4o', ...prompt }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(LlmError);
    expect((refused as LlmError).status).toBe(403);
    expect((refused as LlmError).message).toMatch(/gpt-4o.*NON_INTERVENTION_FULL_INTERNET_MODELS.*interactive/s);
    expect(fake.requests).toHaveLength(0);
    // An allowed model works; so does any model when a person supervises, or without full internet.
    expect((await llm.generate(key, { model: 'gpt-4o-mini', ...prompt })).result.outputs[0]!.completion).toBe(
      'echo: hello there',
    );
    const supervised = await h.newRun({ permissions: FULL, metadata: { interactive: true } });
    await llm.generate({ runId: supervised.runId, agentBranchNumber: 0 }, { model: 'gpt-4o', ...prompt });
    const offline = await h.newRun();
    await llm.generate({ runId: offline.runId, agentBranchNumber: 0 }, { model: 'gpt-4o', ...prompt });
    expect(fake.requests).toHaveLength(3);
  });
});
