import type { Sandbox } from '../sandbox/types.js';

/**
 * The agent process of one branch, started detached inside the sandbox so that it outlives the exec (and the server
 * process) that started it. Everything the engine needs to follow it again later lives in the sandbox, in
 * `/home/agent/.terrarium/branches/<n>/`:
 *
 * - `pid`    the agent's process-group leader (a `sh` wrapper started with setsid);
 * - `stdout`, `stderr`  the agent's output;
 * - `exit`   its exit code, written by the wrapper when the agent exits (renamed into place, so never partial).
 *
 * A server that restarts re-attaches by following the files again from the byte offsets it had recorded.
 */
export const AGENT_STATE_ROOT = '/home/agent/.terrarium/branches';

export const branchDir = (agentBranchNumber: number) => `${AGENT_STATE_ROOT}/${agentBranchNumber}`;

/** The wrapper: runs the agent with its output in files, then records its exit code. */
const WRAPPER =
  'd="$1"; shift; "$@" > "$d/stdout" 2> "$d/stderr" < /dev/null; echo $? > "$d/exit.tmp"; mv "$d/exit.tmp" "$d/exit"';

/** The launcher: prepares the directory, starts the wrapper in its own session, prints its pid. */
const LAUNCHER = [
  'd="$1"; shift',
  'mkdir -p "$d" || exit 90',
  'rm -f "$d/exit" "$d/exit.tmp" "$d/pid"',
  ': > "$d/stdout"; : > "$d/stderr"',
  // The exec's marker variable must not reach the agent: a later sweep of that exec's processes would kill it.
  `env -u TERRARIUM_EXEC_ID setsid sh -c '${WRAPPER}' agent "$d" "$@" < /dev/null > /dev/null 2>&1 &`,
  'echo $! > "$d/pid"',
  'echo $!',
].join('\n');

/**
 * Follows both output files from the given byte offsets until the agent's process group leader exits (tail polls
 * it every 0.2 s, and reads the files one last time after it has gone). stderr goes to the exec's stderr.
 */
const FOLLOWER = [
  'd="$1"; pid="$(cat "$d/pid")"',
  'tail -q -s 0.2 -c +"$2" --pid="$pid" -f "$d/stderr" >&2 &',
  'tail -q -s 0.2 -c +"$3" --pid="$pid" -f "$d/stdout"',
  'wait',
].join('\n');

/** Prints the exit code when the agent has exited, `running` while its process lives, `gone` otherwise. */
const STATUS =
  'd="$1"; cat "$d/exit" 2>/dev/null || { kill -0 "$(cat "$d/pid" 2>/dev/null)" 2>/dev/null && echo running; } || echo gone';

export interface LaunchOptions {
  command: string[];
  user: string;
  workdir: string;
  env: Record<string, string>;
}

export type AgentProcessStatus = { kind: 'exited'; exitCode: number } | { kind: 'running' } | { kind: 'gone' };

export class DetachedAgentProcess {
  readonly dir: string;

  constructor(
    private readonly sandbox: Sandbox,
    readonly agentBranchNumber: number,
    private readonly user = 'agent',
  ) {
    this.dir = branchDir(agentBranchNumber);
  }

  /** Starts the agent in the background and returns at once. */
  async launch(options: LaunchOptions): Promise<void> {
    const result = await this.sandbox.exec({
      cmd: ['sh', '-c', LAUNCHER, 'launcher', this.dir, ...options.command],
      user: options.user,
      workdir: options.workdir,
      env: options.env,
      timeoutMs: 60_000,
    });
    if (result.exitCode !== 0 || !/^\d+\s*$/.test(result.stdout)) {
      throw new Error(
        `Could not start the agent process (exit code ${result.exitCode}): ${(result.stderr || result.stdout).trim()}`,
      );
    }
  }

  /**
   * Streams the agent's output from the given byte offsets until it exits (or the sandbox goes away, or `signal`
   * aborts). Aborting stops only the following: the agent goes on.
   */
  async follow(
    offsets: { stdout: number; stderr: number },
    callbacks: { onStdout: (chunk: Buffer) => void; onStderr: (chunk: Buffer) => void },
    signal: AbortSignal,
  ): Promise<AgentProcessStatus> {
    const position = { ...offsets };
    for (;;) {
      signal.throwIfAborted();
      await this.sandbox
        .exec({
          cmd: ['sh', '-c', FOLLOWER, 'follower', this.dir, String(position.stderr + 1), String(position.stdout + 1)],
          user: this.user,
          signal,
          maxOutputBytes: 64 * 1024,
          onStdout: (chunk) => {
            position.stdout += chunk.length;
            callbacks.onStdout(chunk);
          },
          onStderr: (chunk) => {
            position.stderr += chunk.length;
            callbacks.onStderr(chunk);
          },
        })
        .catch((error: unknown) => {
          if (signal.aborted) throw signal.reason;
          // The sandbox stopped under us: the status below tells.
          return error;
        });
      signal.throwIfAborted();
      const status = await this.status();
      // The follower itself can die (e.g. the OOM killer) while the agent lives: follow again from where it stopped.
      if (status.kind !== 'running') return status;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async status(): Promise<AgentProcessStatus> {
    const result = await this.sandbox
      .exec({ cmd: ['sh', '-c', STATUS, 'status', this.dir], user: this.user, timeoutMs: 30_000 })
      .catch(() => undefined);
    const text = result?.stdout.trim() ?? 'gone';
    if (/^-?\d+$/.test(text)) return { kind: 'exited', exitCode: Number(text) };
    return text === 'running' ? { kind: 'running' } : { kind: 'gone' };
  }

  /** Kills the agent's whole process group (SIGKILL); does nothing when it has exited. */
  async kill(): Promise<void> {
    await this.sandbox
      .exec({
        cmd: [
          'sh',
          '-c',
          'pid="$(cat "$1/pid" 2>/dev/null)" && kill -KILL -- "-$pid" 2>/dev/null; true',
          'kill',
          this.dir,
        ],
        user: 'root',
        timeoutMs: 30_000,
      })
      .catch(() => undefined);
  }
}
