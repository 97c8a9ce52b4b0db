/**
 * The one interface the microVM engine (backend.ts) drives hypervisors through. Everything that differs between
 * QEMU `-M microvm` (qemu-hypervisor.ts) and Firecracker (firecracker-hypervisor.ts) lives behind it: starting a VM
 * (cold boot or restore of a memory snapshot), its process, pausing it and writing its memory + device state,
 * telling the guest its disk grew, asking it to exit, and where the guest agent is reached. The backend keeps
 * what is common: per-VM storage, state, disks, the bridge, templates, the guest agent protocol.
 */
import { readFile } from 'node:fs/promises';
import type { AgentTransportKind } from './agent-client.js';
import type { Accelerator, GuestImage } from './qemu.js';

export type HypervisorKind = 'qemu' | 'firecracker';

/** The VM's NIC: on the bridge (a tap), isolated (a NIC with no peer: templates of networked VMs), or none. */
export type VmNic = { kind: 'tap'; tap: string; mac: string } | { kind: 'isolated'; mac: string };

export interface LaunchSpec {
  /** The VM id (12 hex digits) and its storage directory (STORAGE_ROOT/vms/<id>). */
  id: string;
  dir: string;
  image: GuestImage;
  accel: Accelerator;
  /** vCPUs for the sandbox (the hypervisor may add a housekeeping vCPU, see sandboxCpuset). */
  cpus: number;
  memoryMb: number;
  /** The VM's root disk (a file in `dir`). */
  rootfs: string;
  nic?: VmNic;
  tscKhz?: number;
  /** Restore the memory + device state saved in this directory (by saveMemory) instead of booting. */
  restoreFrom?: string;
}

/** A started VM: running (booted, or restored and resumed). */
export interface LaunchedVm {
  /** False once the hypervisor process has exited. */
  alive(): boolean;
}

/** Where the guest agent of a VM is reached from the host. */
export interface AgentEndpoint {
  kind: AgentTransportKind;
  /** A unix socket: QEMU's virtio-serial chardev, or Firecracker's vsock socket. */
  socketPath: string;
  /** With vsock: the guest port (AGENT_VSOCK_PORT), reached with `CONNECT <port>` on `socketPath`. */
  vsockPort?: number;
}

export interface Hypervisor {
  readonly kind: HypervisorKind;
  /** What a snapshot of this hypervisor holds (both hold disk + memory + device state). */
  readonly snapshotContents: 'disk+memory+devices';
  /** Throws SandboxBackendUnavailableError (saying what to install) when the hypervisor cannot run here. */
  ping(): Promise<void>;
  /** The accelerator VMs run under, and why. */
  accelerator(image: GuestImage): Promise<{ accel: Accelerator; reason: string }>;
  /** Starts the VM; resolves once its process runs (and a restore was loaded and resumed). Throws with its log. */
  launch(spec: LaunchSpec): Promise<LaunchedVm>;
  /** The pid of the VM's hypervisor process while it runs. */
  pid(id: string, dir: string): Promise<number | undefined>;
  /** A string in /proc/<pid>/cmdline that identifies the VM's process (pid reuse guard). */
  processMarker(id: string, dir: string): string;
  agentEndpoint(id: string, dir: string): AgentEndpoint;
  /**
   * Pauses the VM and writes its memory + device state into `target` (a directory that exists), in this
   * hypervisor's format; the VM stays paused. `restoreFrom: target` in a later launch resumes it. `encrypt`: the
   * memory (which holds whatever the guest holds, secrets included) is written encrypted where the hypervisor
   * allows it (QEMU: yes; Firecracker maps its memory file, so no).
   */
  saveMemory(id: string, dir: string, target: string, options: { timeoutMs: number; encrypt: boolean }): Promise<void>;
  /** Resumes a paused VM. */
  resume(id: string, dir: string): Promise<void>;
  /** Tells the running guest that its disk file grew to `bytes` (it grows its file system itself). */
  diskGrew(id: string, dir: string, bytes: number): Promise<void>;
  /**
   * Asks the hypervisor process to exit. `graceful`: the guest shuts down first (its disk is synced already);
   * else the process exits at once (the VM is paused and saved, or being destroyed). The caller kills it after
   * its timeout.
   */
  requestExit(id: string, dir: string, graceful: boolean): Promise<void>;
  /** Removes what the VM left outside its storage directory (Firecracker's jail). */
  cleanup(id: string): Promise<void>;
  /** Ids of VMs that left something outside STORAGE_ROOT/vms (for cleanupOrphans). */
  leftovers(): Promise<string[]>;
  /** The hypervisor's own log of a VM (not the guest's console), last `maxBytes`. */
  log(id: string, dir: string, maxBytes?: number): Promise<string>;
}

export async function tail(path: string, maxBytes = 2000): Promise<string> {
  return (await readFile(path, 'utf8').catch(() => '')).trim().slice(-maxBytes);
}

export function pidAlive(pid: number, marker: string): Promise<boolean> {
  return readFile(`/proc/${pid}/cmdline`, 'utf8').then(
    (cmdline) => cmdline.includes(marker),
    () => false,
  );
}
