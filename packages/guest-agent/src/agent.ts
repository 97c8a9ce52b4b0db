/**
 * The guest agent's request handling, independent of the transport (virtio-serial in a VM, a unix socket
 * in tests). Every mutating request is remembered by id: a retried request is never run twice; the agent
 * answers it from its cache (or joins the run still in progress).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { basename, dirname, isAbsolute, posix } from 'node:path';
import {
  type ExecOutcome,
  type ExecParams,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameHeader,
  type HealthResult,
  type LimitsParams,
  type NetworkParams,
  PROTOCOL_VERSION,
  type RequestHeader,
  TailBuffer,
} from '../../server/src/sandbox/microvm/protocol.js';

export interface GuestAgentOptions {
  /** Put every exec in its own cgroup v2 (killed as a whole); needs root and /sys/fs/cgroup. */
  useCgroups?: boolean;
  cgroupRoot?: string;
  /** Default user of an exec without `user`. */
  defaultUser?: string;
  /** How many finished requests to remember for retries. */
  rememberRequests?: number;
  /**
   * When set, file and tar requests must name paths inside this directory (TERRARIUM_AGENT_WORKSPACE). Unset in
   * Terrarium VMs: the Sandbox contract lets the host write anywhere (it is root in the VM anyway).
   */
  workspaceRoot?: string;
  /** A busybox binary with the `ip` applet (network set-up); default /opt/terrarium-agent/bin/busybox. */
  busybox?: string;
}

interface Reply {
  header: FrameHeader;
  body?: Buffer;
}

interface Entry {
  /** Replies waiting for the request to finish (the final response is cached in `done`). */
  done?: Reply;
  waiters: (() => void)[];
}

export interface Connection {
  receive(chunk: Buffer): void;
  /** Drops a partial frame (the peer went away mid-frame). */
  reset(): void;
  /** Detaches the transport. */
  close(): void;
}

const DEFAULT_ENV_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const DEDUPED_OPS = new Set(['exec', 'writeFile', 'putTar']);

class RequestFailure extends Error {
  constructor(
    message: string,
    readonly code = 'EFAILED',
  ) {
    super(message);
  }
}

interface Account {
  uid: number;
  gid: number;
  home: string;
  name: string;
}

function readAccounts(): { users: Account[]; groups: { name: string; gid: number }[] } {
  const lines = (path: string) => {
    try {
      return readFileSync(path, 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  const users = lines('/etc/passwd').map((line) => {
    const [name = '', , uid = '0', gid = '0', , home = '/'] = line.split(':');
    return { name, uid: Number(uid), gid: Number(gid), home };
  });
  const groups = lines('/etc/group').map((line) => {
    const [name = '', , gid = '0'] = line.split(':');
    return { name, gid: Number(gid) };
  });
  return { users, groups };
}

/** Resolves `user[:group]` (names or numbers) against the guest's /etc/passwd and /etc/group. */
export function resolveOwner(spec: string): { uid: number; gid: number; home: string; name: string } {
  const { users, groups } = readAccounts();
  const [userPart = '', groupPart] = spec.split(':');
  const user = /^\d+$/.test(userPart)
    ? (users.find((u) => u.uid === Number(userPart)) ?? {
        name: userPart,
        uid: Number(userPart),
        gid: Number(userPart),
        home: '/',
      })
    : users.find((u) => u.name === userPart);
  if (!user) throw new RequestFailure(`unknown user ${userPart}`, 'ENOUSER');
  let gid = user.gid;
  if (groupPart !== undefined && groupPart !== '') {
    const group = /^\d+$/.test(groupPart) ? { gid: Number(groupPart) } : groups.find((g) => g.name === groupPart);
    if (!group) throw new RequestFailure(`unknown group ${groupPart}`, 'ENOGROUP');
    gid = group.gid;
  }
  return { uid: user.uid, gid, home: user.home, name: user.name };
}

function checkPath(path: string, workspaceRoot?: string): string {
  if (typeof path !== 'string' || !isAbsolute(path)) throw new RequestFailure(`not an absolute path: ${path}`);
  const normalized = posix.normalize(path);
  if (workspaceRoot) {
    const root = posix.normalize(`${workspaceRoot}/`);
    if (normalized !== root.slice(0, -1) && !normalized.startsWith(root)) {
      throw new RequestFailure(`${path} is outside the workspace ${workspaceRoot}`, 'EOUTSIDE');
    }
  }
  return normalized;
}

/** mkdir -p that gives the directories it creates (and only those) to `owner`. */
async function makeParents(dir: string, owner?: { uid: number; gid: number }): Promise<void> {
  const missing: string[] = [];
  let current = dir;
  for (;;) {
    try {
      const info = await stat(current);
      if (!info.isDirectory()) throw new RequestFailure(`not a directory: ${current}`, 'ENOTDIR');
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.unshift(current);
      const parent = dirname(current);
      if (parent === current) break;
      current = parent;
    }
  }
  for (const path of missing) {
    await mkdir(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    if (owner) await chown(path, owner.uid, owner.gid);
  }
}

function run(cmd: string, args: string[], input?: Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? Buffer.alloc(0));
    child.on('close', (code) =>
      resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }),
    );
  });
}

interface RunningExec {
  child?: ChildProcess;
  cgroup?: string;
  cancelled: boolean;
  kill(): void;
}

export class GuestAgent {
  private readonly started = Date.now();
  private readonly entries = new Map<string, Entry>();
  private readonly running = new Map<string, RunningExec>();
  private readonly sinks = new Set<(data: Buffer) => void>();
  private cgroups = false;
  private execCounter = 0;
  private readonly cgroupRoot: string;
  /** Requests the host cancelled before they arrived (e.g. a cancel overtaking a retry). */
  private readonly cancelled = new Set<string>();

  constructor(private readonly options: GuestAgentOptions = {}) {
    this.cgroupRoot = options.cgroupRoot ?? '/sys/fs/cgroup';
  }

  async init(): Promise<void> {
    if (this.options.useCgroups === false) return;
    try {
      await writeFile(`${this.cgroupRoot}/cgroup.subtree_control`, '+memory +pids +cpu +cpuset').catch(() =>
        writeFile(`${this.cgroupRoot}/cgroup.subtree_control`, '+memory +pids'),
      );
      await mkdir(`${this.cgroupRoot}/sandbox`, { recursive: true });
      await writeFile(`${this.cgroupRoot}/sandbox/cgroup.subtree_control`, '+memory +pids +cpu +cpuset').catch(() =>
        writeFile(`${this.cgroupRoot}/sandbox/cgroup.subtree_control`, '+memory +pids'),
      );
      this.cgroups = true;
    } catch (err) {
      console.error('guest-agent: cgroups unavailable, falling back to process groups:', (err as Error).message);
    }
  }

  /** Attaches a transport. Replies go to every attached transport (in the VM there is exactly one). */
  connect(send: (data: Buffer) => void): Connection {
    const decoder = new FrameDecoder();
    this.sinks.add(send);
    return {
      receive: (chunk) => {
        for (const frame of decoder.push(chunk)) this.handle(frame as Frame<RequestHeader>);
      },
      reset: () => decoder.reset(),
      close: () => {
        this.sinks.delete(send);
      },
    };
  }

  private send(reply: Reply): void {
    const data = encodeFrame(reply.header, reply.body);
    for (const sink of this.sinks) sink(data);
  }

  handle(frame: Frame<RequestHeader>): void {
    const { header } = frame;
    if (header?.kind !== 'request' || typeof header.id !== 'string') return;
    if (header.op === 'cancel') {
      const target = this.running.get(header.target);
      if (target) target.kill();
      else if (!this.entries.get(header.target)?.done) this.cancelled.add(header.target);
      this.send({ header: { kind: 'response', id: header.id, ok: true } });
      return;
    }
    const dedupe = DEDUPED_OPS.has(header.op);
    if (dedupe) {
      const entry = this.entries.get(header.id);
      if (entry) {
        // A retry: answer from the cache, or when the first attempt finishes. Never run it again.
        if (entry.done) this.send(entry.done);
        else entry.waiters.push(() => entry.done && this.send(entry.done));
        return;
      }
      this.entries.set(header.id, { waiters: [] });
      this.forget();
    }
    void this.dispatch(header, frame.body).then(
      (reply) => this.finish(header.id, reply, dedupe),
      (err: unknown) =>
        this.finish(
          header.id,
          {
            header: {
              kind: 'response',
              id: header.id,
              ok: false,
              error: { message: (err as Error).message ?? String(err), code: (err as RequestFailure).code },
            },
          },
          dedupe,
        ),
    );
  }

  private finish(id: string, reply: Reply, dedupe: boolean) {
    if (dedupe) {
      const entry = this.entries.get(id);
      if (entry) {
        entry.done = reply;
        for (const waiter of entry.waiters.splice(0)) waiter();
      }
    }
    this.send(reply);
  }

  private forget() {
    const limit = this.options.rememberRequests ?? 512;
    for (const [id, entry] of this.entries) {
      if (this.entries.size <= limit) break;
      if (entry.done) this.entries.delete(id);
    }
  }

  private async dispatch(header: RequestHeader, body: Buffer): Promise<Reply> {
    const ok = (result?: unknown, replyBody?: Buffer): Reply => ({
      header: { kind: 'response', id: header.id, ok: true, result },
      body: replyBody,
    });
    switch (header.op) {
      case 'health': {
        const result: HealthResult = {
          ok: true,
          version: PROTOCOL_VERSION,
          pid: process.pid,
          uptimeMs: Date.now() - this.started,
          cgroups: this.cgroups,
        };
        return ok(result);
      }
      case 'exec':
        return ok(await this.exec(header.id, header, body));
      case 'writeFile': {
        const path = checkPath(header.path, this.options.workspaceRoot);
        const owner = header.owner ? resolveOwner(header.owner) : undefined;
        await makeParents(dirname(path), owner);
        await writeFile(path, body);
        if (header.mode !== undefined) await chmod(path, header.mode);
        if (owner) await chown(path, owner.uid, owner.gid);
        else await chown(path, 0, 0).catch(() => {});
        return ok();
      }
      case 'readFile': {
        const path = checkPath(header.path, this.options.workspaceRoot);
        const info = await stat(path);
        if (info.isDirectory()) throw new RequestFailure(`is a directory: ${path}`, 'EISDIR');
        return ok({ size: info.size }, await readFile(path));
      }
      case 'putTar': {
        const dest = checkPath(header.dest, this.options.workspaceRoot);
        const owner = header.owner ? resolveOwner(header.owner) : undefined;
        await makeParents(dest, owner);
        const result = await run('tar', ['-x', '--no-same-owner', '-C', dest, '-f', '-'], body);
        if (result.code !== 0) throw new RequestFailure(`tar -x failed: ${result.stderr.trim()}`);
        if (owner) {
          const chowned = await run('chown', ['-R', '-h', `${owner.uid}:${owner.gid}`, dest]);
          if (chowned.code !== 0) throw new RequestFailure(`chown failed: ${chowned.stderr.trim()}`);
        }
        return ok();
      }
      case 'getTar': {
        const path = checkPath(header.path, this.options.workspaceRoot);
        await lstat(path);
        const result = await run('tar', ['-c', '-C', dirname(path), '-f', '-', basename(path) || '.']);
        if (result.code !== 0) throw new RequestFailure(`tar -c failed: ${result.stderr.trim()}`);
        return ok({ size: result.stdout.length }, result.stdout);
      }
      case 'limits':
        await this.applyLimits(header);
        return ok();
      case 'sync':
        await run('sync', []);
        return ok();
      case 'clock': {
        const result = await run('date', ['-u', '-s', `@${(header.epochMs / 1000).toFixed(3)}`]);
        if (result.code !== 0) throw new RequestFailure(`date -s failed: ${result.stderr.trim()}`);
        if (header.entropy) await writeFile('/dev/urandom', Buffer.from(header.entropy, 'hex')).catch(() => {});
        return ok();
      }
      case 'network':
        await this.configureNetwork(header);
        return ok();
      case 'growDisk': {
        // Online grow of the mounted root filesystem to its block device's (new) size.
        const device = (await readFile('/proc/mounts', 'utf8'))
          .split('\n')
          .map((line) => line.split(' '))
          .find((fields) => fields[1] === '/' && fields[0]?.startsWith('/dev/'))?.[0];
        if (!device) throw new RequestFailure('cannot find the root block device in /proc/mounts', 'ENODEV');
        // After a live block_resize the kernel learns the new capacity asynchronously (config-change interrupt).
        if (header.minBytes) {
          const sizeFile = `/sys/class/block/${basename(device)}/size`;
          const deadline = Date.now() + 10_000;
          for (;;) {
            const sectors = Number((await readFile(sizeFile, 'utf8').catch(() => '0')).trim());
            if (sectors * 512 >= header.minBytes) break;
            if (Date.now() > deadline) {
              throw new RequestFailure(`${device} is ${sectors * 512} bytes, expected ${header.minBytes}`, 'ESIZE');
            }
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
        const result = await run('resize2fs', [device]);
        if (result.code !== 0) throw new RequestFailure(`resize2fs ${device} failed: ${result.stderr.trim()}`);
        return ok({ device });
      }
      default:
        throw new RequestFailure(`unknown op ${(header as { op: string }).op}`, 'EBADOP');
    }
  }

  /**
   * Configures the first non-loopback NIC with busybox `ip` (the rootfs is Debian minbase, without iproute2;
   * the image build puts a static busybox next to the agent). The MAC is set first: a VM restored from a
   * template snapshot starts with the template's MAC.
   */
  private async configureNetwork(params: NetworkParams): Promise<void> {
    const nics = (await readdir('/sys/class/net')).filter((name) => name !== 'lo').sort();
    const nic = nics[0];
    if (!nic) throw new RequestFailure('this VM has no network interface', 'ENONIC');
    const ip = async (...args: string[]) => {
      const result = await run(this.busybox, ['ip', ...args]);
      if (result.code !== 0) throw new RequestFailure(`ip ${args.join(' ')} failed: ${result.stderr.trim()}`);
    };
    await ip('link', 'set', 'dev', nic, 'down');
    await ip('link', 'set', 'dev', nic, 'address', params.mac);
    if (params.mtu) await ip('link', 'set', 'dev', nic, 'mtu', String(params.mtu));
    await ip('addr', 'flush', 'dev', nic);
    await ip('link', 'set', 'dev', nic, 'up');
    await ip('addr', 'add', params.ipv4, 'dev', nic);
    await ip('route', 'replace', 'default', 'via', params.gateway4, 'dev', nic);
    if (params.ipv6) {
      await ip('-6', 'addr', 'add', params.ipv6, 'dev', nic, 'nodad');
      if (params.gateway6) await ip('-6', 'route', 'replace', 'default', 'via', params.gateway6, 'dev', nic);
    }
    await writeFile('/etc/resolv.conf', params.dns.map((server) => `nameserver ${server}\n`).join(''));
  }

  private get busybox(): string {
    return this.options.busybox ?? '/opt/terrarium-agent/bin/busybox';
  }

  private async applyLimits(limits: LimitsParams): Promise<void> {
    if (!this.cgroups) throw new RequestFailure('cgroups are not available in this guest', 'ENOCGROUP');
    const dir = `${this.cgroupRoot}/sandbox`;
    await writeFile(`${dir}/memory.max`, limits.memoryBytes ? String(limits.memoryBytes) : 'max');
    await writeFile(`${dir}/memory.swap.max`, '0').catch(() => {});
    await writeFile(`${dir}/pids.max`, limits.pidsLimit ? String(limits.pidsLimit) : 'max');
    if (limits.cpuset) await writeFile(`${dir}/cpuset.cpus`, limits.cpuset);
    const period = 100_000;
    await writeFile(`${dir}/cpu.max`, limits.cpus ? `${Math.round(limits.cpus * period)} ${period}` : 'max').catch(
      (err: Error) => {
        if (limits.cpus) throw err;
      },
    );
  }

  private async exec(id: string, params: ExecParams, stdin: Buffer): Promise<ExecOutcome> {
    const started = Date.now();
    const maxOutput = params.maxOutputBytes ?? 1024 * 1024;
    const stdout = new TailBuffer(maxOutput);
    const stderr = new TailBuffer(maxOutput);
    const outcome = (extra: Partial<ExecOutcome>): ExecOutcome => ({
      exitCode: null,
      stdout: stdout.toBuffer().toString('utf8'),
      stderr: stderr.toBuffer().toString('utf8'),
      stdoutTruncated: stdout.truncated,
      stderrTruncated: stderr.truncated,
      timedOut: false,
      aborted: false,
      durationMs: Date.now() - started,
      ...extra,
    });
    if (this.cancelled.delete(id)) return outcome({ aborted: true });
    if (!Array.isArray(params.cmd) || params.cmd.length === 0) throw new RequestFailure('cmd must be non-empty');

    const account = resolveOwner(params.user ?? this.options.defaultUser ?? 'nobody');
    const env: Record<string, string> = {
      PATH: DEFAULT_ENV_PATH,
      HOME: account.home,
      USER: account.name,
      ...params.env,
    };
    let argv = params.cmd;
    if (account.uid !== process.getuid?.()) {
      argv = [
        'setpriv',
        `--reuid=${account.uid}`,
        `--regid=${account.gid}`,
        ...(account.name === String(account.uid) ? ['--clear-groups'] : ['--init-groups']),
        '--',
        ...argv,
      ];
    }
    let cgroup: string | undefined;
    if (this.cgroups) {
      cgroup = `${this.cgroupRoot}/sandbox/exec-${++this.execCounter}`;
      await mkdir(cgroup);
      // Join the cgroup before exec'ing the command, so every descendant (even setsid'd ones) is in it.
      argv = ['/bin/sh', '-c', 'echo $$ > "$0/cgroup.procs" || exit 125; exec "$@"', cgroup, ...argv];
    }

    return await new Promise<ExecOutcome>((resolve) => {
      let timedOut = false;
      let settled = false;
      const handle: RunningExec = {
        cgroup,
        cancelled: false,
        kill: () => {
          handle.cancelled = true;
          this.killExec(handle);
        },
      };
      let child: ChildProcess;
      try {
        child = spawn(argv[0]!, argv.slice(1), {
          cwd: params.cwd ?? '/',
          env,
          detached: true,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
      } catch (err) {
        resolve(outcome({ exitCode: 127, stderr: `${(err as Error).message}\n` }));
        return;
      }
      handle.child = child;
      this.running.set(id, handle);
      const timer =
        params.timeoutMs !== undefined
          ? setTimeout(() => {
              timedOut = true;
              this.killExec(handle);
            }, params.timeoutMs)
          : undefined;
      const onData = (stream: 'stdout' | 'stderr', tail: TailBuffer) => (chunk: Buffer) => {
        tail.push(chunk);
        if (params.stream) this.send({ header: { kind: 'event', id, stream }, body: chunk });
      };
      child.stdout!.on('data', onData('stdout', stdout));
      child.stderr!.on('data', onData('stderr', stderr));
      child.stdin!.on('error', () => {});
      child.stdin!.end(stdin);
      const done = async (exitCode: number | null, extraStderr = '') => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        this.running.delete(id);
        if (extraStderr) stderr.push(Buffer.from(extraStderr));
        if (cgroup) {
          // Kill stragglers (background processes that closed their output) and remove the cgroup.
          if (timedOut || handle.cancelled) this.killExec(handle);
          await writeFile(`${cgroup}/cgroup.kill`, '1').catch(() => {});
          for (let i = 0; i < 100; i++) {
            if (
              await rmdir(cgroup).then(
                () => true,
                () => false,
              )
            )
              break;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        resolve(outcome({ exitCode, timedOut, aborted: handle.cancelled && !timedOut }));
      };
      child.on('error', (err) => void done(127, `${err.message}\n`));
      child.on('close', (code, signal) => {
        const signum = signal ? (osConstants.signals as Record<string, number>)[signal] : undefined;
        void done(code ?? (signum !== undefined ? 128 + signum : null));
      });
    });
  }

  private killExec(handle: RunningExec): void {
    if (handle.cgroup) void writeFile(`${handle.cgroup}/cgroup.kill`, '1').catch(() => {});
    const pid = handle.child?.pid;
    if (pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }
}
