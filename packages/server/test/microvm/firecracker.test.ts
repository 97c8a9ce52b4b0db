/**
 * The Firecracker driver against a fake Firecracker API server on a unix socket (Firecracker itself is not
 * installed here and cannot be downloaded): what it sends for boot, pause, snapshot create/load, drive rescan;
 * how it reports API faults; the jailer command line; the vsock CONNECT handshake of the agent transport.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/sandbox/microvm/agent-client.js';
import {
  chooseHypervisor,
  FirecrackerApi,
  FirecrackerApiError,
  FirecrackerDriver,
} from '../../src/sandbox/microvm/firecracker.js';
import { encodeFrame, FrameDecoder } from '../../src/sandbox/microvm/protocol.js';

interface Seen {
  method: string;
  path: string;
  body: unknown;
}

let dir: string;
const servers: (Server | NetServer)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'terrarium-fc-'));
});
afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fake Firecracker API: records every request; `fail` maps "METHOD path" to a 400 fault message. */
async function fakeFirecracker(name: string, fail: Record<string, string> = {}) {
  const seen: Seen[] = [];
  const socketPath = join(dir, name);
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      seen.push({ method: req.method ?? '', path: req.url ?? '', body: text ? JSON.parse(text) : undefined });
      const fault = fail[`${req.method} ${req.url}`];
      if (fault) {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ fault_message: fault }));
      } else if (req.method === 'GET' && req.url === '/') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ id: 'vm', state: 'Not started', vmm_version: '1.10.1', app_name: 'Firecracker' }));
      } else {
        res.writeHead(204);
        res.end();
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { socketPath, seen };
}

describe('FirecrackerApi', () => {
  it('configures and boots a machine with the documented requests, in order', async () => {
    const fake = await fakeFirecracker('boot.sock');
    const api = new FirecrackerApi(fake.socketPath);
    expect((await api.instanceInfo()).vmm_version).toBe('1.10.1');
    await api.configure({
      vcpus: 2,
      memoryMb: 512,
      kernel: '/images/vmlinux',
      initrd: '/images/initramfs.img',
      bootArgs: 'console=ttyS0 reboot=k panic=1 pci=off',
      rootfs: '/vms/abc/rootfs.ext4',
      tap: { name: 'tr0123456789ab', mac: '02:74:0a:d5:00:05' },
      vsock: { cid: 7, udsPath: '/vms/abc/v.sock' },
      logPath: '/vms/abc/firecracker.log',
    });
    await api.start();
    expect(fake.seen.slice(1)).toEqual([
      {
        method: 'PUT',
        path: '/logger',
        body: { log_path: '/vms/abc/firecracker.log', level: 'Warning', show_level: true },
      },
      { method: 'PUT', path: '/machine-config', body: { vcpu_count: 2, mem_size_mib: 512, smt: false } },
      {
        method: 'PUT',
        path: '/boot-source',
        body: {
          kernel_image_path: '/images/vmlinux',
          boot_args: 'console=ttyS0 reboot=k panic=1 pci=off',
          initrd_path: '/images/initramfs.img',
        },
      },
      {
        method: 'PUT',
        path: '/drives/rootfs',
        body: { drive_id: 'rootfs', path_on_host: '/vms/abc/rootfs.ext4', is_root_device: true, is_read_only: false },
      },
      {
        method: 'PUT',
        path: '/network-interfaces/eth0',
        body: { iface_id: 'eth0', host_dev_name: 'tr0123456789ab', guest_mac: '02:74:0a:d5:00:05' },
      },
      { method: 'PUT', path: '/vsock', body: { guest_cid: 7, uds_path: '/vms/abc/v.sock' } },
      { method: 'PUT', path: '/actions', body: { action_type: 'InstanceStart' } },
    ]);
  });

  it('pauses, snapshots (full: memory + device state), resumes, loads on another tap, rescans the disk', async () => {
    const fake = await fakeFirecracker('snap.sock');
    const api = new FirecrackerApi(fake.socketPath);
    await api.pause();
    await api.createSnapshot('/snaps/s1/vm.state', '/snaps/s1/memory.bin');
    await api.resume();
    await api.loadSnapshot('/snaps/s1/vm.state', '/snaps/s1/memory.bin', { tap: 'tr111111111111' });
    await api.rescanRootfs('/vms/abc/rootfs.ext4');
    await api.sendCtrlAltDel();
    expect(fake.seen).toEqual([
      { method: 'PATCH', path: '/vm', body: { state: 'Paused' } },
      {
        method: 'PUT',
        path: '/snapshot/create',
        body: { snapshot_type: 'Full', snapshot_path: '/snaps/s1/vm.state', mem_file_path: '/snaps/s1/memory.bin' },
      },
      { method: 'PATCH', path: '/vm', body: { state: 'Resumed' } },
      {
        method: 'PUT',
        path: '/snapshot/load',
        body: {
          snapshot_path: '/snaps/s1/vm.state',
          mem_backend: { backend_type: 'File', backend_path: '/snaps/s1/memory.bin' },
          enable_diff_snapshots: false,
          resume_vm: true,
          network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tr111111111111' }],
        },
      },
      { method: 'PATCH', path: '/drives/rootfs', body: { drive_id: 'rootfs', path_on_host: '/vms/abc/rootfs.ext4' } },
      { method: 'PUT', path: '/actions', body: { action_type: 'SendCtrlAltDel' } },
    ]);
  });

  it("reports Firecracker's fault message and status", async () => {
    const fake = await fakeFirecracker('fault.sock', {
      'PUT /machine-config': 'The memory size (MiB) is invalid.',
    });
    const api = new FirecrackerApi(fake.socketPath);
    const error = await api.call('PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 0 }).catch((e) => e);
    expect(error).toBeInstanceOf(FirecrackerApiError);
    expect((error as FirecrackerApiError).status).toBe(400);
    expect((error as Error).message).toBe(
      'Firecracker PUT /machine-config failed (400): The memory size (MiB) is invalid.',
    );
  });
});

describe('FirecrackerDriver', () => {
  it('builds the direct and the jailer command lines; the chroot base must be absolute', () => {
    const direct = new FirecrackerDriver({ firecrackerBin: '/usr/local/bin/firecracker' });
    expect(direct.command('0123456789ab', '/vms/0123456789ab')).toEqual({
      cmd: '/usr/local/bin/firecracker',
      args: ['--id', '0123456789ab', '--api-sock', '/vms/0123456789ab/firecracker.sock'],
      apiSocket: '/vms/0123456789ab/firecracker.sock',
    });
    const jailed = new FirecrackerDriver({
      firecrackerBin: '/usr/local/bin/firecracker',
      jailer: { bin: '/usr/local/bin/jailer', chrootBaseDir: '/srv/jailer', uid: 1234, gid: 1235 },
    });
    expect(jailed.command('0123456789ab', '/vms/0123456789ab')).toEqual({
      cmd: '/usr/local/bin/jailer',
      args: [
        '--id',
        '0123456789ab',
        '--exec-file',
        '/usr/local/bin/firecracker',
        '--uid',
        '1234',
        '--gid',
        '1235',
        '--chroot-base-dir',
        '/srv/jailer',
        '--',
        '--api-sock',
        '/run/firecracker.socket',
      ],
      apiSocket: '/srv/jailer/firecracker/0123456789ab/root/run/firecracker.socket',
    });
    expect(() => jailed.command('../etc', '/vms/x')).toThrow(/bad VM id/);
    expect(
      () =>
        new FirecrackerDriver({
          firecrackerBin: '/usr/local/bin/firecracker',
          jailer: { bin: '/usr/local/bin/jailer', chrootBaseDir: 'jailer', uid: 1, gid: 1 },
        }),
    ).toThrow(/JAILER_CHROOT_BASE_DIR must be an absolute path/);
  });

  it('spawns a Firecracker binary, waits for its API socket and boots through it', async () => {
    // A stand-in "firecracker" executable: serves the fake API on the --api-sock path it is given.
    const fakeBin = join(dir, 'fake-firecracker.mjs');
    const log = join(dir, 'fake-firecracker.requests');
    await writeFile(
      fakeBin,
      `#!/usr/bin/env node
import { createServer } from 'node:http';
import { appendFileSync } from 'node:fs';
const sock = process.argv[process.argv.indexOf('--api-sock') + 1];
createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    appendFileSync(${JSON.stringify(log)}, req.method + ' ' + req.url + ' ' + body + '\\n');
    if (req.url === '/' && req.method === 'GET') { res.end(JSON.stringify({ id: 'x', state: 'Not started', vmm_version: 'fake' })); return; }
    res.writeHead(204); res.end();
  });
}).listen(sock);
setTimeout(() => process.exit(0), 5000);
`,
    );
    await chmod(fakeBin, 0o755);
    const driver = new FirecrackerDriver({ firecrackerBin: fakeBin });
    const vm = await driver.spawn('0123456789ab', dir);
    await driver.boot(vm, {
      vcpus: 1,
      memoryMb: 128,
      kernel: '/k',
      bootArgs: 'console=ttyS0',
      rootfs: '/r.ext4',
    });
    vm.child.kill('SIGKILL');
    const requests = (await readFile(log, 'utf8')).trim().split('\n');
    expect(requests[0]).toBe('GET / ');
    expect(requests.slice(-4).map((line) => line.split(' ').slice(0, 2).join(' '))).toEqual([
      'PUT /machine-config',
      'PUT /boot-source',
      'PUT /drives/rootfs',
      'PUT /actions',
    ]);
  });

  it('chooses QEMU when Firecracker is not installed, and refuses an explicit firecracker then', async () => {
    const driver = new FirecrackerDriver({ firecrackerBin: join(dir, 'no-such-firecracker') });
    const auto = await chooseHypervisor('auto', driver);
    expect(auto.hypervisor).toBe('qemu');
    expect(auto.reason).toMatch(/FIRECRACKER_BIN .* is not an executable file: using QEMU/);
    expect((await chooseHypervisor('qemu', driver)).hypervisor).toBe('qemu');
    await expect(chooseHypervisor('firecracker', driver)).rejects.toThrow(/Firecracker was asked for but cannot run/);
  });
});

describe('the agent transport over a Firecracker vsock socket', () => {
  it('does the CONNECT handshake, then speaks the agent protocol (frames right after OK are kept)', async () => {
    const socketPath = join(dir, 'v.sock');
    const connects: string[] = [];
    const server = createNetServer((socket) => {
      let handshaken = false;
      let buffered = '';
      const decoder = new FrameDecoder();
      socket.on('data', (chunk: Buffer) => {
        if (!handshaken) {
          buffered += chunk.toString();
          const newline = buffered.indexOf('\n');
          if (newline === -1) return;
          connects.push(buffered.slice(0, newline));
          handshaken = true;
          socket.write('OK 1073741824\n');
          return;
        }
        for (const frame of decoder.push(chunk)) {
          const header = frame.header as { id: string; op: string };
          socket.write(encodeFrame({ kind: 'response', id: header.id, ok: true, result: { op: header.op } }));
        }
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const client = new AgentClient(socketPath, { retryAttempts: 3, retryDelayMs: 10 }, 8080);
    const response = await client.request({ op: 'health' }, { timeoutMs: 5000 });
    expect((response.header as { result: unknown }).result).toEqual({ op: 'health' });
    expect(connects).toEqual(['CONNECT 8080']);
    client.close();
  });

  it('fails clearly when the guest refuses the port', async () => {
    const socketPath = join(dir, 'v-refuse.sock');
    const server = createNetServer((socket) => {
      socket.once('data', () => socket.end());
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const client = new AgentClient(socketPath, { retryAttempts: 2, retryDelayMs: 10 }, 8080);
    await expect(client.request({ op: 'health' }, { timeoutMs: 5000 })).rejects.toThrow(
      /vsock CONNECT 8080: connection closed/,
    );
    client.close();
  });
});

/**
 * The vsock transport's failure modes, against a fake Firecracker vsock socket: `behave(n)` decides what the n-th
 * connection does with its CONNECT line (answer OK, answer something else, close, or stay silent).
 */
describe('vsock transport: handshake failures, retries before the request reached the guest, never a re-run', () => {
  type Behaviour = 'ok' | 'silent' | 'close' | 'failed' | 'ok-then-drop';
  async function fakeVsock(name: string, behave: (connection: number) => Behaviour) {
    const socketPath = join(dir, name);
    const connects: string[] = [];
    const frames: { connection: number; id: string; op: string }[] = [];
    let connections = 0;
    const server = createNetServer((socket) => {
      const connection = ++connections;
      const behaviour = behave(connection);
      let buffered = '';
      const decoder = new FrameDecoder();
      let handshaken = false;
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        if (!handshaken) {
          buffered += chunk.toString();
          if (!buffered.includes('\n')) return;
          connects.push(buffered.trim());
          if (behaviour === 'silent') return;
          if (behaviour === 'close') return void socket.end();
          if (behaviour === 'failed') return void socket.end('failed\n');
          handshaken = true;
          socket.write('OK 1073741825\n');
          return;
        }
        for (const frame of decoder.push(chunk)) {
          const header = frame.header as { id: string; op: string };
          frames.push({ connection, id: header.id, op: header.op });
          // The request reached the guest; the connection breaks before the answer.
          if (behaviour === 'ok-then-drop') return void socket.destroy();
          socket.write(encodeFrame({ kind: 'response', id: header.id, ok: true, result: { connection } }));
        }
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return { socketPath, connects, frames };
  }

  it('times out a CONNECT that gets no answer (VSOCK_TIMEOUT_MS), after the configured attempts', async () => {
    const fake = await fakeVsock('v-silent.sock', () => 'silent');
    const client = new AgentClient(fake.socketPath, { retryAttempts: 2, retryDelayMs: 10, timeoutMs: 200 }, 8080);
    const started = Date.now();
    await expect(client.request({ op: 'health' })).rejects.toThrow(
      /cannot connect to the guest agent .*vsock CONNECT 8080: no answer within 200 ms/,
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect(fake.connects).toEqual(['CONNECT 8080', 'CONNECT 8080']);
    expect(fake.frames).toEqual([]);
    client.close();
  });

  it('reports a refusal ("failed" or a closed connection) and sends nothing', async () => {
    const failed = await fakeVsock('v-failed.sock', () => 'failed');
    const client = new AgentClient(failed.socketPath, { retryAttempts: 1, retryDelayMs: 10 }, 8080);
    await expect(client.request({ op: 'health' })).rejects.toThrow(/vsock CONNECT 8080 refused: "failed"/);
    expect(failed.frames).toEqual([]);
    client.close();
  });

  it('retries while the guest is not listening yet, then sends the request exactly once', async () => {
    const fake = await fakeVsock('v-late.sock', (n) => (n <= 2 ? 'close' : 'ok'));
    const client = new AgentClient(fake.socketPath, { retryAttempts: 5, retryDelayMs: 10 }, 8080);
    const response = await client.request({ op: 'exec', cmd: ['true'] }, { timeoutMs: 5000 });
    expect((response.header as { result: unknown }).result).toEqual({ connection: 3 });
    expect(fake.connects).toHaveLength(3);
    expect(fake.frames.map((f) => [f.connection, f.op])).toEqual([[3, 'exec']]);
    client.close();
  });

  it('after the request reached the guest, a reconnection re-sends it with the SAME id (the agent deduplicates)', async () => {
    const fake = await fakeVsock('v-drop.sock', (n) => (n === 1 ? 'ok-then-drop' : 'ok'));
    const client = new AgentClient(fake.socketPath, { retryAttempts: 5, retryDelayMs: 10 }, 8080);
    const response = await client.request({ op: 'exec', cmd: ['true'] }, { timeoutMs: 5000 });
    expect((response.header as { result: unknown }).result).toEqual({ connection: 2 });
    expect(fake.frames.map((f) => f.connection)).toEqual([1, 2]);
    // One request id: the guest agent answers the second copy from its cache (test/microvm/guest-agent.test.ts).
    expect(new Set(fake.frames.map((f) => f.id)).size).toBe(1);
    client.close();
  });
});
