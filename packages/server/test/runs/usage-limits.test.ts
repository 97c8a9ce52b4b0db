import { DEFAULT_USAGE_LIMITS } from '@terrarium/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STATIC_USER } from '../../src/auth/user-tokens.js';
import type { Middleman } from '../../src/llm/middleman.js';
import { LlmService } from '../../src/llm/service.js';
import type { GenerationResult } from '../../src/llm/types.js';
import { LlmError } from '../../src/llm/types.js';
import { llmUsageLimits } from '../../src/runs/usage-limits.js';
import { ACCESS_TOKEN, createHarness, type Harness } from '../hooks/harness.js';

let h: Harness;

beforeAll(async () => {
  h = await createHarness({ pauseWaitMs: 2000 });
  await h.repo.ensureUser(STATIC_USER.id, STATIC_USER.name);
});

afterAll(async () => {
  await h?.close();
});

function hook(token: string, runId: number, route: string, body?: unknown) {
  return h.app.inject({
    method: body === undefined ? 'GET' : 'POST',
    url: `/hooks/runs/${runId}/branches/0/${route}`,
    headers: { authorization: `Bearer ${token}` },
    ...(body !== undefined && { payload: body as Record<string, unknown> }),
  });
}

function asUser(method: 'GET' | 'POST' | 'PATCH', url: string, body?: Record<string, unknown>) {
  return h.app.inject({
    method,
    url: `/api${url}`,
    headers: { authorization: `Bearer ${ACCESS_TOKEN}` },
    ...(body !== undefined && { payload: body }),
  });
}

async function runWithLimits(body: Record<string, unknown>) {
  const run = await h.newRun();
  const response = await asUser('PATCH', `/runs/${run.runId}/usage-limits`, body);
  expect(response.statusCode).toBe(200);
  return run;
}

/** A middleman whose every generation uses `tokens` tokens (half in, half out) and costs `cost`. */
function fakeMiddleman(tokens: number, cost: number, retryWaitMs = 0): Middleman {
  const result: GenerationResult = {
    model: 'fake-model',
    provider: 'openai',
    outputs: [{ completion: 'ok' }],
    usage: { inputTokens: tokens / 2, outputTokens: tokens / 2, cost },
    durationMs: 1,
    retryWaitMs,
    attempts: 1,
  } as GenerationResult;
  return { mode: 'builtin', generate: async () => result } as unknown as Middleman;
}

describe('usage limits on a run', () => {
  it('POST /api/runs takes limits and a checkpoint, fills in defaults and refuses limits above the maxima', async () => {
    const created = await asUser('POST', '/runs', {
      taskFamilyDir: '/nowhere/hello_world',
      agentDir: '/nowhere/agent',
      usageLimits: { actions: 5 },
      checkpoint: { tokens: 1000 },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json().usageLimits).toEqual({ ...DEFAULT_USAGE_LIMITS, actions: 5 });
    expect(created.json().checkpoint).toEqual({ tokens: 1000 });
    const defaults = await asUser('POST', '/runs', { taskFamilyDir: '/nowhere/x', agentDir: '/nowhere/a' });
    expect(defaults.json().usageLimits).toEqual({ tokens: 300_000, actions: 3000, totalSeconds: 86_400, cost: 100 });
    expect(defaults.json().checkpoint).toBeNull();
    const tooMuch = await asUser('POST', '/runs', {
      taskFamilyDir: '/nowhere/x',
      agentDir: '/nowhere/a',
      usageLimits: { cost: 1e9 },
    });
    expect(tooMuch.statusCode).toBe(400);
    expect(tooMuch.json().error.message).toMatch(/cost .* above the maximum/);
    const negative = await asUser('POST', '/runs', {
      taskFamilyDir: '/nowhere/x',
      agentDir: '/nowhere/a',
      usageLimits: { actions: -1 },
    });
    expect(negative.statusCode).toBe(400);
  });

  it('actions limit N: the N-th action is accepted, the (N+1)-th is refused and ends the branch', async () => {
    const N = 3;
    const { runId, token } = await runWithLimits({ usageLimits: { actions: N } });
    let ended = '';
    h.events.onceUsageLimits(runId, 0, (detail) => {
      ended = detail;
    });
    for (let i = 1; i <= N; i++) {
      const response = await hook(token, runId, 'action', { action: { i } });
      expect(response.statusCode, `action ${i}`).toBe(200);
    }
    expect(ended).toBe('');
    expect((await h.repo.getBranch(runId, 0))!.isRunning).toBe(true);
    const refused = await hook(token, runId, 'action', { action: { i: N + 1 } });
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error.message).toMatch(/action 4 is over the limit of 3 actions/);
    expect(ended).toMatch(/limit of 3 actions/);
    expect((await h.repo.getBranch(runId, 0))!.isRunning).toBe(false);
    const entries = await h.repo.listTraceEntries(runId, { agentBranchNumber: 0 });
    expect(entries.filter((e) => e.kind === 'action')).toHaveLength(N);
    expect(entries.at(-1)).toMatchObject({ kind: 'error', content: { from: 'usageLimits' } });
    // The branch has ended: everything after is refused.
    expect((await hook(token, runId, 'log', { content: ['late'] })).statusCode).toBe(409);
  });

  it("a forked branch's own limits apply to it, and the run's to the trunk", async () => {
    const { runId, token } = await runWithLimits({ usageLimits: { actions: 10 } });
    await h.repo.insertBranch(runId, 1, {
      parentAgentBranchNumber: 0,
      parentTraceEntryId: 1,
      usageLimits: { ...DEFAULT_USAGE_LIMITS, actions: 2 },
    });
    await h.repo.updateBranch(runId, 1, { isRunning: true, startedAt: new Date() });
    const onBranch = (n: number, i: number) =>
      h.app.inject({
        method: 'POST',
        url: `/hooks/runs/${runId}/branches/${n}/action`,
        headers: { authorization: `Bearer ${token}` },
        payload: { action: { i } },
      });
    expect((await onBranch(1, 1)).statusCode).toBe(200);
    expect((await onBranch(1, 2)).statusCode).toBe(200);
    const third = await onBranch(1, 3);
    expect(third.statusCode).toBeGreaterThanOrEqual(400);
    expect(third.body).toMatch(/limit of 2 actions/);
    for (let i = 1; i <= 3; i++) expect((await onBranch(0, i)).statusCode, `trunk action ${i}`).toBe(200);
  });

  it('concurrent actions never get past the limit', async () => {
    const { runId, token } = await runWithLimits({ usageLimits: { actions: 2 } });
    const responses = await Promise.all([1, 2, 3, 4, 5].map((i) => hook(token, runId, 'action', { action: { i } })));
    expect(responses.filter((r) => r.statusCode === 200)).toHaveLength(2);
    const entries = await h.repo.listTraceEntries(runId, { agentBranchNumber: 0 });
    expect(entries.filter((e) => e.kind === 'action')).toHaveLength(2);
  });

  it('actions limit 0 refuses the first action', async () => {
    const { runId, token } = await runWithLimits({ usageLimits: { actions: 0 } });
    expect((await hook(token, runId, 'action', { action: {} })).statusCode).toBe(409);
  });

  it('tokens: a call that reaches the limit exactly goes on; the next one is refused; a call past it ends the branch', async () => {
    const { runId } = await runWithLimits({ usageLimits: { tokens: 200 } });
    const llm = new LlmService(fakeMiddleman(100, 0.01), h.database.db, h.repo, llmUsageLimits(h.hooks));
    const ctx = { runId, agentBranchNumber: 0 };
    await llm.generate(ctx, { model: 'fake-model', prompt: 'a' });
    await llm.generate(ctx, { model: 'fake-model', prompt: 'b' }); // exactly 200: allowed
    expect((await h.repo.getBranch(runId, 0))!.isRunning).toBe(true);
    const refused = await llm.generate(ctx, { model: 'fake-model', prompt: 'c' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(LlmError);
    expect((refused as LlmError).status).toBe(429);
    expect((await h.repo.getBranch(runId, 0))!.isRunning).toBe(false);
    const usage = await h.hooks.usage(ctx);
    expect(usage.tokens).toBe(200);

    const second = await runWithLimits({ usageLimits: { tokens: 150 } });
    const ctx2 = { runId: second.runId, agentBranchNumber: 0 };
    await llm.generate(ctx2, { model: 'fake-model', prompt: 'a' }); // 100
    let ended = '';
    h.events.onceUsageLimits(second.runId, 0, (detail) => {
      ended = detail;
    });
    await llm.generate(ctx2, { model: 'fake-model', prompt: 'b' }); // 200 > 150: returned, then the branch ends
    expect(ended).toMatch(/token usage 200 is over the limit of 150/);
    expect((await h.repo.getBranch(second.runId, 0))!.isRunning).toBe(false);
    const after = await llm.generate(ctx2, { model: 'fake-model', prompt: 'c' }).catch((e: unknown) => e);
    expect((after as LlmError).status).toBe(403);
  });

  it('cost limit ends the branch once a call takes the cost past it', async () => {
    const { runId } = await runWithLimits({ usageLimits: { cost: 0.25 } });
    const llm = new LlmService(fakeMiddleman(10, 0.1), h.database.db, h.repo, llmUsageLimits(h.hooks));
    const ctx = { runId, agentBranchNumber: 0 };
    await llm.generate(ctx, { model: 'fake-model', prompt: 'a' });
    await llm.generate(ctx, { model: 'fake-model', prompt: 'b' });
    expect((await h.repo.getBranch(runId, 0))!.isRunning).toBe(true);
    await llm.generate(ctx, { model: 'fake-model', prompt: 'c' }); // 0.3 > 0.25
    expect((await h.repo.getBranch(runId, 0))!.isRunning).toBe(false);
  });

  it('time: pauses and LLM retry waits do not count; past the limit the check ends the branch', async () => {
    const { runId, token } = await runWithLimits({ usageLimits: { totalSeconds: 60 } });
    const key = { runId, agentBranchNumber: 0 };
    // Started 100 s ago, paused for 30 s of it, 15 s of LLM retry waits: 55 s of work, under 60.
    await h.repo.updateBranch(runId, 0, { startedAt: new Date(Date.now() - 100_000) });
    await h.repo.insertPause({ runId, agentBranchNumber: 0, start: new Date(Date.now() - 90_000), reason: 'legacy' });
    await h.repo.endOpenPause(runId, 0, new Date(Date.now() - 60_000));
    const llm = new LlmService(fakeMiddleman(2, 0, 15_000), h.database.db, h.repo);
    await llm.generate(key, { model: 'fake-model', prompt: 'a' });
    expect(await h.hooks.enforceUsageLimits(key)).toBe('ok');
    const usage = (await hook(token, runId, 'usage')).json();
    expect(usage.totalSeconds).toBeGreaterThanOrEqual(54);
    expect(usage.totalSeconds).toBeLessThan(60);
    expect(usage.usageLimits).toEqual({ ...DEFAULT_USAGE_LIMITS, totalSeconds: 60 });
    // Ten more seconds of work: past the limit.
    await h.repo.updateBranch(runId, 0, { startedAt: new Date(Date.now() - 110_000) });
    expect(await h.hooks.enforceUsageLimits(key)).toBe('ended');
    expect((await h.repo.getBranch(runId, 0))!.isRunning).toBe(false);
  });

  it('a generation held for a pause whose agent hangs up is neither made nor charged', async () => {
    const { runId } = await h.newRun();
    let made = 0;
    const middleman = fakeMiddleman(100, 0.01);
    const counting = {
      ...middleman,
      generate: (...args: Parameters<Middleman['generate']>) => {
        made++;
        return middleman.generate(...args);
      },
    } as Middleman;
    const llm = new LlmService(counting, h.database.db, h.repo, llmUsageLimits(h.hooks));
    const key = { runId, agentBranchNumber: 0 };
    await h.hooks.pause(key, 'user');
    const hangUp = new AbortController();
    const held = llm.generate({ ...key, signal: hangUp.signal }, { model: 'fake-model', prompt: 'a' }).catch((e) => e);
    await new Promise((resolve) => setTimeout(resolve, 300));
    hangUp.abort();
    await h.hooks.userUnpause(key);
    const outcome = await held;
    expect(outcome).toBeInstanceOf(LlmError);
    expect((outcome as LlmError).status).toBe(499);
    expect(made).toBe(0);
    expect((await h.hooks.usage(key)).tokens).toBe(0);
    expect((await h.repo.listTraceEntries(runId)).some((e) => e.kind === 'generation')).toBe(false);
  });

  it('checkpoint: pauses at the checkpoint until a person raises it and unpauses', async () => {
    const { runId, token } = await runWithLimits({ checkpoint: { actions: 2 } });
    expect((await hook(token, runId, 'action', { action: { i: 1 } })).statusCode).toBe(200);
    expect((await hook(token, runId, 'action', { action: { i: 2 } })).statusCode).toBe(200);
    const usage = (await hook(token, runId, 'usage')).json();
    expect(usage).toMatchObject({ actions: 2, isPaused: true, pausedReason: 'checkpoint', checkpoint: { actions: 2 } });
    // The third action waits on the pause.
    const third = hook(token, runId, 'action', { action: { i: 3 } });
    // Unpausing without raising the checkpoint is refused.
    expect((await asUser('POST', `/runs/${runId}/unpause`)).statusCode).toBe(409);
    const raised = await asUser('PATCH', `/runs/${runId}/usage-limits`, { checkpoint: { actions: 10 } });
    expect(raised.json().checkpoint).toEqual({ actions: 10 });
    expect((await asUser('POST', `/runs/${runId}/unpause`)).json()).toEqual({ paused: false, reason: null });
    expect((await third).statusCode).toBe(200);
    const pyhooks = await h.app.inject({
      method: 'GET',
      url: `/getRunUsageHooks?input=${encodeURIComponent(JSON.stringify({ runId, agentBranchNumber: 0 }))}`,
      headers: { 'x-agent-token': token },
    });
    expect(pyhooks.json().result.data).toMatchObject({
      usage: { actions: 3 },
      usageLimits: { tokens: 300_000, actions: 3000, total_seconds: 86_400, cost: 100 },
      checkpoint: { actions: 10, tokens: null },
      isPaused: false,
    });
  });

  it('PATCH refuses limits above the maxima and runs that ended', async () => {
    const { runId } = await h.newRun();
    expect((await asUser('PATCH', `/runs/${runId}/usage-limits`, { usageLimits: { tokens: 1e12 } })).statusCode).toBe(
      400,
    );
    await h.repo.updateRun(runId, { status: 'submitted' });
    expect((await asUser('PATCH', `/runs/${runId}/usage-limits`, { usageLimits: { tokens: 5 } })).statusCode).toBe(409);
  });
});
