import path from 'node:path';
import type { RunView, TerrariumClient } from '../client.js';
import { cliConfig, connect } from '../connection.js';
import { formatRunSummary, isFinished } from '../format.js';
import { RunProgress } from '../progress.js';

export interface RunCommandOptions {
  agent: string;
  detach?: boolean;
  batch?: string;
  priority?: 'high' | 'low';
  keepTaskEnvironmentRunning?: boolean;
  maxTokens?: number;
  maxActions?: number;
  maxSeconds?: number;
  maxCost?: number;
  serverUrl?: string;
}

/** The --max-* options as a request's usageLimits (undefined when none is given). */
export function usageLimitsFromOptions(
  options: RunCommandOptions,
): { tokens?: number; actions?: number; totalSeconds?: number; cost?: number } | undefined {
  const limits = {
    ...(options.maxTokens !== undefined && { tokens: options.maxTokens }),
    ...(options.maxActions !== undefined && { actions: options.maxActions }),
    ...(options.maxSeconds !== undefined && { totalSeconds: options.maxSeconds }),
    ...(options.maxCost !== undefined && { cost: options.maxCost }),
  };
  return Object.keys(limits).length > 0 ? limits : undefined;
}

/** `family-dir#task` → its parts; the task part is optional. */
export function parseTaskArgument(argument: string): { taskFamilyDir: string; taskName?: string } {
  const hash = argument.lastIndexOf('#');
  if (hash === -1) return { taskFamilyDir: path.resolve(argument) };
  const taskName = argument.slice(hash + 1);
  if (!taskName)
    throw new Error(
      `"${argument}" ends with "#" but names no task; write <family-dir>#<task>, e.g. examples/task-families/hello_world#sum.`,
    );
  return { taskFamilyDir: path.resolve(argument.slice(0, hash)), taskName };
}

/**
 * The exit code of `terrarium run` for the state its run ended in:
 *   0  the agent finished: submitted (scored, or its score is null) or awaiting manual scoring;
 *   1  the run failed (error) or was killed;
 *   3  the run ended at a usage limit (tokens, actions, time or cost), whether or not the task scored it;
 *   2  is the CLI's own failure (bad arguments, no server), set by main.ts.
 * A non-zero exit of a finished run comes with a message on stderr saying why.
 */
export const RUN_EXIT_CODES = { finished: 0, failed: 1, usageLimits: 3 } as const;

export function runExitCode(run: Pick<RunView, 'status' | 'errorMessage' | 'errorStep'>): {
  code: number;
  message?: string;
} {
  const detail = (run.errorMessage ?? 'no detail').replace(/\.$/, '');
  switch (run.status) {
    case 'error':
      return {
        code: RUN_EXIT_CODES.failed,
        message: `The run failed${run.errorStep ? ` in step ${run.errorStep}` : ''}: ${detail}.`,
      };
    case 'killed':
      return { code: RUN_EXIT_CODES.failed, message: `The run was killed: ${detail}.` };
    case 'usage-limits':
      return {
        code: RUN_EXIT_CODES.usageLimits,
        message:
          `The run ended at its usage limits (${detail}). ` +
          'Raise the limit with --max-tokens, --max-actions, --max-seconds or --max-cost.',
      };
    default:
      return { code: RUN_EXIT_CODES.finished };
  }
}

export async function waitForRun(client: TerrariumClient, runId: number, progress?: RunProgress): Promise<RunView> {
  for (;;) {
    const run = await client.getRun(runId);
    progress?.update(run);
    if (isFinished(run.status)) return run;
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

export async function runCommand(task: string, options: RunCommandOptions): Promise<number> {
  const target = parseTaskArgument(task);
  const connection = await connect({
    serverUrl: options.serverUrl,
    onEmbeddedStart: () => process.stderr.write('Starting an embedded Terrarium server…\n'),
  });
  try {
    const created = await connection.client.createRun({
      ...target,
      agentDir: path.resolve(options.agent),
      ...(options.batch && { batchName: options.batch }),
      ...(options.priority && { priority: options.priority }),
      ...(options.keepTaskEnvironmentRunning && { keepTaskEnvironmentRunning: true }),
      ...(usageLimitsFromOptions(options) && { usageLimits: usageLimitsFromOptions(options) }),
    });
    process.stderr.write(`Created run ${created.id}.\n`);
    if (options.detach && !connection.embedded) {
      process.stdout.write(`${created.id}\n`);
      return 0;
    }
    if (options.detach)
      process.stderr.write('The server is embedded in this process, so --detach waits for the run anyway.\n');
    const progress = new RunProgress();
    const run = await waitForRun(connection.client, created.id, progress);
    progress.stop();
    process.stdout.write(`${formatRunSummary(run)}\n  trace: ./terrarium trace ${run.id}\n`);
    // An embedded server stops with this command, and its web UI with it.
    if (!connection.embedded) {
      const ui = (cliConfig().UI_URL ?? connection.client.baseUrl).replace(/\/+$/, '');
      process.stdout.write(`  web:   ${ui}/runs/${run.id}\n`);
    }
    if (
      options.keepTaskEnvironmentRunning &&
      run.steps.some((s) => s.step === 'teardown' && s.status === 'succeeded')
    ) {
      process.stdout.write(`  task environment: run-${run.id} (terrarium task exec run-${run.id} -- …)\n`);
    }
    const exit = runExitCode(run);
    if (exit.message) process.stderr.write(`${exit.message}\n`);
    return exit.code;
  } finally {
    await connection.close();
  }
}
