/**
 * `terrarium task …`: task environments for task authors (a task's sandbox with no agent), and SSH into them.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import type {
  ExecView,
  ScoreView,
  SshAccessView,
  TaskEnvironmentView,
  TestView,
} from '@terrarium/server/tasks/environments/index';
import { type Command, InvalidArgumentError } from 'commander';
import { ApiError, type TerrariumClient } from '../client.js';
import { cliConfig, connect } from '../connection.js';
import { parseTaskArgument } from './run.js';

export interface ServerOptions {
  serverUrl?: string;
}

/** The task-environment part of the user API. */
export class TaskEnvironmentClient {
  constructor(private readonly client: TerrariumClient) {}

  get baseUrl(): string {
    return this.client.baseUrl;
  }

  create(body: { taskFamilyDir: string; taskName?: string; name?: string }): Promise<TaskEnvironmentView> {
    return this.request('POST', '/api/task-environments', body);
  }
  list(all = false): Promise<TaskEnvironmentView[]> {
    return this.request('GET', `/api/task-environments${all ? '?all=true' : ''}`);
  }
  get(name: string): Promise<TaskEnvironmentView> {
    return this.request('GET', this.route(name));
  }
  action(name: string, action: 'stop' | 'start' | 'restart'): Promise<TaskEnvironmentView> {
    return this.request('POST', this.route(name, action));
  }
  destroy(name: string): Promise<TaskEnvironmentView> {
    return this.request('DELETE', this.route(name));
  }
  score(name: string, submission: string): Promise<ScoreView> {
    return this.request('POST', this.route(name, 'score'), { submission });
  }
  exec(
    name: string,
    body: { command: string[]; user?: 'root' | 'agent'; workdir?: string; timeoutSeconds?: number; stdin?: string },
  ): Promise<ExecView> {
    return this.request('POST', this.route(name, 'exec'), body);
  }
  test(name: string, body: { testFile?: string; testName?: string }): Promise<TestView> {
    return this.request('POST', this.route(name, 'test'), body);
  }
  grantSsh(name: string, publicKey: string, user: 'agent' | 'root'): Promise<SshAccessView> {
    return this.request('POST', this.route(name, 'ssh-keys'), { publicKey, user });
  }
  sshInfo(name: string, user: 'agent' | 'root'): Promise<SshAccessView> {
    return this.request('GET', `${this.route(name, 'ssh')}?user=${user}`);
  }

  private route(name: string, action?: string): string {
    return `/api/task-environments/${encodeURIComponent(name)}${action ? `/${action}` : ''}`;
  }

  private request<T>(method: string, route: string, body?: unknown): Promise<T> {
    return this.client.request(method, route, body);
  }
}

/** Connects (to a running server, else an embedded one) and runs `fn` with a task-environment client. */
async function withClient<T>(options: ServerOptions, fn: (client: TaskEnvironmentClient) => Promise<T>): Promise<T> {
  const connection = await connect({
    ...(options.serverUrl !== undefined && { serverUrl: options.serverUrl }),
    onEmbeddedStart: () => process.stderr.write('Starting an embedded Terrarium server…\n'),
  });
  try {
    return await fn(new TaskEnvironmentClient(connection.client));
  } finally {
    await connection.close();
  }
}

function isDirectory(candidate: string): boolean {
  try {
    return statSync(candidate).isDirectory();
  } catch {
    return false;
  }
}

function summary(env: TaskEnvironmentView): string {
  const lines = [`Task environment ${env.name}: ${env.taskId} — ${env.state}`];
  if (env.sandboxName) lines.push(`  sandbox: ${env.sandboxName}${env.ipAddress ? ` (${env.ipAddress})` : ''}`);
  if (env.errorMessage) lines.push(`  ${env.state === 'error' ? 'error' : 'note'}: ${env.errorMessage}`);
  if (env.state === 'running') {
    lines.push(
      '  next:',
      `    terrarium task exec ${env.name} -- bash -lc 'ls -la'`,
      `    terrarium task score ${env.name} '<submission>'`,
      `    terrarium task test ${env.name}`,
      `    terrarium task grant-ssh ${env.name} ~/.ssh/id_ed25519.pub && terrarium task ssh ${env.name}`,
      `    terrarium task destroy ${env.name}`,
    );
  }
  return lines.join('\n');
}

/**
 * `terrarium task start <family-dir[#task]>` creates an environment and follows its setup (image build, then
 * TaskFamily.start); `terrarium task start <name>` starts a stopped one again.
 */
export async function taskStartCommand(
  target: string,
  options: ServerOptions & { name?: string; detach?: boolean },
): Promise<number> {
  const { taskFamilyDir, taskName } = parseTaskArgument(target);
  if (!isDirectory(taskFamilyDir)) {
    if (target.includes('/') || target.includes('#')) {
      throw new Error(
        `${taskFamilyDir} is not a directory. Give a task family directory (e.g. examples/task-families/hello_world#sum) or the name of a stopped environment (terrarium task list).`,
      );
    }
    return withClient(options, async (client) => {
      const env = await client.action(target, 'start').catch((error: unknown) => {
        if (error instanceof ApiError && error.status === 404) {
          throw new Error(
            `"${target}" is neither a task family directory nor a task environment. Create one with terrarium task start <family-dir>#<task>, or list them with terrarium task list.`,
          );
        }
        throw error;
      });
      process.stdout.write(`${summary(env)}\n`);
      return 0;
    });
  }
  return withClient(options, async (client) => {
    const created = await client.create({
      taskFamilyDir,
      ...(taskName !== undefined && { taskName }),
      ...(options.name !== undefined && { name: options.name }),
    });
    process.stderr.write(`Setting up task environment ${created.name}…\n`);
    if (options.detach) {
      process.stdout.write(`${created.name}\n`);
      return 0;
    }
    const env = await followSetup(client, created.name);
    process.stdout.write(`${summary(env)}\n`);
    return env.state === 'running' ? 0 : 1;
  });
}

/** Prints the setup's progress lines (image build output, TaskFamily.start output) until it settles. */
export async function followSetup(client: TaskEnvironmentClient, name: string): Promise<TaskEnvironmentView> {
  let printed = 0;
  for (;;) {
    const env = await client.get(name);
    for (const line of env.progress) {
      if (line.seq <= printed) continue;
      process.stderr.write(`  ${line.message}\n`);
      printed = line.seq;
    }
    if (env.state !== 'building' && env.state !== 'starting') return env;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

export async function taskLifecycleCommand(
  action: 'stop' | 'restart' | 'destroy',
  name: string,
  options: ServerOptions,
): Promise<number> {
  return withClient(options, async (client) => {
    const env = action === 'destroy' ? await client.destroy(name) : await client.action(name, action);
    if (action === 'destroy') {
      process.stdout.write(`Task environment ${env.name} destroyed (TaskFamily.teardown ran, sandbox removed).\n`);
      if (env.errorMessage) process.stdout.write(`  note: ${env.errorMessage}\n`);
    } else {
      process.stdout.write(`${summary(env)}\n`);
    }
    return 0;
  });
}

export async function taskListCommand(options: ServerOptions & { all?: boolean; json?: boolean }): Promise<number> {
  return withClient(options, async (client) => {
    const envs = await client.list(options.all === true);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(envs, null, 2)}\n`);
      return 0;
    }
    if (envs.length === 0) {
      process.stdout.write('No task environments. Start one: terrarium task start <family-dir>#<task>\n');
      return 0;
    }
    const header = ['NAME', 'STATE', 'TASK', 'CREATED', 'OWNER'];
    const rows = envs.map((e) => [e.name, e.state, e.taskId, e.createdAt.replace('T', ' ').slice(0, 19), e.owner]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const text = [header, ...rows].map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
    process.stdout.write(`${text.join('\n')}\n`);
    return 0;
  });
}

export async function taskScoreCommand(
  name: string,
  submission: string | undefined,
  options: ServerOptions & { file?: string },
): Promise<number> {
  if ((submission === undefined) === (options.file === undefined)) {
    throw new Error('Give the submission either as an argument or with --file <path>, not both.');
  }
  const text = options.file !== undefined ? await readFile(options.file, 'utf8') : submission!;
  return withClient(options, async (client) => {
    const result = await client.score(name, text);
    if (result.stdoutTail.trim()) process.stderr.write(`${result.stdoutTail.trimEnd()}\n`);
    process.stdout.write(
      result.manual
        ? 'Score: none — the task returned None, so a person scores this submission (manual scoring).\n'
        : `Score: ${result.score}\n`,
    );
    return 0;
  });
}

export async function taskExecCommand(
  name: string,
  command: string[],
  options: ServerOptions & { user?: 'root' | 'agent'; workdir?: string; timeout?: number },
): Promise<number> {
  if (command.length === 0) throw new Error(`Give a command after --, e.g. terrarium task exec ${name} -- ls -la`);
  return withClient(options, async (client) => {
    const result = await client.exec(name, {
      command,
      ...(options.user !== undefined && { user: options.user }),
      ...(options.workdir !== undefined && { workdir: options.workdir }),
      ...(options.timeout !== undefined && { timeoutSeconds: options.timeout }),
    });
    process.stdout.write(result.stdout);
    process.stderr.write(result.stderr);
    if (result.timedOut) {
      process.stderr.write(`\nerror: the command timed out after ${Math.round(result.durationMs / 1000)} s\n`);
      return 124;
    }
    return result.exitCode ?? 137;
  });
}

export async function taskTestCommand(
  name: string,
  options: ServerOptions & { file?: string; k?: string },
): Promise<number> {
  return withClient(options, async (client) => {
    const result = await client.test(name, {
      ...(options.file !== undefined && { testFile: options.file }),
      ...(options.k !== undefined && { testName: options.k }),
    });
    process.stdout.write(result.stdout);
    process.stderr.write(result.stderr);
    process.stderr.write(
      `\n${result.testFiles.join(', ')}: ${result.passed} passed, ${result.failed} failed, ${result.skipped} skipped, ${result.errors} errors\n`,
    );
    return result.exitCode ?? 1;
  });
}

/** The first of the usual public key files, for grant-ssh without a file. */
function defaultPublicKeyFile(): string {
  const dir = path.join(homedir(), '.ssh');
  for (const file of ['id_ed25519.pub', 'id_ecdsa.pub', 'id_rsa.pub']) {
    if (existsSync(path.join(dir, file))) return path.join(dir, file);
  }
  throw new Error(
    `No public key given and none in ${dir} (id_ed25519.pub, id_ecdsa.pub, id_rsa.pub). Make one with ssh-keygen -t ed25519, or pass the .pub file.`,
  );
}

export async function taskGrantSshCommand(
  name: string,
  keyFile: string | undefined,
  options: ServerOptions & { user?: 'agent' | 'root' },
): Promise<number> {
  const file = keyFile ?? defaultPublicKeyFile();
  if (!file.endsWith('.pub') && existsSync(`${file}.pub`)) {
    throw new Error(`${file} looks like a private key; give the public key ${file}.pub instead.`);
  }
  const publicKey = (await readFile(file, 'utf8')).trim();
  const user = options.user ?? 'agent';
  return withClient(options, async (client) => {
    const access = await client.grantSsh(name, publicKey, user);
    process.stdout.write(
      `Granted ${path.basename(file)} SSH access to ${name} as ${access.user} (${access.host}).\n` +
        `Connect: terrarium task ssh ${name}${user === 'root' ? ' --user root' : ''}\n`,
    );
    return 0;
  });
}

/** known_hosts for one environment, from the host keys the server read inside it: ssh then checks the host. */
async function knownHostsFile(name: string, access: SshAccessView): Promise<string> {
  const dir = path.join(cliConfig().TERRARIUM_DATA_DIR, 'ssh');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `known_hosts-${name}`);
  await writeFile(file, access.hostKeys.map((key) => `${access.host} ${key}\n`).join(''), { mode: 0o600 });
  return file;
}

function sshOptions(knownHosts: string, identity: string | undefined): string[] {
  return [
    ...(identity ? ['-i', identity, '-o', 'IdentitiesOnly=yes'] : []),
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'ConnectTimeout=10',
  ];
}

function runInteractive(command: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'ENOENT'
          ? new Error(`${command} is not installed on this machine (apt-get install -y openssh-client).`)
          : error,
      ),
    );
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/** `terrarium task ssh <env> [-- command…]`: the local ssh, to the sshd in the environment, host key pinned. */
export async function taskSshCommand(
  name: string,
  command: string[],
  options: ServerOptions & { user?: 'agent' | 'root'; identity?: string },
): Promise<number> {
  const user = options.user ?? 'agent';
  const access = await withClient(options, (client) => client.sshInfo(name, user));
  const knownHosts = await knownHostsFile(name, access);
  return runInteractive('ssh', [...sshOptions(knownHosts, options.identity), `${user}@${access.host}`, ...command]);
}

/**
 * `terrarium task scp <src> <dst>`: one side is `<env>:<path>`. Copies with the local scp through the environment's
 * sshd (recursive with -r).
 */
export async function taskScpCommand(
  source: string,
  destination: string,
  options: ServerOptions & { user?: 'agent' | 'root'; identity?: string; recursive?: boolean },
): Promise<number> {
  const remote = (spec: string) => /^([A-Za-z0-9][A-Za-z0-9_.-]*):(.*)$/.exec(spec);
  const sourceRemote = remote(source);
  const destinationRemote = remote(destination);
  if (!sourceRemote === !destinationRemote) {
    throw new Error(
      'Exactly one side must be <environment>:<path>, e.g. terrarium task scp ./notes.txt my-env:/home/agent/ or terrarium task scp my-env:/home/agent/out.txt .',
    );
  }
  const name = (sourceRemote ?? destinationRemote)![1]!;
  const user = options.user ?? 'agent';
  const access = await withClient(options, (client) => client.sshInfo(name, user));
  const knownHosts = await knownHostsFile(name, access);
  const translate = (spec: string, match: RegExpExecArray | null) =>
    match ? `${user}@${access.host}:${match[2] || (user === 'root' ? '/root' : '/home/agent')}` : spec;
  return runInteractive('scp', [
    ...sshOptions(knownHosts, options.identity),
    ...(options.recursive ? ['-r'] : []),
    translate(source, sourceRemote),
    translate(destination, destinationRemote),
  ]);
}

type Action = <A extends unknown[]>(fn: (...args: A) => Promise<number> | number) => (...args: A) => Promise<void>;

function sshUser(value: string): 'agent' | 'root' {
  if (value !== 'agent' && value !== 'root')
    throw new InvalidArgumentError(`expected "agent" or "root", got "${value}"`);
  return value;
}

function positiveSeconds(value: string): number {
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed) || parsed <= 0) {
    throw new InvalidArgumentError(`expected a number of seconds > 0, got "${value}"`);
  }
  return parsed;
}

/** Adds `terrarium task …` to the program; `action` turns a command's result into the exit code. */
export function registerTaskCommands(program: Command, action: Action): void {
  const task = program
    .command('task')
    .description('Task environments for task authors: a task’s sandbox without an agent (exec, score, test, ssh)');
  const server = (command: Command) => command.option('--server-url <url>', 'Terrarium server to use');

  server(
    task
      .command('start')
      .description(
        'Start a task environment: build the image, start the sandbox, run TaskFamily.start (or start a stopped one by name)',
      )
      .argument(
        '<target>',
        'task family directory with optional #task (e.g. examples/task-families/hello_world#sum), or an environment name',
      )
      .option('--name <name>', 'name of the new environment (default: <family>-<task>-<random>)')
      .option('--detach', 'print the name and return at once instead of following the setup'),
  ).action(action((target: string, options) => taskStartCommand(target, options)));
  for (const [verb, description] of [
    ['stop', 'Stop a task environment’s sandbox (its files are kept; start it again with terrarium task start <name>)'],
    ['restart', 'Stop and start a task environment’s sandbox again'],
    ['destroy', 'Run TaskFamily.teardown and remove the task environment’s sandbox'],
  ] as const) {
    server(task.command(verb).description(description).argument('<name>', 'environment name')).action(
      action((name: string, options) => taskLifecycleCommand(verb, name, options)),
    );
  }
  server(
    task
      .command('list')
      .description('List task environments: state, task, created time, owner')
      .option('--all', 'include destroyed ones')
      .option('--json', 'print JSON'),
  ).action(action((options) => taskListCommand(options)));
  server(
    task
      .command('score')
      .description('Score a submission with TaskFamily.score inside the environment')
      .argument('<name>', 'environment name')
      .argument('[submission]', 'the submission text')
      .option('--file <path>', 'read the submission from a file'),
  ).action(
    action((name: string, submission: string | undefined, options) => taskScoreCommand(name, submission, options)),
  );
  server(
    task
      .command('exec')
      .description(
        'Run a command in the environment and exit with its exit code (e.g. terrarium task exec env -- ls -la)',
      )
      .argument('<name>', 'environment name')
      .argument('<command...>', 'the command and its arguments (put them after --)')
      .option('--user <agent|root>', 'run as this user (default root)', sshUser)
      .option('--workdir <dir>', 'working directory (default /root for root, /home/agent for agent)')
      .option('--timeout <seconds>', 'kill the command after this long (default 600)', positiveSeconds),
  ).action(action((name: string, command: string[], options) => taskExecCommand(name, command, options)));
  server(
    task
      .command('test')
      .description(
        "Run the family's pytest tests (<family>_test.py, fixtures task_family/task_name/task) in the environment",
      )
      .argument('<name>', 'environment name')
      .option('--file <path>', 'one test file, relative to the family directory')
      .option('-k <expression>', 'only tests matching this pytest -k expression'),
  ).action(action((name: string, options) => taskTestCommand(name, options)));
  server(
    task
      .command('grant-ssh')
      .description("Give an SSH public key access to the environment (installed in the user's authorized_keys)")
      .argument('<name>', 'environment name')
      .argument('[public-key-file]', 'the .pub file (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub)')
      .option('--user <agent|root>', 'the user the key logs in as (default agent)', sshUser),
  ).action(action((name: string, file: string | undefined, options) => taskGrantSshCommand(name, file, options)));
  server(
    task
      .command('ssh')
      .description('SSH into the environment with the local ssh (grant your key first with terrarium task grant-ssh)')
      .argument('<name>', 'environment name')
      .argument('[command...]', 'a command to run instead of a shell (after --)')
      .option('--user <agent|root>', 'log in as (default agent)', sshUser)
      .option('-i, --identity <file>', 'private key to use (default: your ssh defaults)'),
  ).action(action((name: string, command: string[], options) => taskSshCommand(name, command, options)));
  server(
    task
      .command('scp')
      .description('Copy files to or from the environment with the local scp; one side is <name>:<path>')
      .argument('<source>', 'local path or <name>:<path>')
      .argument('<destination>', 'local path or <name>:<path>')
      .option('-r, --recursive', 'copy directories')
      .option('--user <agent|root>', 'log in as (default agent)', sshUser)
      .option('-i, --identity <file>', 'private key to use (default: your ssh defaults)'),
  ).action(action((source: string, destination: string, options) => taskScpCommand(source, destination, options)));
}
