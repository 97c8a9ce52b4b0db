import { isTerminalRunStatus } from '@terrarium/shared';
import type { Logger } from 'pino';
import type { Sandbox, SandboxBackend, SandboxInfo } from '../sandbox/types.js';
import { KEEP_RUNNING_LABEL, type RunEngine } from './engine.js';
import type { QueueStore } from './queue.js';

export const RUN_ID_LABEL = 'terrarium.run-id';
/** Which installation (database) a sandbox belongs to. */
export const INSTANCE_LABEL = 'terrarium.instance';
/** Which server process created a sandbox. */
export const RUNNER_LABEL = 'terrarium.runner';

export const RESTARTED_WHILE_RUNNING =
  'The server restarted while the agent ran; the run cannot be resumed, so its sandbox was removed.';
export const SANDBOX_VANISHED = 'The run’s sandbox disappeared (removed outside Terrarium, or the engine restarted).';
export const LOST_TRACK = 'The server lost track of this run (its work ended without a final state).';

export interface ReaperOptions {
  store: QueueStore;
  backend: SandboxBackend;
  engine: RunEngine;
  runnerId: string;
  instanceId: string;
  /** True when this process is the only one using the database (PGlite): every run and sandbox is its own. */
  exclusive?: boolean;
  log: Logger;
}

/**
 * Makes the database and the sandboxes agree after faults.
 *
 * - `recover()` (at start-up, before the queue runs): this runner's runs that were setting up go back to the queue;
 *   runs whose agent was running (or being scored) and whose sandbox survived are re-attached: the engine follows
 *   the agent, which runs detached in the sandbox, and finishes the run; runs whose sandbox vanished end in a clear
 *   error.
 * - `reap()` (at start-up and on a timer): a run this runner owns that is active in the database but not in the
 *   engine is ended; a sandbox of this installation whose run is terminal or unknown is removed, and so is a
 *   task-setup probe this runner left behind at start-up.
 */
export class Reaper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private busy = false;
  /** Runs seen active in the database but not in the engine by the last sweep. */
  private suspects = new Set<number>();

  constructor(private readonly options: ReaperOptions) {}

  /** Whose runs this reaper looks after: this runner's, or every run when the database is exclusive. */
  private get owner(): string | undefined {
    return this.options.exclusive ? undefined : this.options.runnerId;
  }

  private async sandboxesOf(runId?: number): Promise<SandboxInfo[]> {
    const labels: Record<string, string> = { [INSTANCE_LABEL]: this.options.instanceId };
    if (runId !== undefined) labels[RUN_ID_LABEL] = String(runId);
    return this.options.backend.list(labels);
  }

  /** Removes every sandbox of a run; returns how many there were alive (not stopped or missing). */
  async destroyRunSandboxes(runId: number): Promise<{ found: number; alive: number }> {
    const sandboxes = await this.sandboxesOf(runId);
    await Promise.all(sandboxes.map((info) => this.destroy(info)));
    return { found: sandboxes.length, alive: sandboxes.filter((s) => s.state === 'running').length };
  }

  /** The run's one running sandbox, when exactly one survived (more than one: something is wrong, start afresh). */
  private async survivingSandbox(runId: number): Promise<Sandbox | undefined> {
    const sandboxes = await this.sandboxesOf(runId);
    const running = sandboxes.filter((info) => info.state === 'running');
    if (running.length !== 1 || sandboxes.length !== 1) return undefined;
    return this.options.backend.get(running[0]!.id);
  }

  private async destroy(info: SandboxInfo): Promise<void> {
    const sandbox = await this.options.backend.get(info.id);
    await sandbox?.destroy();
  }

  async recover(): Promise<{ requeued: number[]; failed: number[]; reattached: number[] }> {
    const { store, log } = this.options;
    const requeued: number[] = [];
    const failed: number[] = [];
    const reattached: number[] = [];
    for (const run of await store.activeRuns(this.owner)) {
      if (this.options.engine.isActive(run.id)) continue;
      if (run.status !== 'setting-up') {
        // The agent runs detached in its sandbox: when the sandbox survived, the engine follows it again.
        const sandbox = await this.survivingSandbox(run.id);
        if (sandbox) {
          void this.options.engine.reattach(run.id, sandbox);
          reattached.push(run.id);
          log.info({ runId: run.id, sandbox: sandbox.name }, 'run re-attached to its surviving sandbox');
          continue;
        }
      }
      const { found, alive } = await this.destroyRunSandboxes(run.id);
      if (run.status === 'setting-up') {
        if (await store.requeue(run.id, 'setting-up')) {
          requeued.push(run.id);
          log.info({ runId: run.id }, 'run interrupted during setup: back in the queue');
        }
        continue;
      }
      const message = found > 0 && alive > 0 ? RESTARTED_WHILE_RUNNING : SANDBOX_VANISHED;
      if (await store.finish(run.id, 'error', run.status === 'scoring' ? 'score' : 'agent', message)) {
        failed.push(run.id);
        log.warn({ runId: run.id }, message);
      }
    }
    // Task-setup probes carry no run id: the ones this runner left behind are orphans now.
    const probes = await this.options.backend.list({
      [INSTANCE_LABEL]: this.options.instanceId,
      ...(this.options.exclusive ? {} : { [RUNNER_LABEL]: this.options.runnerId }),
      'terrarium.purpose': 'task-setup-data',
    });
    await Promise.all(probes.map((info) => this.destroy(info)));
    return { requeued, failed, reattached };
  }

  /** One sweep; returns the runs ended and the sandboxes removed. */
  reap(): Promise<{ endedRuns: number[]; removedSandboxes: string[] }> {
    const sweep = this.sweep();
    this.running = sweep.catch(() => undefined);
    return sweep;
  }

  private async sweep(): Promise<{ endedRuns: number[]; removedSandboxes: string[] }> {
    const { store, engine, log } = this.options;
    const endedRuns: number[] = [];
    const suspects = new Set<number>();
    for (const run of await store.activeRuns(this.owner)) {
      if (engine.isActive(run.id)) continue;
      // A run claimed a moment ago may not have reached the engine yet: only a second sighting ends it.
      if (!this.suspects.has(run.id)) {
        suspects.add(run.id);
        continue;
      }
      if (await store.finish(run.id, 'error', null, LOST_TRACK)) {
        endedRuns.push(run.id);
        await this.destroyRunSandboxes(run.id);
        log.warn({ runId: run.id }, LOST_TRACK);
      }
    }
    this.suspects = suspects;
    const removedSandboxes: string[] = [];
    const sandboxes = (await this.sandboxesOf()).filter((info) => info.labels[RUN_ID_LABEL] !== undefined);
    const ids = [...new Set(sandboxes.map((info) => Number(info.labels[RUN_ID_LABEL])))].filter(Number.isFinite);
    const statuses = await store.statuses(ids);
    for (const info of sandboxes) {
      const runId = Number(info.labels[RUN_ID_LABEL]);
      const status = statuses.get(runId);
      if (status !== undefined && !isTerminalRunStatus(status)) continue;
      // Kept on purpose after its run ended: a task environment now, removed by `terrarium task destroy`.
      if (status !== undefined && info.labels[KEEP_RUNNING_LABEL] === 'true') continue;
      // A run that ends removes its own sandbox; wait until the engine is done with it.
      if (engine.isActive(runId)) continue;
      await this.destroy(info).catch((error: unknown) =>
        log.warn({ err: error, sandbox: info.name }, 'could not remove an orphaned sandbox'),
      );
      removedSandboxes.push(info.name);
      log.info({ runId, sandbox: info.name, status: status ?? 'unknown' }, 'removed an orphaned sandbox');
    }
    return { endedRuns, removedSandboxes };
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      this.reap()
        .catch((error: unknown) => this.options.log.error({ err: error }, 'reaper sweep failed'))
        .finally(() => {
          this.busy = false;
        });
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
