/**
 * The full agent API on Terrarium's own routes (/hooks/runs/:runId/branches/:b/…): real Fastify, real PGlite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chargeGeneration } from '../../src/runs/hooks/usage-counters.js';
import { ACCESS_TOKEN, createHarness, type Harness } from './harness.js';

let h: Harness;

beforeAll(async () => {
  h = await createHarness({ pauseWaitMs: 3000 });
});

afterAll(async () => {
  await h?.close();
});

function hook(token: string | undefined, runId: number, route: string, body?: unknown, branch = 0) {
  return h.app.inject({
    method: body === undefined ? 'GET' : 'POST',
    url: `/hooks/runs/${runId}/branches/${branch}/${route}`,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...(body !== undefined && { payload: body as Record<string, unknown> }),
  });
}

function asUser(method: 'GET' | 'POST', url: string, body?: Record<string, unknown>) {
  return h.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${ACCESS_TOKEN}` },
    ...(body !== undefined && { payload: body }),
  });
}

describe('validation and scoping of every new route', () => {
  const invalid: Array<[string, Record<string, unknown>, RegExp]> = [
    ['frame-start', { name: 5 }, /name/],
    ['frame-end', { frameId: 'x' }, /frameId/],
    ['save-state', {}, /state/],
    ['error', { detail: 3 }, /detail/],
    ['error', { detail: 'boom', from: 'server' }, /from/],
    ['fatal-error', { from: 'agent' }, /detail/],
    ['pause', { reason: 'human-input' }, /reason/],
    ['unpause', { end: 'soon' }, /end/],
    ['input-requests', { defaultInput: 'x' }, /description/],
    ['rating-requests', { options: [] }, /options/],
    ['rating-requests', { options: [{ description: 'no action' }] }, /options\.0\.action/],
  ];

  it.each(invalid)('POST %s with %j answers 400 naming the field', async (route, body, field) => {
    const { runId, token } = await h.newRun();
    const response = await hook(token, runId, route, body);
    expect(response.statusCode, response.body).toBe(400);
    expect(response.json().error.message).toMatch(field);
  });

  const routes: Array<[string, Record<string, unknown> | undefined]> = [
    ['frame-start', { name: 'x' }],
    ['frame-end', {}],
    ['save-state', { state: { a: 1 } }],
    ['error', { detail: 'x' }],
    ['fatal-error', { detail: 'x' }],
    ['score', {}],
    ['score-log', undefined],
    ['pause', {}],
    ['unpause', {}],
    ['status', undefined],
    ['usage', undefined],
    ['input-requests', { description: 'x' }],
    ['input-requests/1', undefined],
    ['rating-requests', { options: [{ action: 'a' }] }],
    ['rating-requests/1', undefined],
  ];

  it.each(routes)("refuses %s on another run's branch with 403 and changes nothing", async (route, body) => {
    const a = await h.newRun();
    const b = await h.newRun();
    const before = await h.repo.listTraceEntries(b.runId);
    const response = await hook(a.token, b.runId, route, body);
    expect(response.statusCode, response.body).toBe(403);
    expect(response.json().error.message).toMatch(/another run/);
    expect(await h.repo.listTraceEntries(b.runId)).toEqual(before);
    expect((await h.repo.getBranch(b.runId, 0))?.isRunning).toBe(true);
  });

  it('refuses user tokens and missing tokens', async () => {
    const { runId } = await h.newRun();
    expect((await hook(undefined, runId, 'status')).statusCode).toBe(401);
    expect((await hook(ACCESS_TOKEN, runId, 'status')).statusCode).toBe(401);
  });
});

describe('frames, state and errors', () => {
  it('nests frames and records their ids', async () => {
    const { runId, token } = await h.newRun();
    const outer = (await hook(token, runId, 'frame-start', { name: 'outer' })).json();
    const inner = (await hook(token, runId, 'frame-start', { name: 'inner', timestamp: Date.now() })).json();
    expect(outer.frameId).toBe(outer.traceEntryId);
    // Ending a frame that is not the innermost is refused.
    const wrong = await hook(token, runId, 'frame-end', { frameId: outer.frameId });
    expect(wrong.statusCode).toBe(409);
    expect((await hook(token, runId, 'frame-end', {})).statusCode).toBe(200);
    expect((await hook(token, runId, 'frame-end', { frameId: outer.frameId })).statusCode).toBe(200);
    expect((await hook(token, runId, 'frame-end', {})).statusCode).toBe(409);
    const entries = await h.repo.listTraceEntries(runId);
    expect(entries.map((e) => [e.kind, e.content])).toEqual([
      ['frame-start', { name: 'outer', parentFrameId: null }],
      ['frame-start', { name: 'inner', parentFrameId: outer.frameId }],
      ['frame-end', { frameId: inner.frameId }],
      ['frame-end', { frameId: outer.frameId }],
    ]);
  });

  it('saves agent state for later branching', async () => {
    const { runId, token } = await h.newRun();
    const state = { messages: ['hi', { role: 'user' }], step: 3 };
    const response = await hook(token, runId, 'save-state', { state });
    expect(response.statusCode).toBe(200);
    const { stateId, traceEntryId } = response.json();
    const rows = await h.database.db.execute(`select state, trace_entry_id from agent_states where id = ${stateId}`);
    const row = (rows as unknown as { rows: Array<{ state: unknown; trace_entry_id: number }> }).rows[0]!;
    expect(row.state).toEqual(state);
    expect(Number(row.trace_entry_id)).toBe(traceEntryId);
    const entry = (await h.repo.listTraceEntries(runId)).find((e) => e.id === traceEntryId);
    expect(entry).toMatchObject({ kind: 'save-state', content: { stateId } });
  });

  it('records logError and the branch goes on', async () => {
    const { runId, token } = await h.newRun();
    const response = await hook(token, runId, 'error', { detail: 'tool failed', trace: 'tb', extra: { n: 1 } });
    expect(response.statusCode).toBe(200);
    expect((await hook(token, runId, 'log', { content: ['still here'] })).statusCode).toBe(200);
    const [error] = await h.repo.listTraceEntries(runId);
    expect(error).toMatchObject({
      kind: 'error',
      content: { from: 'agent', detail: 'tool failed', trace: 'tb', extra: { n: 1 }, fatal: false },
    });
  });

  it('logFatalError ends the branch as an agent error, tells the engine, and refuses later calls with 409', async () => {
    const { runId, token } = await h.newRun();
    const fatal = new Promise<{ from: string; detail: string }>((resolve) => h.events.onceFatal(runId, 0, resolve));
    const response = await hook(token, runId, 'fatal-error', { detail: 'cannot go on', trace: 'Traceback…' });
    expect(response.statusCode).toBe(200);
    expect(await fatal).toEqual({ from: 'agent', detail: 'cannot go on' });
    const branch = await h.repo.getBranch(runId, 0);
    expect(branch?.isRunning).toBe(false);
    expect(branch?.completedAt).toBeInstanceOf(Date);
    expect(await h.repo.getBranchFatalError(runId, 0)).toMatchObject({ from: 'agent', message: 'cannot go on' });
    const status = (await hook(token, runId, 'status')).json();
    expect(status).toMatchObject({ isRunning: false, fatalError: { from: 'agent', message: 'cannot go on' } });
    for (const [route, body] of [
      ['log', { content: ['late'] }],
      ['submit', { submission: 'x' }],
      ['pause', {}],
      ['fatal-error', { detail: 'again' }],
    ] as const) {
      const late = await hook(token, runId, route, body);
      expect(late.statusCode, route).toBe(409);
      expect(late.json().error.message).toMatch(/has ended with a fatal error/);
    }
  });
});

describe('pauses', () => {
  it('holds mutations while paused and lets them through on unpause', async () => {
    const { runId, token } = await h.newRun();
    expect((await hook(token, runId, 'pause', {})).json()).toEqual({ ok: true, paused: true, reason: 'pause-hook' });
    expect((await hook(token, runId, 'status')).json()).toMatchObject({ isPaused: true, pausedReason: 'pause-hook' });
    let settled = false;
    const pending = hook(token, runId, 'log', { content: ['while paused'] }).then((r) => {
      settled = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 400));
    expect(settled).toBe(false);
    expect((await h.repo.listTraceEntries(runId)).some((e) => e.kind === 'log')).toBe(false);
    expect((await hook(token, runId, 'unpause', {})).json()).toEqual({ ok: true, paused: false, reason: null });
    const response = await pending;
    expect(response.statusCode).toBe(200);
    expect((await h.repo.listTraceEntries(runId)).map((e) => e.kind)).toEqual(['pause', 'unpause', 'log']);
    const [pause] = await h.repo.listPauses(runId, 0);
    expect(pause?.end).toBeInstanceOf(Date);
    // Unpausing a branch that is not paused is harmless.
    expect((await hook(token, runId, 'unpause', {})).statusCode).toBe(200);
  });

  it('gives up waiting after the bound with 503, and pyhooks retry pauses do not hold calls', async () => {
    const { runId, token } = await h.newRun();
    await hook(token, runId, 'pause', {});
    const started = Date.now();
    const response = await hook(token, runId, 'action', { action: { type: 'x' } });
    expect(response.statusCode).toBe(503);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    expect(response.json().error).toMatchObject({ code: 'branch_paused', message: expect.stringMatching(/paused/) });
    expect(response.headers['retry-after']).toBe('1');
    await hook(token, runId, 'unpause', {});

    await hook(token, runId, 'pause', { reason: 'pyhooks-retry' });
    expect((await hook(token, runId, 'log', { content: ['retrying'] })).statusCode).toBe(200);
    // A pause-hook unpause cannot end a retry pause, only pyhooks' own unpause can.
    expect((await hook(token, runId, 'unpause', { reason: 'pause-hook' })).statusCode).toBe(409);
    expect((await hook(token, runId, 'unpause', { reason: 'pyhooks-retry' })).statusCode).toBe(200);
  }, 20_000);

  it('wakes a held mutation with 409 when the branch ends meanwhile', async () => {
    const { runId, token } = await h.newRun();
    await hook(token, runId, 'pause', {});
    const pending = hook(token, runId, 'log', { content: ['never'] });
    await new Promise((r) => setTimeout(r, 200));
    await h.repo.updateBranch(runId, 0, { isRunning: false });
    const response = await pending;
    expect(response.statusCode).toBe(409);
    expect(response.json().error.message).toMatch(/has ended/);
  });

  it('reports usage: actions, seconds without pauses, tokens charged by generations', async () => {
    const { runId, token } = await h.newRun();
    await h.repo.updateBranch(runId, 0, { startedAt: new Date(Date.now() - 100_000) });
    await h.repo.insertPause({ runId, agentBranchNumber: 0, start: new Date(Date.now() - 90_000), reason: 'legacy' });
    await h.repo.endOpenPause(runId, 0, new Date(Date.now() - 60_000));
    await hook(token, runId, 'action', { action: { a: 1 } });
    await hook(token, runId, 'action', { action: { a: 2 } });
    // What the LLM service charges after a generation (llm/service.ts).
    await chargeGeneration(
      h.database.db,
      { runId, agentBranchNumber: 0 },
      { inputTokens: 100, outputTokens: 20, cacheReadTokens: 0, cost: 0.5, generationMs: 10, retryWaitMs: 0 },
    );
    const usage = (await hook(token, runId, 'usage')).json();
    expect(usage).toMatchObject({
      actions: 2,
      tokens: 120,
      inputTokens: 100,
      outputTokens: 20,
      cost: 0.5,
      pausedSeconds: 30,
      isPaused: false,
      pausedReason: null,
    });
    expect(usage.totalSeconds).toBeGreaterThanOrEqual(69);
    expect(usage.totalSeconds).toBeLessThanOrEqual(72);
  });
});

describe('asking people', () => {
  it('requestInput pauses the branch until a person answers through the user API', async () => {
    const { runId, token } = await h.newRun({ metadata: { interactive: true } });
    const asked = (
      await hook(token, runId, 'input-requests', { description: 'Which file?', defaultInput: 'a.txt' })
    ).json();
    expect(asked.input).toBeNull();
    expect((await hook(token, runId, 'status')).json()).toMatchObject({ isPaused: true, pausedReason: 'human-input' });
    expect((await hook(token, runId, `input-requests/${asked.requestId}`)).json()).toEqual({
      answered: false,
      input: null,
    });
    // The agent cannot end a pause that waits for a person.
    expect((await hook(token, runId, 'unpause', {})).statusCode).toBe(409);
    const held = hook(token, runId, 'log', { content: ['after the answer'] });

    const listed = await asUser('GET', `/api/runs/${runId}/branches/0/human-requests`);
    expect(listed.json()).toMatchObject([{ id: asked.requestId, kind: 'input', answer: null }]);
    const bad = await asUser('POST', `/api/runs/${runId}/branches/0/input/${asked.requestId}`, { answer: 7 });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toMatch(/answer/);
    const agentAnswering = await h.app.inject({
      method: 'POST',
      url: `/api/runs/${runId}/branches/0/input/${asked.requestId}`,
      headers: { authorization: `Bearer ${token}` },
      payload: { answer: 'b.txt' },
    });
    expect(agentAnswering.statusCode).toBe(403);
    const answered = await asUser('POST', `/api/runs/${runId}/branches/0/input/${asked.requestId}`, {
      answer: 'b.txt',
    });
    expect(answered.statusCode, answered.body).toBe(200);
    expect(answered.json()).toMatchObject({ answer: { input: 'b.txt' }, answeredBy: 'static-user' });
    expect((await held).statusCode).toBe(200);
    expect((await hook(token, runId, `input-requests/${asked.requestId}`)).json()).toEqual({
      answered: true,
      input: 'b.txt',
    });
    expect((await hook(token, runId, 'status')).json()).toMatchObject({ isPaused: false });
    const again = await asUser('POST', `/api/runs/${runId}/branches/0/input/${asked.requestId}`, { answer: 'c' });
    expect(again.statusCode).toBe(409);
    expect((await h.repo.listTraceEntries(runId)).map((e) => e.kind)).toEqual([
      'input-request',
      'pause',
      'input-response',
      'unpause',
      'log',
    ]);
  });

  it('answers at once with the default on a non-interactive run', async () => {
    const { runId, token } = await h.newRun();
    const asked = (await hook(token, runId, 'input-requests', { description: 'Go on?', defaultInput: 'yes' })).json();
    expect(asked.input).toBe('yes');
    expect((await hook(token, runId, 'status')).json()).toMatchObject({ isPaused: false });
    expect((await hook(token, runId, `input-requests/${asked.requestId}`)).json()).toEqual({
      answered: true,
      input: 'yes',
    });
    expect((await hook(token, runId, 'input-requests/999999')).statusCode).toBe(404);
  });

  it('rateOptions: fixed ratings choose at once; otherwise a person rates', async () => {
    const { runId, token } = await h.newRun();
    const fixed = (
      await hook(token, runId, 'rating-requests', {
        options: [
          { action: 'ls', fixedRating: 0.2 },
          { action: 'cat x', fixedRating: 0.9 },
        ],
      })
    ).json();
    expect(fixed.chosen).toEqual({ action: 'cat x', fixedRating: 0.9, rating: 0.9 });

    const open = (
      await hook(token, runId, 'rating-requests', {
        options: [{ action: 'rm -rf /' }, { action: 'echo hi' }],
        description: 'next step',
      })
    ).json();
    expect(open.chosen).toBeNull();
    expect((await hook(token, runId, 'status')).json()).toMatchObject({ pausedReason: 'human-rating' });
    const tooFar = await asUser('POST', `/api/runs/${runId}/branches/0/ratings/${open.requestId}`, { choice: 5 });
    expect(tooFar.statusCode).toBe(400);
    expect(tooFar.json().error.message).toMatch(/choice/);
    const rated = await asUser('POST', `/api/runs/${runId}/branches/0/ratings/${open.requestId}`, {
      choice: 1,
      ratings: [-2, 1.5],
    });
    expect(rated.statusCode, rated.body).toBe(200);
    expect((await hook(token, runId, `rating-requests/${open.requestId}`)).json()).toEqual({
      answered: true,
      chosen: { action: 'echo hi', rating: 1.5 },
    });
    expect((await hook(token, runId, 'status')).json()).toMatchObject({ isPaused: false });
  });
});

describe('scoring without a sandbox', () => {
  it('refuses score with 409 when the run has no live sandbox, and serves an empty score log', async () => {
    const { runId, token } = await h.newRun();
    const response = await hook(token, runId, 'score', {});
    expect(response.statusCode).toBe(409);
    expect(response.json().error.message).toMatch(/no running sandbox/);
    expect((await hook(token, runId, 'score-log')).json()).toEqual([]);
  });
});
