#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { branchForkCommand, branchListCommand } from './commands/branch.js';
import { configCommand } from './commands/config.js';
import { doctorCommand } from './commands/doctor.js';
import { buildBaseImageCommand } from './commands/images.js';
import { loginCommand, logoutCommand } from './commands/login.js';
import { batchesCommand, batchSetLimitCommand, killCommand, unkillCommand } from './commands/queue.js';
import { quickstartCommand } from './commands/quickstart.js';
import { runCommand } from './commands/run.js';
import { runsCommand, traceCommand } from './commands/runs.js';
import { scoreCommand, scoresCommand } from './commands/score.js';
import { serverCommand } from './commands/server.js';
import { registerTaskCommands } from './commands/task.js';
import { testCommand } from './commands/test.js';

function positiveInt(value: string): number {
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed <= 0)
    throw new InvalidArgumentError(`expected a positive whole number, got "${value}"`);
  return parsed;
}

function concurrencyLimit(value: string): number | null {
  if (value === 'none') return null;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 0)
    throw new InvalidArgumentError(`expected a whole number ≥ 0 or "none", got "${value}"`);
  return parsed;
}

function nonNegativeNumber(value: string): number {
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed) || parsed < 0)
    throw new InvalidArgumentError(`expected a number ≥ 0, got "${value}"`);
  return parsed;
}

function nonNegativeInt(value: string): number {
  const parsed = nonNegativeNumber(value);
  if (!Number.isSafeInteger(parsed)) throw new InvalidArgumentError(`expected a whole number ≥ 0, got "${value}"`);
  return parsed;
}

function finiteNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got "${value}"`);
  return n;
}

function priority(value: string): 'high' | 'low' {
  if (value !== 'high' && value !== 'low') throw new InvalidArgumentError(`expected "high" or "low", got "${value}"`);
  return value;
}

/** Runs a command action and exits with its code; errors print their message (which says what to do next). */
function action<A extends unknown[]>(fn: (...args: A) => Promise<number> | number) {
  return async (...args: A) => {
    try {
      process.exitCode = await fn(...args);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      process.stderr.write(`\nerror: ${message}\n`);
      if (process.env.TERRARIUM_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
      process.exitCode = 2;
    }
  };
}

const program = new Command('terrarium')
  .description('Run AI agents on METR Task Standard tasks in isolated sandboxes, trace them and score them.')
  .version('0.1.0')
  .showHelpAfterError();

program
  .command('quickstart')
  .description('Prepare everything on this machine, then run the example agent on an example task')
  .option('--task <name>', 'hello_world task to run', 'sum')
  .action(action((options: { task: string }) => quickstartCommand(options)));

/** The four usage-limit options of `run` and `branch fork`; `describe` words each limit for its command. */
function usageLimitOptions(command: Command, describe: (limit: string, runDefault: string) => string): Command {
  return command
    .option('--max-tokens <n>', describe('tokens', '300000'), nonNegativeInt)
    .option('--max-actions <n>', describe('actions', '3000'), nonNegativeInt)
    .option('--max-seconds <n>', describe('working seconds, pauses excluded', '86400'), nonNegativeNumber)
    .option('--max-cost <usd>', describe('cost in US dollars', '100'), nonNegativeNumber);
}

usageLimitOptions(
  program
    .command('run')
    .description('Run an agent on a task and wait for its score')
    .argument(
      '<task>',
      'task family directory, optionally with #task-name (e.g. examples/task-families/hello_world#sum)',
    )
    .requiredOption('--agent <dir>', 'agent directory (main.py, or agent.yaml naming a command)')
    .option('--detach', 'return as soon as the run is created (needs a running server)')
    .option('--batch <name>', 'run batch (default: your default batch, limited by DEFAULT_RUN_BATCH_CONCURRENCY_LIMIT)')
    .option('--priority <high|low>', 'queue priority: high runs start before low ones', priority)
    .option(
      '--keep-task-environment-running',
      'when the run ends, keep its sandbox (no TaskFamily.teardown) as the task environment run-<id>',
    ),
  (limit, runDefault) => `usage limit: ${limit} (default ${runDefault})`,
)
  .option('--server-url <url>', 'Terrarium server to use (default: one on this machine, else an embedded one)')
  .action(action((task: string, options) => runCommand(task, options)));

program
  .command('kill')
  .description('Kill a run at once, whatever its state (a queued run never starts; a running one is torn down)')
  .argument('<run-id>', 'run id', positiveInt)
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((runId: number, options) => killCommand(runId, options)));

program
  .command('unkill')
  .description('Put a run killed before its sandbox existed (queued, or while its image was built) back in the queue')
  .argument('<run-id>', 'run id', positiveInt)
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((runId: number, options) => unkillCommand(runId, options)));

program
  .command('batches')
  .description('List run batches: concurrency limit, active and queued runs')
  .option('--json', 'print JSON')
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((options) => batchesCommand(options)));

program
  .command('batch')
  .description('Manage a run batch')
  .command('set-limit')
  .description('Set how many runs of a batch may run at once (0 holds the batch; "none" removes the limit)')
  .argument('<name>', 'batch name (created if missing)')
  .argument('<limit>', 'a whole number ≥ 0, or "none"', concurrencyLimit)
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((name: string, limit: number | null, options) => batchSetLimitCommand(name, limit, options)));

program
  .command('runs')
  .description('List runs, newest first')
  .option('--limit <n>', 'how many', positiveInt, 50)
  .option('--json', 'print JSON')
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((options) => runsCommand(options)));

program
  .command('trace')
  .description("Print a run's steps and trace entries")
  .argument('<run-id>', 'run id', positiveInt)
  .option('--json', 'print JSON')
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((runId: number, options) => traceCommand(runId, options)));

program
  .command('login')
  .description(
    'Sign in to a server that uses an OpenID Connect provider (USE_AUTH0): device code, client credentials, or a token',
  )
  .option('--token <token>', 'an access token you already have (default: TERRARIUM_ACCESS_TOKEN)')
  .option(
    '--client-credentials',
    'sign in as the machine-to-machine application (VIVARIA_AUTH0_CLIENT_ID/SECRET_FOR_AGENT_APPLICATION)',
  )
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((options) => loginCommand(options)));

program
  .command('logout')
  .description('Forget the token `terrarium login` kept for a server')
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((options) => logoutCommand(options)));

program
  .command('config')
  .description('Print the effective configuration (secrets masked)')
  .option('--json', 'print JSON')
  .action(action((options) => configCommand(options)));

program
  .command('doctor')
  .description('Check what Terrarium needs on this machine (Docker engine, debootstrap); --install provides it')
  .option('--install', 'install and start what is missing (root on Debian)')
  .action(action((options) => doctorCommand(options)));

program
  .command('server')
  .description('Run the Terrarium server in the foreground')
  .action(action(() => serverCommand()));

program
  .command('images')
  .description('Manage sandbox images')
  .command('build-base')
  .description('Build (or find) the Python 3 base image task images are built on')
  .action(action(() => buildBaseImageCommand()));

program
  .command('test')
  .description('Install what the test suite needs, then run lint, type checks and every test')
  .allowUnknownOption()
  .argument('[vitest-args...]', 'passed to vitest (e.g. a file filter)')
  .action(action((args: string[]) => testCommand(args)));

const branch = program.command('branch').description("Fork and list a run's agent branches");
usageLimitOptions(
  branch
    .command('fork')
    .description("Start a new agent branch in the run's sandbox from the state saved at (or given for) a trace entry")
    .argument('<run-id>', 'run id', positiveInt)
    .requiredOption('--from-entry <id>', 'trace entry to fork at', positiveInt)
    .option('--parent <n>', 'branch the entry belongs to (default 0, the trunk)', nonNegativeInt)
    .option(
      '--state-file <file>',
      'JSON file with the starting state (default: the state saved at or before the entry)',
    ),
  (limit) => `the branch's ${limit} limit (default: the run's)`,
)
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((runId: number, options) => branchForkCommand(runId, options)));
branch
  .command('list')
  .description("List a run's branches: parent, fork point, status, score, usage")
  .argument('<run-id>', 'run id', positiveInt)
  .option('--json', 'print JSON')
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((runId: number, options) => branchListCommand(runId, options)));

program
  .command('score')
  .description('Enter a score for a branch that ended in manual scoring (the task could not score it)')
  .argument('<run-id>', 'run id', positiveInt)
  .argument('<score>', 'the score (a number)', finiteNumber)
  .option('--branch <n>', 'agent branch (default 0, the trunk)', nonNegativeInt)
  .option('--notes <text>', 'why this score')
  .option('--seconds <n>', 'how long scoring took you', nonNegativeNumber)
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((runId: number, score: number, options) => scoreCommand(runId, score, options)));

program
  .command('scores')
  .description("List a run's intermediate scores and manual scores, every branch")
  .argument('<run-id>', 'run id', positiveInt)
  .option('--json', 'print JSON')
  .option('--server-url <url>', 'Terrarium server to use')
  .action(action((runId: number, options) => scoresCommand(runId, options)));

registerTaskCommands(program, action);

await program.parseAsync();
