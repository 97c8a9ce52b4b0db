/**
 * Entry point of the guest agent inside a microVM: serves the framed protocol on the virtio-serial port
 * named org.terrarium.agent (QEMU; the init script passes its device in TERRARIUM_AGENT_DEVICE), or on vsock
 * port TERRARIUM_AGENT_VSOCK_PORT (Firecracker; the init script takes it from the kernel command line): Node has
 * no AF_VSOCK, so the agent serves a unix socket and a small Python bridge (vsock-bridge.py) splices each vsock
 * connection to it. With TERRARIUM_AGENT_SOCKET set, it listens on that unix socket only (tests on the host).
 */
import { spawn } from 'node:child_process';
import { open, read, rmSync, write } from 'node:fs';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { GuestAgent } from './agent.js';

const readAsync = promisify(read);
const writeAsync = promisify(write);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function serveDevice(device: string, agent: GuestAgent): Promise<void> {
  const fd = await promisify(open)(device, 'r+');
  let writing = Promise.resolve();
  const connection = agent.connect((data) => {
    // Writes block while the host is disconnected; they are serialised so frames never interleave.
    writing = writing.then(async () => {
      let offset = 0;
      while (offset < data.length) {
        const { bytesWritten } = await writeAsync(fd, data, offset, data.length - offset, null);
        offset += bytesWritten;
      }
    });
    writing.catch((err: unknown) => console.error('guest-agent: write failed', err));
  });
  const buffer = Buffer.alloc(256 * 1024);
  for (;;) {
    const { bytesRead } = await readAsync(fd, buffer, 0, buffer.length, null).catch((err: unknown) => {
      console.error('guest-agent: read failed', err);
      return { bytesRead: 0 };
    });
    if (bytesRead === 0) {
      // The host side is not connected: drop any partial frame and wait for it.
      connection.reset();
      await sleep(50);
      continue;
    }
    connection.receive(Buffer.from(buffer.subarray(0, bytesRead)));
  }
}

function serveSocket(path: string, agent: GuestAgent): void {
  createServer((socket) => {
    const connection = agent.connect((data) => socket.write(data));
    socket.on('data', (chunk) => connection.receive(chunk));
    socket.on('error', () => {});
    socket.on('close', () => connection.close());
  }).listen(path);
}

/** Keeps the vsock bridge running (restarted a second after it exits). */
function runVsockBridge(port: string, socketPath: string): void {
  const bridge = new URL('../../vsock-bridge.py', import.meta.url).pathname;
  const start = () => {
    const child = spawn('/usr/bin/python3', [bridge, port, socketPath], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code) => {
      console.error(`guest-agent: the vsock bridge exited (${code}); restarting`);
      setTimeout(start, 1000);
    });
  };
  start();
}

const agent = new GuestAgent({
  useCgroups: process.env.TERRARIUM_AGENT_NO_CGROUPS !== '1',
  workspaceRoot: process.env.TERRARIUM_AGENT_WORKSPACE || undefined,
});
await agent.init();
const device = process.env.TERRARIUM_AGENT_DEVICE;
const socket = process.env.TERRARIUM_AGENT_SOCKET;
const vsockPort = process.env.TERRARIUM_AGENT_VSOCK_PORT;
if (socket) {
  serveSocket(socket, agent);
} else if (vsockPort && /^\d+$/.test(vsockPort)) {
  const path = '/run/terrarium-agent.sock';
  rmSync(path, { force: true });
  serveSocket(path, agent);
  runVsockBridge(vsockPort, path);
  console.error(`guest-agent: serving on vsock port ${vsockPort}`);
} else if (device) {
  console.error(`guest-agent: serving on ${device}`);
  await serveDevice(device, agent);
} else {
  console.error(
    'guest-agent: set TERRARIUM_AGENT_DEVICE (virtio-serial port), TERRARIUM_AGENT_VSOCK_PORT or TERRARIUM_AGENT_SOCKET',
  );
  process.exit(2);
}
