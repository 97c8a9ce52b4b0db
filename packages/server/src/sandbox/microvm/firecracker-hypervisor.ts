/**
 * Firecracker behind the Hypervisor interface, run directly or through the jailer (JAILER_BIN).
 *
 * Paths: Firecracker is always given paths RELATIVE to its working directory (`rootfs.ext4`, `v.sock`, ...). Run
 * directly, its working directory is the VM's storage directory; jailed, it is the jail's root. A snapshot records
 * the paths of the disk and the vsock socket, so relative paths are what lets a snapshot be loaded by another VM
 * (its own directory or jail) — Firecracker has no override for drive paths on load.
 *
 * Jailed, the VM's files are hard-linked into the jail (<JAILER_CHROOT_BASE_DIR>/<exec name>/<id>/root) and
 * owned by JAILER_UID/JAILER_GID: the disk must be the same inode as the one in the VM's directory (the
 * engine grows, clones and snapshots that one), so the jail must be on the same file system as STORAGE_ROOT.
 * Kernel and initramfs may be copied.
 *
 * The guest agent is reached over vsock: Firecracker exposes the guest's vsock as a unix socket (`v.sock`); the
 * host writes `CONNECT <AGENT_VSOCK_PORT>` on it (agent-client.ts). Guest CID: every VM has CID 3. Firecracker's
 * vsock is emulated per VM behind its own unix socket (no host-wide vhost-vsock CID space), so CIDs need not be
 * unique, and a VM restored from a snapshot keeps its CID anyway.
 *
 * NOT RUN AGAINST A REAL FIRECRACKER on the machine this was written on (no Firecracker package, no download); see
 * docs/microvm.md and test/microvm/firecracker*.test.ts (a stand-in binary serving Firecracker's API).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chown, copyFile, link, mkdir, readdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SandboxBackendUnavailableError, SandboxError } from '../types.js';
import { FirecrackerApi, FirecrackerDriver, type FirecrackerMachine, type FirecrackerOptions } from './firecracker.js';
import { type AgentEndpoint, type Hypervisor, type LaunchedVm, type LaunchSpec, pidAlive, tail } from './hypervisor.js';
import { type Accelerator, type GuestImage, kernelCommandLine } from './qemu.js';

export interface FirecrackerHypervisorOptions extends FirecrackerOptions {
  /** AGENT_VSOCK_PORT: the guest port the guest agent listens on (its init script reads it from the cmdline). */
  agentVsockPort: number;
  /** How long to wait for the API socket to answer after start (ms). */
  apiTimeoutMs?: number;
}

/** The guest's CID (see the file comment). */
export const GUEST_CID = 3;
/** Names inside Firecracker's working directory (the VM's directory, or the jail's root). */
const ROOTFS = 'rootfs.ext4';
const VSOCK = 'v.sock';
const SNAPSHOT_STATE = 'vm.state';
const SNAPSHOT_MEMORY = 'memory.bin';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The kernel command line for Firecracker: the same conventions as QEMU's (kvm), plus what Firecracker needs. */
export function firecrackerBootArgs(vsockPort: number): string {
  // reboot=k: the guest's reboot ends Firecracker (no ACPI); pci=off: virtio-mmio only (Firecracker adds the
  // virtio_mmio.device= entries itself); terrarium.vsock_port: the guest init starts the agent's vsock listener.
  return `${kernelCommandLine('kvm')} reboot=k pci=off terrarium.vsock_port=${vsockPort}`;
}

export class FirecrackerHypervisor implements Hypervisor {
  readonly kind = 'firecracker' as const;
  readonly snapshotContents = 'disk+memory+devices' as const;
  readonly driver: FirecrackerDriver;
  private readonly children = new Map<string, ChildProcess>();

  constructor(readonly options: FirecrackerHypervisorOptions) {
    this.driver = new FirecrackerDriver(options);
  }

  async ping(): Promise<void> {
    const available = await this.driver.available();
    if (!available.ok) throw new SandboxBackendUnavailableError(`Firecracker cannot run here: ${available.reason}`);
  }

  async accelerator(_image: GuestImage): Promise<{ accel: Accelerator; reason: string }> {
    return { accel: 'kvm', reason: 'Firecracker always runs under KVM' };
  }

  /** Firecracker's working directory for the VM: the jail's root, or the VM's directory. */
  workDir(id: string, dir: string): string {
    return this.driver.chrootRoot(id) ?? dir;
  }

  agentEndpoint(id: string, dir: string): AgentEndpoint {
    return { kind: 'vsock', socketPath: join(this.workDir(id, dir), VSOCK), vsockPort: this.options.agentVsockPort };
  }

  processMarker(id: string): string {
    // `--id <id>` is on the command line of Firecracker (the jailer execs it with that argument too).
    return id;
  }

  async pid(id: string, dir: string): Promise<number | undefined> {
    const pid = Number((await readFile(join(dir, 'firecracker.pid'), 'utf8').catch(() => '')).trim());
    if (!pid) return undefined;
    return (await pidAlive(pid, this.processMarker(id))) ? pid : undefined;
  }

  private api(id: string, dir: string): FirecrackerApi {
    return new FirecrackerApi(this.driver.command(id, dir).apiSocket);
  }

  /** Puts a host file into Firecracker's working directory under `name` (hard link; copy when `copyOk`). */
  private async stage(id: string, dir: string, hostPath: string, name: string, copyOk: boolean): Promise<void> {
    const jailer = this.options.jailer;
    if (!jailer) {
      if (hostPath !== join(dir, name)) {
        await rm(join(dir, name), { force: true });
        await link(hostPath, join(dir, name)).catch(() => copyFile(hostPath, join(dir, name)));
      }
      return;
    }
    const root = this.workDir(id, dir);
    const target = join(root, name);
    await mkdir(root, { recursive: true });
    await rm(target, { force: true });
    try {
      await link(hostPath, target);
    } catch (err) {
      if (!copyOk) {
        throw new SandboxError(
          `cannot hard-link ${hostPath} into the jail ${root} (${(err as NodeJS.ErrnoException).code}): ` +
            'JAILER_CHROOT_BASE_DIR must be on the same file system as STORAGE_ROOT',
        );
      }
      await copyFile(hostPath, target);
    }
    await chown(target, jailer.uid, jailer.gid);
  }

  /** The machine as Firecracker is told about it (relative paths, see the file comment). */
  machine(spec: LaunchSpec, kernelName: string, initrdName: string | undefined): FirecrackerMachine {
    return {
      vcpus: spec.cpus,
      memoryMb: spec.memoryMb,
      kernel: kernelName,
      initrd: initrdName,
      bootArgs: firecrackerBootArgs(this.options.agentVsockPort),
      rootfs: ROOTFS,
      tap: spec.nic?.kind === 'tap' ? { name: spec.nic.tap, mac: spec.nic.mac } : undefined,
      vsock: { cid: GUEST_CID, udsPath: VSOCK },
      logPath: 'firecracker.log',
      metricsPath: 'firecracker.metrics',
    };
  }

  async launch(spec: LaunchSpec): Promise<LaunchedVm> {
    if (spec.nic?.kind === 'isolated') {
      // Firecracker's NICs are taps only; an "isolated" NIC would need a tap on no bridge (not made here).
      throw new SandboxError('the Firecracker engine has no isolated NICs: give the VM a network or none');
    }
    const kernel = spec.image.vmlinux;
    if (!kernel) {
      throw new SandboxError(
        `image ${spec.image.name} has no vmlinux (Firecracker boots an uncompressed ELF kernel): rebuild it with ` +
          'scripts/build-guest-image.sh',
      );
    }
    const { id, dir } = spec;
    const work = this.workDir(id, dir);
    const jailer = this.options.jailer;
    if (jailer) {
      // A stale jail (a crash, or the last run of this VM) would make the jailer refuse to start.
      await rm(join(work, '..'), { recursive: true, force: true });
    }
    await rm(join(dir, 'firecracker.sock'), { force: true });
    await rm(join(work, VSOCK), { force: true });
    // Firecracker's logger and metrics files must exist before it is told about them; they live in the VM's
    // directory (hard-linked into the jail) so they survive the jail's removal.
    for (const name of ['firecracker.log', 'firecracker.metrics']) {
      await writeFile(join(dir, name), '', { flag: 'a' });
    }
    const { cmd, args } = this.driver.command(id, dir);
    // Firecracker writes the guest's serial console to its stdout.
    const consoleFd = openSync(join(dir, 'console.log'), 'a');
    const child = spawn(cmd, args, { cwd: dir, detached: true, stdio: ['ignore', consoleFd, consoleFd] });
    closeSync(consoleFd);
    child.unref();
    let exited = false;
    child.on('exit', () => {
      exited = true;
      if (this.children.get(id) === child) this.children.delete(id);
    });
    child.on('error', () => {
      exited = true;
    });
    this.children.set(id, child);
    if (child.pid) await writeFile(join(dir, 'firecracker.pid'), String(child.pid));
    const fail = async (message: string): Promise<never> => {
      child.kill('SIGKILL');
      throw new SandboxError(
        `${message}\n${await tail(join(dir, 'firecracker.log'))}\n${await tail(join(dir, 'console.log'))}`,
      );
    };
    const api = this.api(id, dir);
    const deadline = Date.now() + (this.options.apiTimeoutMs ?? 5000);
    for (;;) {
      if (exited) await fail(`${basename(cmd)} exited at start-up`);
      try {
        await api.instanceInfo();
        break;
      } catch (err) {
        if (Date.now() > deadline) await fail(`Firecracker's API socket did not answer: ${(err as Error).message}`);
        await sleep(20);
      }
    }
    try {
      await this.stage(id, dir, spec.rootfs, ROOTFS, false);
      for (const name of ['firecracker.log', 'firecracker.metrics'])
        await this.stage(id, dir, join(dir, name), name, false);
      if (spec.restoreFrom) {
        await this.stage(id, dir, join(spec.restoreFrom, SNAPSHOT_STATE), 'restore.state', true);
        await this.stage(id, dir, join(spec.restoreFrom, SNAPSHOT_MEMORY), 'restore.mem', true);
        await api.call('PUT', '/logger', { log_path: 'firecracker.log', level: 'Warning', show_level: true });
        await api.call('PUT', '/metrics', { metrics_path: 'firecracker.metrics' });
        await api.loadSnapshot('restore.state', 'restore.mem', {
          resume: true,
          tap: spec.nic?.kind === 'tap' ? spec.nic.tap : undefined,
        });
      } else {
        await this.stage(id, dir, kernel, 'vmlinux', true);
        if (spec.image.initramfs) await this.stage(id, dir, spec.image.initramfs, 'initramfs.img', true);
        await api.configure(this.machine(spec, 'vmlinux', spec.image.initramfs ? 'initramfs.img' : undefined));
        await api.start();
      }
    } catch (err) {
      await fail(`Firecracker could not ${spec.restoreFrom ? 'restore' : 'boot'} VM ${id}: ${(err as Error).message}`);
    }
    return { alive: () => !exited };
  }

  async saveMemory(id: string, dir: string, target: string, _options: { timeoutMs: number }): Promise<void> {
    const api = this.api(id, dir);
    const work = this.workDir(id, dir);
    await api.pause();
    await rm(join(work, 'out.state'), { force: true });
    await rm(join(work, 'out.mem'), { force: true });
    await api.createSnapshot('out.state', 'out.mem');
    // Out of the working directory (the jail is removed with the VM) into the snapshot's directory.
    for (const [from, to] of [
      ['out.state', SNAPSHOT_STATE],
      ['out.mem', SNAPSHOT_MEMORY],
    ] as const) {
      await rename(join(work, from), join(target, to)).catch(async () => {
        await copyFile(join(work, from), join(target, to));
        await rm(join(work, from), { force: true });
      });
    }
  }

  async resume(id: string, dir: string): Promise<void> {
    await this.api(id, dir).resume();
  }

  async diskGrew(id: string, dir: string, bytes: number): Promise<void> {
    // Unlike QEMU's block_resize, Firecracker does not resize the file: grow it, then Firecracker re-reads the
    // size of the file behind the drive and tells the guest (which grows its file system).
    await truncate(join(dir, ROOTFS), bytes);
    await this.api(id, dir).rescanRootfs(ROOTFS);
  }

  async requestExit(id: string, dir: string, graceful: boolean): Promise<void> {
    if (graceful) {
      // An i8042 reset: the guest shuts down (reboot=k) and Firecracker exits; the caller kills it after its timeout.
      await this.api(id, dir)
        .sendCtrlAltDel()
        .catch(() => {});
      return;
    }
    const pid = await this.pid(id, dir);
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }

  async cleanup(id: string): Promise<void> {
    const root = this.driver.chrootRoot(id);
    if (root && /^[0-9a-f]{12}$/.test(id)) await rm(join(root, '..'), { recursive: true, force: true });
  }

  async leftovers(): Promise<string[]> {
    const jailer = this.options.jailer;
    if (!jailer) return [];
    const base = join(jailer.chrootBaseDir, basename(this.options.firecrackerBin));
    const entries = await readdir(base).catch(() => [] as string[]);
    return entries.filter((name) => /^[0-9a-f]{12}$/.test(name));
  }

  log(_id: string, dir: string, maxBytes?: number): Promise<string> {
    return tail(join(dir, 'firecracker.log'), maxBytes);
  }
}
