/**
 * The host <-> guest-agent wire protocol, shared by the host (QemuMicrovmBackend) and the guest agent
 * (packages/guest-agent compiles this file into its own build). Node built-ins only.
 *
 * A frame is: MAGIC (4 bytes "TRM1") | header length (u32 BE) | body length (u32 BE) | header (UTF-8 JSON) | body.
 * The body carries binary payloads (stdin, file content, tar archives, output chunks) without base64.
 * The decoder resynchronises on MAGIC, so a frame cut short by a host disconnect does not poison the stream.
 */

export const PROTOCOL_VERSION = 1;
/** Name of the virtio-serial port the guest agent listens on (`-device virtserialport,name=...`). */
export const AGENT_PORT_NAME = 'org.terrarium.agent';
const MAGIC = Buffer.from('TRM1', 'ascii');
const PREFIX_BYTES = 12;
export const MAX_HEADER_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024;

export interface ExecParams {
  cmd: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** User name or numeric uid. The agent's default, when absent, is the unprivileged `nobody`. */
  user?: string;
  timeoutMs?: number;
  maxOutputBytes?: number;
  /** Send stdout/stderr chunks as `event` frames while the process runs. */
  stream?: boolean;
}

export interface ExecOutcome {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  timedOut: boolean;
  aborted: boolean;
  durationMs: number;
}

export interface LimitsParams {
  /** cgroup v2 memory.max for everything the agent runs, in bytes. */
  memoryBytes?: number;
  /** CPU quota in CPUs (cpu.max). */
  cpus?: number;
  /** pids.max. */
  pidsLimit?: number;
  /** cpuset.cpus: the vCPUs sandbox processes may use (e.g. "1-2", leaving vCPU 0 to the agent and kernel). */
  cpuset?: string;
}

/** The guest's network configuration (the host allocated the address and owns the bridge and the tap). */
export interface NetworkParams {
  /** MAC address of the VM's NIC: a VM restored from a template keeps the template's MAC until it is set. */
  mac: string;
  /** IPv4 address with prefix length, e.g. "10.213.0.5/24". */
  ipv4: string;
  gateway4: string;
  /** IPv6 address with prefix length, when the bridge has an IPv6 subnet. */
  ipv6?: string;
  gateway6?: string;
  /** Name servers written to /etc/resolv.conf. */
  dns: string[];
  mtu?: number;
}

export type RequestHeader = { kind: 'request'; id: string } & (
  | { op: 'health' }
  | ({ op: 'exec' } & ExecParams)
  | { op: 'cancel'; target: string }
  | { op: 'writeFile'; path: string; mode?: number; owner?: string }
  | { op: 'readFile'; path: string }
  | { op: 'putTar'; dest: string; owner?: string }
  | { op: 'getTar'; path: string }
  | ({ op: 'limits' } & LimitsParams)
  | { op: 'sync' }
  /** Set the guest's wall clock (after a restore from a snapshot, the guest's clock is where it was). */
  /** ...and mix fresh host entropy (hex) into its pool: VMs restored from one template share their RNG state. */
  | { op: 'clock'; epochMs: number; entropy?: string }
  /** Configure the VM's NIC (address, route, name servers); idempotent. */
  | ({ op: 'network' } & NetworkParams)
  /** Grow the root filesystem to the size of its (just enlarged) block device; idempotent. */
  | { op: 'growDisk'; minBytes?: number }
);
export type RequestOp = RequestHeader['op'];

export interface HealthResult {
  ok: true;
  version: number;
  pid: number;
  uptimeMs: number;
  cgroups: boolean;
}

export type EventHeader = { kind: 'event'; id: string; stream: 'stdout' | 'stderr' };
export type ResponseHeader =
  | { kind: 'response'; id: string; ok: true; result?: unknown }
  | { kind: 'response'; id: string; ok: false; error: { message: string; code?: string } };
export type FrameHeader = RequestHeader | EventHeader | ResponseHeader;

export interface Frame<H = FrameHeader> {
  header: H;
  body: Buffer;
}

const EMPTY = Buffer.alloc(0);

export function encodeFrame(header: FrameHeader, body: Buffer = EMPTY): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(PREFIX_BYTES);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32BE(json.length, 4);
  prefix.writeUInt32BE(body.length, 8);
  return Buffer.concat([prefix, json, body]);
}

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/** Incremental frame decoder. Feed it chunks; it returns the complete frames. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Total size of the frame being received, once its prefix is known: no copying until it is complete. */
  private need: number | undefined;
  /** Bytes skipped while resynchronising (for diagnostics). */
  skippedBytes = 0;

  constructor(private readonly maxBodyBytes = DEFAULT_MAX_BODY_BYTES) {}

  reset(): void {
    this.chunks = [];
    this.buffered = 0;
    this.need = undefined;
  }

  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < PREFIX_BYTES) return frames;
      if (this.need !== undefined && this.buffered < this.need) return frames;
      let data = this.flatten();
      const at = data.indexOf(MAGIC);
      if (at !== 0) {
        // Resynchronise: drop everything before the next MAGIC (keep a possible partial MAGIC at the end).
        const drop = at < 0 ? Math.max(0, data.length - (MAGIC.length - 1)) : at;
        this.skippedBytes += drop;
        data = data.subarray(drop);
        this.set(data);
        if (at < 0) return frames;
        continue;
      }
      const headerLength = data.readUInt32BE(4);
      const bodyLength = data.readUInt32BE(8);
      if (headerLength > MAX_HEADER_BYTES || bodyLength > this.maxBodyBytes) {
        this.skip(data, 1);
        continue;
      }
      const total = PREFIX_BYTES + headerLength + bodyLength;
      if (data.length < total) {
        this.need = total;
        return frames;
      }
      let header: FrameHeader;
      try {
        header = JSON.parse(data.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength).toString('utf8')) as FrameHeader;
      } catch {
        this.skip(data, 1);
        continue;
      }
      const body = Buffer.from(data.subarray(PREFIX_BYTES + headerLength, total));
      this.set(data.subarray(total));
      frames.push({ header, body });
    }
  }

  private skip(data: Buffer, n: number) {
    this.skippedBytes += n;
    this.set(data.subarray(n));
  }

  private flatten(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private set(data: Buffer) {
    this.chunks = data.length > 0 ? [data] : [];
    this.buffered = data.length;
    this.need = undefined;
  }
}

/** Keeps the last `limit` bytes of a stream and whether anything was dropped. */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.limit && this.chunks.length > 0) {
      const first = this.chunks[0]!;
      const excess = this.size - this.limit;
      this.truncated = true;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
    }
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
