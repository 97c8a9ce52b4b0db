/**
 * A person's pause can last longer than any one HTTP call: the server holds an agent's call for a while, then answers
 * 503 branch_paused, and the agent's client sends it again until the pause ends. Nothing is recorded twice: a held
 * call whose agent hung up is dropped. Real Fastify on a real port, real PGlite, a real python3 agent.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAUSE_HOLD_MS } from '../../src/runs/hooks-service.js';
import { createHarness, type Harness } from './harness.js';
import { PYTHON_DIR, runPythonAgent } from './python-agent.js';

const HOLD_MS = 200;
let h: Harness;
let apiUrl: string;
let scratch: string;

beforeAll(async () => {
  h = await createHarness({ pauseWaitMs: HOLD_MS });
  apiUrl = await h.listen();
  scratch = await mkdtemp(path.join(tmpdir(), 'pause-hold-test-'));
});

afterAll(async () => {
  await h?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const logs = async (runId: number) =>
  (await h.repo.listTraceEntries(runId)).filter((e) => e.kind === 'log').map((e) => JSON.stringify(e.content));

describe('a hook call held while a person pauses the branch', () => {
  it('is dropped, not recorded, when the agent hangs up while it is held', async () => {
    // A hold long enough to hang up during it.
    const slow = await createHarness({ pauseWaitMs: 30_000 });
    const slowUrl = await slow.listen();
    try {
      const { runId, token } = await slow.newRun();
      await slow.hooks.pause({ runId, agentBranchNumber: 0 }, 'user');
      const body = JSON.stringify({ content: ['sent once, abandoned'] });
      const call = request(`${slowUrl}/hooks/runs/${runId}/branches/0/log`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      });
      call.on('error', () => {});
      call.end(body);
      await new Promise((resolve) => setTimeout(resolve, 500));
      call.destroy(); // the agent's client gives up
      await new Promise((resolve) => setTimeout(resolve, 200));
      await slow.hooks.userUnpause({ runId, agentBranchNumber: 0 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const entries = await slow.repo.listTraceEntries(runId);
      expect(entries.map((e) => e.kind)).toEqual(['pause', 'unpause']);
    } finally {
      await slow.close();
    }
  });

  it('keeps a terrarium_hooks agent waiting for as long as the pause lasts, then records its call once', async () => {
    const { runId, token } = await h.newRun();
    await h.hooks.pause({ runId, agentBranchNumber: 0 }, 'user');
    const agent = runPythonAgent({
      source: `
from terrarium_hooks import Hooks
hooks = Hooks()
hooks.log("made while paused")
hooks.submit("100")
`,
      scratch,
      apiUrl,
      runId,
      token,
    });
    // Many holds in a row, more than terrarium_hooks' retries for a failing server (Hooks.RETRIES = 5).
    await new Promise((resolve) => setTimeout(resolve, 8 * (HOLD_MS + 1000)));
    expect(await logs(runId)).toEqual([]);
    await h.hooks.userUnpause({ runId, agentBranchNumber: 0 });
    const result = await agent;
    expect(result.code, result.stderr).toBe(0);
    expect(await logs(runId)).toEqual([JSON.stringify({ content: ['made while paused'] })]);
    expect(result.stderr).toContain('terrarium_hooks: the run is paused; log waits until it is unpaused');
    expect((await h.repo.getBranch(runId, 0))?.submission).toBe('100');
  }, 60_000);

  it('gives the agent a read timeout longer than the server holds a call', () => {
    const timeoutSeconds = Number(
      execFileSync('python3', ['-c', 'from terrarium_hooks import Hooks; print(Hooks.TIMEOUT_SECONDS)'], {
        env: { ...process.env, PYTHONPATH: PYTHON_DIR },
      })
        .toString()
        .trim(),
    );
    expect(timeoutSeconds * 1000).toBeGreaterThan(PAUSE_HOLD_MS);
  });
});
