import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { taskNameProblem } from '@terrarium/shared';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ConflictError, NotFoundError } from '../../runs/errors.js';
import { INSTANCE_LABEL } from '../../runs/reaper.js';
import type { ExecResult, Sandbox, SandboxBackend } from '../../sandbox/types.js';
import { parseTaskhelperOutput, RESULT_SEPARATOR, TaskDriver, TaskOperationError, tailOf } from '../driver.js';
import { listFamilyFiles, loadTaskFamily, type TaskFamily, TaskFamilyLoadError } from '../family.js';
import { readTaskSecrets, resolveRequiredEnv, TASK_IMAGE_PATHS } from '../image.js';
import { buildTaskImage, networkForPermissions, readTaskSetupData, resourcesForTask } from '../setup.js';
import { PYTEST_PLUGIN_MODULE, PYTEST_PLUGIN_SOURCE, parsePytestSummary } from './pytest-plugin.js';
import {
  DuplicateTaskEnvironmentError,
  type TaskEnvironmentRecord,
  type TaskEnvironmentRepository,
  type TaskEnvironmentState,
} from './repository.js';
import { ensureSshd, hasSshKeys, installSshKeys, type SshUser, sshHostKeys, sshPublicKeyProblem } from './ssh.js';

/** A request the API refuses with 400: the message says what is wrong and what is expected. */
export class InvalidTaskEnvironmentRequestError extends Error {
  override name = 'InvalidTaskEnvironmentRequestError';
}

/** Label on every task environment's sandbox: the environment's name. */
export const TASK_ENVIRONMENT_LABEL = 'terrarium.task-environment';

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const EnvironmentName = z
  .string()
  .regex(NAME_PATTERN, 'letters, digits, "_", "." and "-", starting with a letter or digit, at most 63 characters');

export const StartTaskEnvironmentRequest = z.object({
  taskFamilyDir: z.string().min(1).describe("absolute path of the task family directory on the server's machine"),
  taskName: z.string().min(1).optional().describe('task of the family (default: the first one get_tasks lists)'),
  name: EnvironmentName.optional().describe('name of the environment (default: <family>-<task>-<random>)'),
});
export type StartTaskEnvironmentRequest = z.infer<typeof StartTaskEnvironmentRequest>;

export const ScoreRequest = z.object({ submission: z.string().max(5_000_000) });
export const ExecRequest = z.object({
  command: z.array(z.string()).min(1).describe('argument vector, e.g. ["bash", "-lc", "ls -la"]'),
  user: z.enum(['root', 'agent']).default('root'),
  workdir: z.string().min(1).optional(),
  stdin: z.string().max(10_000_000).optional(),
  timeoutSeconds: z.number().positive().max(86_400).default(600),
});
export type ExecRequest = z.input<typeof ExecRequest>;
export const TestRequest = z.object({
  testFile: z
    .string()
    .min(1)
    .optional()
    .describe('test file relative to the family directory (default: every test_*.py / *_test.py in it)'),
  testName: z.string().min(1).optional().describe('run only tests matching this pytest -k expression'),
  timeoutSeconds: z.number().positive().max(86_400).default(1800),
});
export type TestRequest = z.input<typeof TestRequest>;
export const GrantSshRequest = z.object({
  publicKey: z.string().min(1).max(16_384).describe('an OpenSSH public key line ("ssh-ed25519 AAAA… you@host")'),
  user: z.enum(['agent', 'root']).default('agent'),
});

export const TaskEnvironmentStateSchema = z.enum(['building', 'starting', 'running', 'stopped', 'error', 'destroyed']);
export const ProgressLine = z.object({ seq: z.number().int(), at: z.string(), message: z.string() });
export type ProgressLine = z.infer<typeof ProgressLine>;

export const TaskEnvironmentView = z.object({
  name: z.string(),
  state: TaskEnvironmentStateSchema,
  taskId: z.string(),
  taskFamilyName: z.string(),
  taskName: z.string(),
  taskFamilyDir: z.string().nullable(),
  imageName: z.string().nullable(),
  backend: z.string(),
  sandboxName: z.string().nullable(),
  /** Where `ssh` reaches the sandbox (its address on its network); null when it is not running. */
  ipAddress: z.string().nullable(),
  owner: z.string(),
  createdAt: z.string(),
  destroyedAt: z.string().nullable(),
  errorMessage: z.string().nullable(),
  /** What setting up the environment printed so far (image build, TaskFamily.start), oldest first. */
  progress: z.array(ProgressLine),
});
export type TaskEnvironmentView = z.infer<typeof TaskEnvironmentView>;

export const ScoreView = z.object({
  /** null: the task returned None (or has no score method), so a person scores the submission. */
  score: z.number().nullable(),
  manual: z.boolean(),
  stdoutTail: z.string(),
});
export type ScoreView = z.infer<typeof ScoreView>;

export const ExecView = z.object({
  exitCode: z.number().int().nullable(),
  stdout: z.string(),
  stderr: z.string(),
  timedOut: z.boolean(),
  durationMs: z.number(),
});
export type ExecView = z.infer<typeof ExecView>;

export const TestView = ExecView.extend({
  testFiles: z.array(z.string()),
  passed: z.number().int(),
  failed: z.number().int(),
  skipped: z.number().int(),
  errors: z.number().int(),
});
export type TestView = z.infer<typeof TestView>;

export const SshAccessView = z.object({
  user: z.enum(['agent', 'root']),
  host: z.string(),
  port: z.number().int(),
  /** "<type> <base64>" lines: a client that pins them (as the CLI does) needs no trust-on-first-use. */
  hostKeys: z.array(z.string()),
  sandboxName: z.string(),
});
export type SshAccessView = z.infer<typeof SshAccessView>;

export interface TaskEnvironmentServiceOptions {
  repo: TaskEnvironmentRepository;
  backend: SandboxBackend;
  log: Logger;
  baseImage: () => Promise<string>;
  pythonDir: string;
  /** Labels every sandbox carries (installation and runner), as for runs. */
  sandboxLabels?: Record<string, string>;
  defaults: { cpus?: number | undefined; memoryGb?: number | undefined; storageGb?: number | undefined };
  taskOperationTimeoutMs?: number | undefined;
  /** SSH_PUBLIC_KEYS_WITH_ACCESS_TO_ALL_AGENT_CONTAINERS: installed for the agent user in every environment. */
  sshPublicKeysForAll?: readonly string[];
}

const MAX_PROGRESS_LINES = 400;
/** A killed environment's TaskFamily.teardown gets at most this long (teardown must not hang destroy). */
const TEARDOWN_TIMEOUT_MS = 5 * 60_000;

/**
 * Task environments for task authors: a task's sandbox, set up as for a run (image, TaskFamily.start), with no agent.
 * Authors exec in it, ssh into it, score submissions and run the family's tests, then destroy it.
 */
export class TaskEnvironmentService {
  private readonly progress = new Map<string, ProgressLine[]>();
  private readonly setups = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private readonly requiredEnv = new Map<string, Record<string, string>>();
  /** Serialises operations on one environment (stop during a score would pull the sandbox from under it). */
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Set by abandon(): work in progress stops without recording anything, as if the process had died. */
  private abandoned = false;

  constructor(private readonly options: TaskEnvironmentServiceOptions) {}

  /**
   * Takes over a running sandbox made elsewhere (the sandbox of a run created with keepTaskEnvironmentRunning), so it
   * is listed and managed like any environment: exec, ssh, score, test, stop, destroy.
   */
  async adopt(input: {
    name: string;
    sandbox: Sandbox;
    taskFamilyName: string;
    taskName: string;
    taskFamilyDir: string;
    userId: string;
  }): Promise<TaskEnvironmentView> {
    const { sandbox, ...row } = input;
    await this.options.repo.insert({ ...row, backend: sandbox.backend });
    await this.options.repo.update(input.name, {
      state: 'running',
      sandboxId: sandbox.id,
      sandboxName: sandbox.name,
      isRunning: true,
    });
    return this.get(input.name);
  }

  /** Creates the environment and sets it up in the background; poll get() for its state and progress. */
  async start(request: StartTaskEnvironmentRequest, userId: string): Promise<TaskEnvironmentView> {
    if (!path.isAbsolute(request.taskFamilyDir)) {
      throw new InvalidTaskEnvironmentRequestError(
        `taskFamilyDir must be an absolute path on the server's machine, got ${JSON.stringify(request.taskFamilyDir)}.`,
      );
    }
    if (request.taskName !== undefined) {
      const problem = taskNameProblem(request.taskName);
      if (problem) throw new InvalidTaskEnvironmentRequestError(`Invalid taskName: ${problem}.`);
    }
    let family: TaskFamily;
    try {
      family = await loadTaskFamily(request.taskFamilyDir);
    } catch (error) {
      if (error instanceof TaskFamilyLoadError) throw new InvalidTaskEnvironmentRequestError(error.message);
      throw error;
    }
    const name = request.name ?? defaultName(family.name, request.taskName);
    let row: TaskEnvironmentRecord;
    try {
      row = await this.options.repo.insert({
        name,
        backend: this.options.backend.name,
        taskFamilyName: family.name,
        taskName: request.taskName ?? '',
        taskFamilyDir: family.dir,
        userId,
      });
    } catch (error) {
      if (error instanceof DuplicateTaskEnvironmentError) {
        throw new ConflictError(`${error.message} Pick another name, or destroy it: terrarium task destroy ${name}`);
      }
      throw error;
    }
    const controller = new AbortController();
    const done = this.setUp(row, family, controller.signal)
      .catch((error: unknown) =>
        this.options.log.error({ err: error, environment: name }, 'task environment setup failed'),
      )
      .finally(() => this.setups.delete(name));
    this.setups.set(name, { controller, done });
    return this.view(row);
  }

  private note(name: string, message: string): void {
    const lines = this.progress.get(name) ?? [];
    let seq = lines.at(-1)?.seq ?? 0;
    for (const line of message.split('\n')) {
      // The taskhelper's result block (e.g. in the image build's output of TaskFamily.install) is not for people.
      if (line.trim() === '' || line.includes(RESULT_SEPARATOR) || /^(\S+: )?\{"ok": (true|false)/.test(line)) continue;
      seq += 1;
      lines.push({ seq, at: new Date().toISOString(), message: line });
    }
    if (lines.length > MAX_PROGRESS_LINES) lines.splice(0, lines.length - MAX_PROGRESS_LINES);
    this.progress.set(name, lines);
  }

  /** Notes what task code prints, without the taskhelper's result block (its separator line and the JSON after it). */
  private taskOutputNoter(name: string): (chunk: Buffer) => void {
    let skipNext = false;
    let partial = '';
    return (chunk) => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (skipNext) {
          skipNext = false;
          continue;
        }
        if (line.startsWith(RESULT_SEPARATOR)) {
          skipNext = true;
          continue;
        }
        this.note(name, line);
      }
    };
  }

  private async setUp(row: TaskEnvironmentRecord, family: TaskFamily, signal: AbortSignal): Promise<void> {
    const { repo, backend } = this.options;
    const name = row.containerName;
    let sandbox: Sandbox | undefined;
    try {
      this.note(name, `Building the task image for ${family.name} (${family.contentHash.slice(0, 12)})`);
      const secrets = await readTaskSecrets(family.dir);
      const { image, cached } = await buildTaskImage({
        backend,
        family,
        baseImage: await this.options.baseImage(),
        buildSecrets: secrets,
        pythonDir: this.options.pythonDir,
        timeoutMs: this.options.taskOperationTimeoutMs,
        onProgress: (event) => this.note(name, `${event.phase}: ${event.message}`),
      });
      this.note(name, cached ? `Image ${image} (cached)` : `Built image ${image}`);
      await repo.update(name, { imageName: image });
      signal.throwIfAborted();
      const setupData = await readTaskSetupData({
        backend,
        image,
        family,
        taskName: row.taskName,
        labels: this.options.sandboxLabels,
        timeoutMs: this.options.taskOperationTimeoutMs,
      });
      const taskName = setupData.taskName;
      if (taskName !== row.taskName) await repo.update(name, { taskName });
      this.note(name, `Task ${family.name}/${taskName}, permissions: [${setupData.permissions.join(', ') || 'none'}]`);
      const env = resolveRequiredEnv(setupData.requiredEnvironmentVariables, [
        { name: `secrets.env beside ${family.dir}`, values: secrets },
        { name: "the server's environment", values: process.env },
      ]);
      this.requiredEnv.set(name, env);
      signal.throwIfAborted();
      await repo.update(name, { state: 'starting' });
      sandbox = await backend.create({
        image,
        name: `env-${name}`,
        network: networkForPermissions(setupData.permissions),
        resources: resourcesForTask(family, taskName, this.options.defaults),
        labels: {
          ...this.options.sandboxLabels,
          [TASK_ENVIRONMENT_LABEL]: name,
          'terrarium.task-id': `${family.name}/${taskName}`,
        },
      });
      await repo.update(name, { sandboxId: sandbox.id, sandboxName: sandbox.name, isRunning: true });
      this.note(name, `Started ${sandbox.backend} sandbox ${sandbox.name}`);
      signal.throwIfAborted();
      this.note(name, 'Running TaskFamily.start');
      const decoder = this.taskOutputNoter(name);
      await this.driver(sandbox, family.name, taskName, env).start({ signal, onStdout: decoder, onStderr: decoder });
      await installSshKeys(sandbox, this.options.sshPublicKeysForAll ?? []);
      await repo.update(name, { state: 'running' });
      this.note(name, `Ready: terrarium task exec ${name} -- <command>`);
    } catch (error) {
      if (this.abandoned) return; // the next server's recover() cleans up
      if (signal.aborted) {
        // destroy() asked for it: nothing of the environment may stay behind.
        if (sandbox) await sandbox.destroy().catch(() => undefined);
        await repo.update(name, { state: 'destroyed', isRunning: false, destroyedAt: new Date() });
        this.note(name, 'Destroyed before it was ready.');
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      // A sandbox whose TaskFamily.start failed is kept: the author can look inside, then destroy it.
      const kept = sandbox
        ? ` The sandbox is kept so you can inspect it (terrarium task exec ${name} -- bash -lc '…'); remove it with terrarium task destroy ${name}.`
        : '';
      await repo.update(name, { state: 'error', errorMessage: `${message}${kept}` });
      this.note(name, `Failed: ${message}`);
    }
  }

  private driver(sandbox: Sandbox, familyName: string, taskName: string, env: Record<string, string>): TaskDriver {
    return new TaskDriver({ sandbox, familyName, taskName, env, timeoutMs: this.options.taskOperationTimeoutMs });
  }

  /** The task's required environment variables, looked up again after a server restart. */
  private async envFor(row: TaskEnvironmentRecord, sandbox: Sandbox): Promise<Record<string, string>> {
    const cached = this.requiredEnv.get(row.containerName);
    if (cached) return cached;
    const data = await this.driver(sandbox, row.taskFamilyName, row.taskName, {}).getSetupData();
    const secrets = row.taskFamilyDir ? await readTaskSecrets(row.taskFamilyDir) : {};
    const env = resolveRequiredEnv(data.requiredEnvironmentVariables, [
      { name: 'secrets.env beside the family directory', values: secrets },
      { name: "the server's environment", values: process.env },
    ]);
    this.requiredEnv.set(row.containerName, env);
    return env;
  }

  private async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(fn);
    this.locks.set(name, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(name) === next) this.locks.delete(name);
    }
  }

  private async row(name: string, userId?: string): Promise<TaskEnvironmentRecord> {
    const row = await this.options.repo.get(name);
    if (!row)
      throw new NotFoundError(`No task environment named ${JSON.stringify(name)}. List them: terrarium task list`);
    if (userId !== undefined && row.userId !== userId) {
      throw new NotFoundError(`No task environment named ${JSON.stringify(name)} of yours.`);
    }
    return row;
  }

  /** The environment's sandbox, which must exist and (unless `allowStopped`) run. */
  private async sandboxOf(row: TaskEnvironmentRecord, options: { allowStopped?: boolean } = {}): Promise<Sandbox> {
    const name = row.containerName;
    if (row.state === 'destroyed') throw new ConflictError(`Task environment ${name} was destroyed.`);
    if (row.state === 'building' || row.state === 'starting') {
      throw new ConflictError(
        `Task environment ${name} is still being set up (${row.state}); wait until it is running.`,
      );
    }
    const sandbox = row.sandboxId ? await this.options.backend.get(row.sandboxId) : undefined;
    if (!sandbox) {
      if (row.state !== 'error') {
        await this.options.repo.update(name, {
          state: 'error',
          isRunning: false,
          errorMessage: 'Its sandbox no longer exists (removed outside Terrarium?).',
        });
      }
      throw new ConflictError(
        `Task environment ${name} has no sandbox (${row.errorMessage ?? 'it no longer exists'}). Destroy it and start a new one.`,
      );
    }
    if (!options.allowStopped) {
      const info = await sandbox.inspect();
      if (info.state !== 'running') {
        throw new ConflictError(`Task environment ${name} is stopped. Start it first: terrarium task start ${name}`);
      }
    }
    return sandbox;
  }

  async get(name: string, userId?: string): Promise<TaskEnvironmentView> {
    return this.view(await this.row(name, userId), { inspect: true });
  }

  async list(options: { includeDestroyed?: boolean } = {}): Promise<TaskEnvironmentView[]> {
    const rows = await this.options.repo.list(options);
    return Promise.all(rows.map((row) => this.view(row, { progress: false })));
  }

  private async view(
    row: TaskEnvironmentRecord,
    options: { inspect?: boolean; progress?: boolean } = {},
  ): Promise<TaskEnvironmentView> {
    let ipAddress: string | null = null;
    if (options.inspect && row.sandboxId && (row.state === 'running' || row.state === 'error')) {
      const sandbox = await this.options.backend.get(row.sandboxId).catch(() => undefined);
      const info = await sandbox?.inspect().catch(() => undefined);
      if (info?.state === 'running') ipAddress = info.ipAddress ?? null;
    }
    return {
      name: row.containerName,
      state: row.state,
      taskId: `${row.taskFamilyName}/${row.taskName}`,
      taskFamilyName: row.taskFamilyName,
      taskName: row.taskName,
      taskFamilyDir: row.taskFamilyDir,
      imageName: row.imageName,
      backend: row.backend,
      sandboxName: row.sandboxName,
      ipAddress,
      owner: row.userId,
      createdAt: row.createdAt.toISOString(),
      destroyedAt: row.destroyedAt?.toISOString() ?? null,
      errorMessage: row.errorMessage,
      progress: options.progress === false ? [] : (this.progress.get(row.containerName) ?? []),
    };
  }

  async stop(name: string, userId?: string): Promise<TaskEnvironmentView> {
    return this.withLock(name, async () => {
      const row = await this.row(name, userId);
      const sandbox = await this.sandboxOf(row, { allowStopped: true });
      await sandbox.stop();
      await this.options.repo.update(name, { state: row.state === 'error' ? 'error' : 'stopped', isRunning: false });
      return this.get(name);
    });
  }

  /** Starts a stopped environment again (TaskFamily.start is not run again: the environment keeps its state). */
  async resume(name: string, userId?: string): Promise<TaskEnvironmentView> {
    return this.withLock(name, async () => {
      const row = await this.row(name, userId);
      const sandbox = await this.sandboxOf(row, { allowStopped: true });
      await sandbox.start();
      // sshd is not the sandbox's main process: start it again when someone has access.
      if (await hasSshKeys(sandbox)) await ensureSshd(sandbox);
      await this.options.repo.update(name, { state: row.state === 'error' ? 'error' : 'running', isRunning: true });
      return this.get(name);
    });
  }

  async restart(name: string, userId?: string): Promise<TaskEnvironmentView> {
    await this.stop(name, userId);
    return this.resume(name, userId);
  }

  /**
   * Runs TaskFamily.teardown (when the sandbox is there), then removes the sandbox. An environment still being set up
   * is cancelled. A teardown failure is reported in errorMessage; the sandbox is removed anyway.
   */
  async destroy(name: string, userId?: string): Promise<TaskEnvironmentView> {
    const row = await this.row(name, userId);
    if (row.state === 'destroyed') return this.view(row);
    const setup = this.setups.get(name);
    if (setup) {
      setup.controller.abort();
      await setup.done;
      const after = await this.row(name);
      if (after.state === 'destroyed') return this.view(after);
    }
    return this.withLock(name, async () => {
      const current = await this.row(name);
      const sandbox = current.sandboxId ? await this.options.backend.get(current.sandboxId) : undefined;
      let teardownError: string | null = null;
      if (sandbox) {
        try {
          if ((await sandbox.inspect()).state !== 'running') await sandbox.start();
          const env = await this.envFor(current, sandbox);
          this.note(name, 'Running TaskFamily.teardown');
          const output = this.taskOutputNoter(name);
          await this.driver(sandbox, current.taskFamilyName, current.taskName, env).teardown({
            timeoutMs: Math.min(this.options.taskOperationTimeoutMs ?? TEARDOWN_TIMEOUT_MS, TEARDOWN_TIMEOUT_MS),
            onStdout: output,
            onStderr: output,
          });
          this.note(name, 'TaskFamily.teardown finished');
        } catch (error) {
          teardownError = `TaskFamily.teardown failed (the sandbox was removed anyway): ${error instanceof Error ? error.message : String(error)}`;
        }
        await sandbox.destroy();
      }
      await this.options.repo.update(name, {
        state: 'destroyed',
        isRunning: false,
        destroyedAt: new Date(),
        ...(teardownError && { errorMessage: teardownError }),
      });
      this.requiredEnv.delete(name);
      return this.view(await this.row(name));
    });
  }

  /** TaskFamily.score(t, submission): a number, or null when a person must score it. */
  async score(name: string, submission: string, userId?: string): Promise<ScoreView> {
    return this.withLock(name, async () => {
      const row = await this.row(name, userId);
      const sandbox = await this.sandboxOf(row);
      const env = await this.envFor(row, sandbox);
      let output = '';
      const result = await this.driver(sandbox, row.taskFamilyName, row.taskName, env).score(submission, {
        onStdout: (chunk) => {
          output += chunk.toString('utf8');
        },
      });
      const stdoutTail = tailOf(parseTaskhelperOutput(output).taskOutput, 4000);
      return result.kind === 'score'
        ? { score: result.value, manual: false, stdoutTail }
        : { score: null, manual: true, stdoutTail };
    });
  }

  async exec(name: string, request: z.output<typeof ExecRequest>, userId?: string): Promise<ExecView> {
    const row = await this.row(name, userId);
    const sandbox = await this.sandboxOf(row);
    const result = await sandbox.exec({
      cmd: request.command,
      user: request.user,
      workdir: request.workdir ?? (request.user === 'agent' ? TASK_IMAGE_PATHS.agentHome : TASK_IMAGE_PATHS.familyDir),
      ...(request.stdin !== undefined && { stdin: request.stdin }),
      timeoutMs: Math.round(request.timeoutSeconds * 1000),
      maxOutputBytes: 4 * 1024 * 1024,
    });
    return execView(result);
  }

  /**
   * Runs the family's pytest-style tests inside the environment, as root in the family directory, with the task's
   * required environment variables. Test files are copied from the family directory on the host first, so edits to
   * tests apply without rebuilding; edits to the family's code need a new environment (the image holds it).
   */
  async test(name: string, request: z.output<typeof TestRequest>, userId?: string): Promise<TestView> {
    return this.withLock(name, async () => {
      const row = await this.row(name, userId);
      const sandbox = await this.sandboxOf(row);
      if (!row.taskFamilyDir) throw new ConflictError(`Task environment ${name} does not know its family directory.`);
      const testFiles = await this.testFiles(row.taskFamilyDir, row.taskFamilyName, request.testFile);
      for (const file of testFiles) {
        const content = await readFile(path.join(row.taskFamilyDir, file));
        await sandbox.writeFile(path.posix.join(TASK_IMAGE_PATHS.familyDir, file), content, {
          owner: 'root:root',
          mode: 0o644,
        });
      }
      const pluginDir = '/opt/terrarium/pytest';
      await sandbox.writeFile(`${pluginDir}/${PYTEST_PLUGIN_MODULE}.py`, PYTEST_PLUGIN_SOURCE, { mode: 0o644 });
      const env = await this.envFor(row, sandbox);
      const result = await sandbox.exec({
        cmd: [
          'python3',
          '-m',
          'pytest',
          '-p',
          PYTEST_PLUGIN_MODULE,
          '-p',
          'no:cacheprovider',
          '-rA',
          '--color=no',
          `--task-family-name=${row.taskFamilyName}`,
          `--task-name=${row.taskName}`,
          ...(request.testName ? ['-k', request.testName] : []),
          ...testFiles,
        ],
        user: 'root',
        workdir: TASK_IMAGE_PATHS.familyDir,
        env: {
          ...env,
          PYTHONPATH: `${TASK_IMAGE_PATHS.familyDir}:${pluginDir}`,
          PYTHONDONTWRITEBYTECODE: '1',
        },
        timeoutMs: Math.round(request.timeoutSeconds * 1000),
        maxOutputBytes: 4 * 1024 * 1024,
      });
      if (/No module named pytest/.test(result.stderr)) {
        throw new ConflictError(
          'pytest is not installed in the task image. Terrarium’s base image has it; with another base image, install ' +
            'it in TaskFamily.install (e.g. `pip install pytest`).',
        );
      }
      return { ...execView(result), testFiles, ...parsePytestSummary(result.stdout) };
    });
  }

  private async testFiles(familyDir: string, familyName: string, requested: string | undefined): Promise<string[]> {
    const files = await listFamilyFiles(familyDir);
    if (requested !== undefined) {
      const normalized = path.posix.normalize(requested.replaceAll('\\', '/'));
      if (normalized.startsWith('..') || path.posix.isAbsolute(normalized)) {
        throw new InvalidTaskEnvironmentRequestError(
          `testFile must be a path inside the family directory, relative to it; got ${JSON.stringify(requested)}.`,
        );
      }
      if (!files.includes(normalized)) {
        throw new InvalidTaskEnvironmentRequestError(
          `No test file ${normalized} in ${familyDir}. Test files there: ${files.filter(isTestFile).join(', ') || '(none)'}.`,
        );
      }
      return [normalized];
    }
    const found = files.filter(isTestFile);
    if (found.length === 0) {
      throw new InvalidTaskEnvironmentRequestError(
        `The family ${familyName} has no tests: add ${familyName}_test.py (pytest; fixtures task_family, task_name, task) to ${familyDir}.`,
      );
    }
    return found;
  }

  /** Gives `publicKey` SSH access to the environment as `user`, and says where to connect. */
  async grantSsh(name: string, request: { publicKey: string; user: SshUser }, userId?: string): Promise<SshAccessView> {
    const problem = sshPublicKeyProblem(request.publicKey);
    if (problem) throw new InvalidTaskEnvironmentRequestError(`publicKey: ${problem}.`);
    return this.withLock(name, async () => {
      const row = await this.row(name, userId);
      const sandbox = await this.sandboxOf(row);
      await installSshKeys(sandbox, [request.publicKey], { user: request.user });
      return this.sshAccess(row, sandbox, request.user);
    });
  }

  /** Where to connect with ssh, and the host keys to expect. */
  async sshInfo(name: string, user: SshUser, userId?: string): Promise<SshAccessView> {
    const row = await this.row(name, userId);
    const sandbox = await this.sandboxOf(row);
    return this.sshAccess(row, sandbox, user);
  }

  private async sshAccess(row: TaskEnvironmentRecord, sandbox: Sandbox, user: SshUser): Promise<SshAccessView> {
    const info = await sandbox.inspect();
    if (!info.ipAddress) {
      throw new ConflictError(
        `Task environment ${row.containerName} has no network address (its task asks for no network), so ssh cannot reach it; use terrarium task exec.`,
      );
    }
    return { user, host: info.ipAddress, port: 22, hostKeys: await sshHostKeys(sandbox), sandboxName: sandbox.name };
  }

  /**
   * After a restart: environments a previous process left half set up end in `error` and lose their sandbox (their
   * setup cannot be resumed); running ones whose sandbox vanished are marked so.
   */
  async recover(): Promise<{ failed: string[] }> {
    const failed: string[] = [];
    const instance = this.options.sandboxLabels?.[INSTANCE_LABEL];
    for (const row of await this.options.repo.interrupted()) {
      if (this.setups.has(row.containerName)) continue;
      // By label, not by the recorded id: the process may have died between creating the sandbox and recording it.
      const leftovers = await this.options.backend.list({
        [TASK_ENVIRONMENT_LABEL]: row.containerName,
        ...(instance !== undefined && { [INSTANCE_LABEL]: instance }),
      });
      for (const info of leftovers) {
        const sandbox = await this.options.backend.get(info.id).catch(() => undefined);
        await sandbox?.destroy().catch(() => undefined);
      }
      await this.options.repo.update(row.containerName, {
        state: 'error',
        isRunning: false,
        errorMessage: 'The server stopped while this environment was being set up. Destroy it and start a new one.',
      });
      failed.push(row.containerName);
    }
    return { failed };
  }

  /** Stops every setup in progress without recording anything or removing sandboxes, as a crash would. */
  async abandon(): Promise<void> {
    this.abandoned = true;
    for (const setup of this.setups.values()) setup.controller.abort();
    await this.drain();
  }

  /** Waits for setups in progress (shutdown, tests). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.setups.values()].map((setup) => setup.done));
  }
}

function execView(result: ExecResult): ExecView {
  return {
    exitCode: result.exitCode,
    stdout: result.stdout,
    stderr: result.stderr,
    timedOut: result.timedOut,
    durationMs: result.durationMs,
  };
}

function isTestFile(file: string): boolean {
  const base = path.posix.basename(file);
  return base.endsWith('.py') && (base.startsWith('test_') || base.endsWith('_test.py'));
}

function defaultName(familyName: string, taskName: string | undefined): string {
  const task = (taskName ?? '').replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 20);
  return `${familyName.slice(0, 30)}${task ? `-${task}` : ''}-${randomBytes(3).toString('hex')}`.replace(
    /^[^A-Za-z0-9]+/,
    '',
  );
}

export { type TaskEnvironmentState, TaskOperationError };
