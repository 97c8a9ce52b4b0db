/**
 * MicrovmBackend (exported as QemuMicrovmBackend too): sandboxes as microVMs, under QEMU `-M microvm` or
 * Firecracker, chosen by configuration (TERRARIUM_MICROVM_HYPERVISOR) and driven through one interface
 * (hypervisor.ts: qemu-hypervisor.ts, firecracker-hypervisor.ts).
 *
 * Each VM gets a directory under STORAGE_ROOT/vms/<id>/ with its own copy of the image's root filesystem,
 * its state (state.json; env values sealed, see state-crypto.ts), the serial console log and the hypervisor's
 * sockets and logs. Everything inside the VM goes through the guest agent (packages/guest-agent), over
 * virtio-serial (QEMU) or vsock (Firecracker).
 */

import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { access, mkdir, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type {
  ExecOptions,
  ExecResult,
  ImageBuildSpec,
  NetworkPolicy,
  ProgressListener,
  Sandbox,
  SandboxBackend,
  SandboxInfo,
  SandboxResources,
  SandboxSpec,
  SandboxState,
} from '../types.js';
import { SandboxError, SandboxUnsupportedError } from '../types.js';
import { AgentClient, type AgentTransportOptions, DEFAULT_TRANSPORT } from './agent-client.js';
import { chooseHypervisorSync, type FirecrackerOptions } from './firecracker.js';
import { FirecrackerHypervisor } from './firecracker-hypervisor.js';
import { type Hypervisor, type HypervisorKind, pidAlive, tail } from './hypervisor.js';
import {
  allocateIpv4,
  type BridgeConfig,
  BridgeNetwork,
  guestNetworkParams,
  type MicrovmNetworkAttachment,
  macFromIpv4,
  splitAllowList,
  tapName,
  type VmNetwork,
} from './network.js';
import type { ExecOutcome, Frame } from './protocol.js';
import {
  type Accelerator,
  cloneRootfs,
  type GuestImage,
  hostTscKhz,
  type RootfsCloneMode,
  sandboxCpuset,
} from './qemu.js';
import { QemuHypervisor } from './qemu-hypervisor.js';
import { deriveMemoryKey, openEnv, type SealedEnv, sealEnv } from './state-crypto.js';

export interface QemuMicrovmBackendOptions {
  /** STORAGE_ROOT: per-VM directories (vms/), snapshots (snapshots/) and the accelerator probe cache. */
  storageRoot: string;
  /** IMAGES_DIR: guest images, one directory per image name with vmlinuz, initramfs.img and rootfs.ext4. */
  imagesDir?: string;
  qemuBinary?: string;
  /** 'auto' probes KVM with a tiny guest and falls back to TCG. */
  accel?: 'auto' | Accelerator;
  kvmProbeTimeoutMs?: number;
  /** ROOTFS_CLONE_MODE */
  rootfsCloneMode?: RootfsCloneMode;
  transport?: AgentTransportOptions;
  /** VM memory when the spec has no memory limit (MiB). */
  defaultMemoryMb?: number;
  /** Memory the VM gets on top of the sandbox's memory limit, for the kernel and the guest agent (MiB). */
  memoryOverheadMb?: number;
  /** MAX_VMS, MAX_CPU, MAX_MEM_MB */
  maxVms?: number;
  maxCpu?: number;
  maxMemMb?: number;
  namePrefix?: string;
  /** Extra QEMU arguments for every VM (e.g. `-icount shift=auto`). */
  extraQemuArgs?: string[];
  /**
   * Create VMs by restoring a pre-booted template snapshot (one per image, CPU count and memory size; made on
   * first use) instead of booting them: ~1 s instead of ~4-15 s under TCG. ENABLE_SNAPSHOTS. Default true.
   */
  templates?: boolean;
  /**
   * The bridge VMs with a network are plumbed into (tap per VM, nftables egress rules). Unset: only network
   * "none" is supported (VMs have no NIC).
   */
  bridge?: BridgeConfig;
  /** MAX_ALLOW_IPS: most entries in one VM's egress allow-list. */
  maxAllowIps?: number;
  /**
   * Writable disk space of a VM whose spec has no `resources.diskBytes` (MiB): its root disk is the image's used
   * space plus this. Default 1024.
   */
  defaultDiskMb?: number;
  /**
   * TERRARIUM_MICROVM_HYPERVISOR: `auto` (default) = Firecracker when `firecracker.firecrackerBin` is executable
   * and /dev/kvm is usable, else QEMU. `firecracker` without a usable Firecracker fails at construction.
   */
  hypervisor?: 'auto' | HypervisorKind;
  /** FIRECRACKER_BIN and the jailer (JAILER_*; jailed when given). Unset: Firecracker is never chosen. */
  firecracker?: FirecrackerOptions;
  /** AGENT_VSOCK_PORT (Firecracker's guests). Default 8080. */
  agentVsockPort?: number;
  /**
   * The key that seals VM env values (secret env vars) in state.json (32 bytes; state-crypto.ts deriveStateKey).
   * Unset: a random key shared by this process's backends — a VM's env then cannot be read after a restart.
   */
  stateKey?: Buffer;
}

/**
 * What `create` accepts beyond the Sandbox interface's spec (backward compatible: both fields are optional).
 * `vmNetwork` places the VM on the backend's bridge at addresses the caller allocated (the manager allocates
 * them in its database); without it, a VM whose policy is not "none" gets the lowest free address of the
 * subnet, and a VM with policy "none" has no NIC at all.
 */
export interface MicrovmSandboxSpec extends SandboxSpec {
  vmNetwork?: MicrovmNetworkAttachment;
}

interface VmState {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  /** In memory only: on disk it is `envSealed` (older state files may hold `env` in clear; resealed on save). */
  env: Record<string, string>;
  /** Why `env` could not be read (the state was sealed with another key). */
  envError?: string;
  resources: SandboxResources;
  cpus: number;
  memoryMb: number;
  createdAt: string;
  cloneMode: 'reflink' | 'copy';
  /** Set while the VM must restore from a snapshot on its next start. */
  restoreFrom?: string;
  /** The VM's place on the bridge; undefined: not on the network. */
  network?: VmNetwork;
  /** The VM has a NIC (with `network` unset: an isolated one, from a networked template or snapshot). */
  nic?: boolean;
  /** Size the VM's root disk is grown to (bytes), and whether its file system was grown to it already. */
  diskBytes?: number;
  diskGrown?: boolean;
}

export interface MicrovmSnapshot {
  id: string;
  dir: string;
  image: string;
  cpus: number;
  memoryMb: number;
  sizeBytes: number;
  durationMs: number;
  /** The snapshotted machine had a NIC: VMs restored from it have one too (on the bridge or isolated). */
  nic?: boolean;
  /** Size of the disk image in the snapshot (bytes). */
  diskBytes?: number;
  /** The hypervisor whose format the memory + device state is in (absent: qemu). */
  hypervisor?: HypervisorKind;
}

/** What `/v1/health` and inspect hooks report about the engine's hypervisor (MicrovmBackend.hypervisorInfo). */
export interface HypervisorInfo {
  hypervisor: HypervisorKind;
  /** Why it was chosen (configured, or what `auto` found). */
  reason: string;
  /** How the host reaches the guest agent: vsock (Firecracker) or virtio-serial (QEMU; vsock's fallback). */
  transport: 'vsock' | 'virtio-serial';
  vsock: boolean;
  /** AGENT_VSOCK_PORT when the transport is vsock. */
  vsockPort?: number;
  jailed: boolean;
  /** Snapshots hold the disk, the memory and the device state under both hypervisors. */
  snapshotContents: 'disk+memory+devices';
}

const MiB = 1024 * 1024;
/** The state key of backends given none: one per process, so every backend instance of a process agrees. */
const PROCESS_STATE_KEY = randomBytes(32);
/** Bump when the VM's machine layout (QEMU devices, vCPU layout, kernel command line) changes. */
const TEMPLATE_LAYOUT = 'l2';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function run(cmd: string, args: string[], input?: Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', reject);
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? Buffer.alloc(0));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr }));
  });
}

const usedBytesCache = new Map<string, Promise<number>>();

/** Bytes in use in an ext4 image (block count minus free blocks, from its superblock), cached per file version. */
async function imageUsedBytes(rootfs: string): Promise<number> {
  const info = await stat(rootfs);
  const key = `${rootfs}:${info.size}:${info.mtimeMs}`;
  let pending = usedBytesCache.get(key);
  if (!pending) {
    pending = run('dumpe2fs', ['-h', rootfs]).then(({ code, stdout, stderr }) => {
      const text = stdout.toString();
      const field = (name: string) => Number(new RegExp(`^${name}:\\s*(\\d+)`, 'm').exec(text)?.[1]);
      const blocks = field('Block count');
      const free = field('Free blocks');
      const blockSize = field('Block size');
      if (code !== 0 || !blocks || Number.isNaN(free) || !blockSize) {
        throw new SandboxError(`cannot read the ext4 superblock of ${rootfs} (dumpe2fs: ${stderr.trim()})`);
      }
      return (blocks - free) * blockSize;
    });
    usedBytesCache.set(key, pending);
    pending.catch(() => usedBytesCache.delete(key));
  }
  return pending;
}

export class MicrovmBackend implements SandboxBackend {
  readonly name = 'microvm';
  private readonly storageRoot: string;
  private readonly imagesDir: string;
  private readonly transport: Required<AgentTransportOptions>;
  private readonly clients = new Map<string, AgentClient>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** The bridge VMs with a network are plumbed into (undefined: no networking configured). */
  readonly bridge: BridgeNetwork | undefined;
  private tscKhz: Promise<number | undefined> | undefined;
  /** The hypervisor every VM of this backend runs under (chosen once, at construction). */
  readonly hypervisor: Hypervisor;
  private readonly hypervisorReason: string;
  private readonly stateKey: Buffer;

  constructor(private readonly options: QemuMicrovmBackendOptions) {
    this.storageRoot = options.storageRoot;
    this.imagesDir = options.imagesDir ?? join(options.storageRoot, 'images');
    this.transport = { ...DEFAULT_TRANSPORT, ...options.transport };
    this.bridge = options.bridge ? new BridgeNetwork(options.bridge) : undefined;
    this.stateKey = options.stateKey ?? PROCESS_STATE_KEY;
    if (this.stateKey.length !== 32) throw new SandboxError('stateKey must be 32 bytes (deriveStateKey)');
    const choice = chooseHypervisorSync(options.hypervisor ?? 'auto', options.firecracker);
    this.hypervisorReason = choice.reason;
    this.hypervisor =
      choice.hypervisor === 'firecracker' && options.firecracker
        ? new FirecrackerHypervisor({ ...options.firecracker, agentVsockPort: options.agentVsockPort ?? 8080 })
        : new QemuHypervisor({
            qemuBinary: options.qemuBinary,
            accel: options.accel,
            kvmProbeTimeoutMs: options.kvmProbeTimeoutMs,
            probeCacheFile: join(options.storageRoot, 'accel-probe.json'),
            extraArgs: options.extraQemuArgs,
            memoryKey: deriveMemoryKey(this.stateKey),
          });
  }

  /** The hypervisor in use, why, and how the guest agent is reached (for /v1/health and inspect). */
  hypervisorInfo(): HypervisorInfo {
    const vsock = this.hypervisor.kind === 'firecracker';
    return {
      hypervisor: this.hypervisor.kind,
      reason: this.hypervisorReason,
      transport: vsock ? 'vsock' : 'virtio-serial',
      vsock,
      ...(vsock ? { vsockPort: this.options.agentVsockPort ?? 8080 } : {}),
      jailed: vsock && this.options.firecracker?.jailer !== undefined,
      snapshotContents: this.hypervisor.snapshotContents,
    };
  }

  private get vmsDir() {
    return join(this.storageRoot, 'vms');
  }

  private vmDir(id: string) {
    return join(this.vmsDir, id);
  }

  async ping(): Promise<void> {
    await this.hypervisor.ping();
    await mkdir(this.vmsDir, { recursive: true });
  }

  /** The accelerator VMs use (QEMU: probed once per kernel, cached under STORAGE_ROOT; Firecracker: KVM). */
  accelerator(image: GuestImage): Promise<{ accel: Accelerator; reason: string }> {
    return this.hypervisor.accelerator(image);
  }

  async resolveImage(name: string): Promise<GuestImage | undefined> {
    const dir = isAbsolute(name) ? name : join(this.imagesDir, name);
    if (!/^[\w./-]+$/.test(name) || (!isAbsolute(name) && name.includes('..'))) return undefined;
    const image = {
      name,
      dir,
      kernel: join(dir, 'vmlinuz'),
      initramfs: join(dir, 'initramfs.img'),
      rootfs: join(dir, 'rootfs.ext4'),
    };
    try {
      await Promise.all([access(image.kernel), access(image.initramfs), access(image.rootfs)]);
    } catch {
      return undefined;
    }
    // Firecracker boots an uncompressed ELF kernel (build-guest-image.sh extracts it from vmlinuz).
    const vmlinux = join(dir, 'vmlinux');
    return (await access(vmlinux).then(
      () => true,
      () => false,
    ))
      ? { ...image, vmlinux }
      : image;
  }

  async imageExists(image: string): Promise<boolean> {
    return (await this.resolveImage(image)) !== undefined;
  }

  async buildImage(_spec: ImageBuildSpec, _onProgress?: ProgressListener): Promise<string> {
    throw new SandboxUnsupportedError(
      'the microVM backend cannot build images yet: build a guest image with scripts/build-guest-image.sh',
    );
  }

  async create(spec: MicrovmSandboxSpec): Promise<Sandbox> {
    const resources = spec.resources ?? {};
    if (resources.gpus) throw new SandboxUnsupportedError('the microVM backend has no GPU support');
    const image = await this.resolveImage(spec.image);
    if (!image) throw new SandboxError(`no microVM image "${spec.image}" in ${this.imagesDir}`);
    this.checkPolicy(spec.network, spec.vmNetwork);
    const diskBytes = await this.diskSize(image, resources.diskBytes);

    const cpus = Math.max(1, Math.ceil(resources.cpus ?? 1));
    // The sandbox's memory limit is enforced by a cgroup inside the guest; the VM gets room for the kernel and
    // the guest agent on top of it, and at least the default size (so most VMs share one template).
    const defaultMemoryMb = this.options.defaultMemoryMb ?? 512;
    const memoryMb = resources.memoryBytes
      ? Math.max(defaultMemoryMb, Math.ceil(resources.memoryBytes / MiB) + (this.options.memoryOverheadMb ?? 256))
      : defaultMemoryMb;
    if (this.options.maxCpu !== undefined && cpus > this.options.maxCpu) {
      throw new SandboxError(`${cpus} CPUs exceed MAX_CPU=${this.options.maxCpu}`);
    }
    if (this.options.maxMemMb !== undefined && memoryMb > this.options.maxMemMb) {
      throw new SandboxError(`${memoryMb} MiB exceed MAX_MEM_MB=${this.options.maxMemMb}`);
    }
    await mkdir(this.vmsDir, { recursive: true });
    if (this.options.maxVms !== undefined && (await this.ids()).length >= this.options.maxVms) {
      throw new SandboxError(`MAX_VMS=${this.options.maxVms} VMs exist already`);
    }
    const nic = spec.network.kind !== 'none' || spec.vmNetwork !== undefined;

    // Firecracker NICs are taps on the bridge: a template cannot have an isolated one, so networked VMs boot.
    if (this.options.templates !== false && !(nic && this.hypervisor.kind === 'firecracker')) {
      // Two templates per shape at most: one with the default disk (most VMs: no resize at all), and one with the
      // bare image's disk for smaller disks; larger and smaller disks grow online from those after the restore.
      const defaultDisk = await this.diskSize(image, undefined);
      const templateDisk = diskBytes >= defaultDisk ? defaultDisk : (await stat(image.rootfs)).size;
      const template = await this.template(spec.image, cpus, memoryMb, nic, templateDisk);
      return this.restore(template, { ...spec, resources });
    }
    const { id, name, dir } = await this.allocateVm(spec.name);
    try {
      const cloneMode = await cloneRootfs(
        image.rootfs,
        join(dir, 'rootfs.ext4'),
        this.options.rootfsCloneMode ?? 'auto',
      );
      const state: VmState = {
        id,
        name,
        image: spec.image,
        labels: { ...spec.labels },
        env: { ...spec.env },
        resources,
        cpus,
        memoryMb,
        createdAt: new Date().toISOString(),
        cloneMode,
        nic,
        diskBytes,
      };
      await this.saveState(state);
      if (nic) state.network = await this.placeOnBridge(id, spec.network, spec.vmNetwork);
      await this.saveState(state);
      await this.boot(state);
      return new MicrovmSandbox(this, id, name);
    } catch (err) {
      await this.destroyVm(id);
      throw err;
    } finally {
      this.creating.delete(id);
    }
  }

  /** Refuses a policy the backend cannot apply, before anything is created. */
  private checkPolicy(policy: NetworkPolicy, attachment: MicrovmNetworkAttachment | undefined): void {
    if (policy.kind === 'none' && attachment === undefined) return;
    if (!this.bridge) {
      throw new SandboxUnsupportedError(
        `the microVM backend has no bridge configured, so only network "none" works (asked for "${policy.kind}")`,
      );
    }
    if (policy.kind === 'allow-list') {
      splitAllowList(policy.allow);
      const max = this.options.maxAllowIps;
      if (max !== undefined && policy.allow.length > max) {
        throw new SandboxError(`the allow-list has ${policy.allow.length} entries: MAX_ALLOW_IPS=${max}`);
      }
    }
  }

  /** The VM's place on the bridge: the caller's addresses, or the lowest address no VM of this backend uses. */
  private async placeOnBridge(
    id: string,
    policy: NetworkPolicy,
    attachment: MicrovmNetworkAttachment | undefined,
  ): Promise<VmNetwork> {
    const bridge = this.bridge;
    if (!bridge) throw new SandboxUnsupportedError('the microVM backend has no bridge configured');
    const network = await this.withLock('ip-allocation', async () => {
      let ipv4 = attachment?.ipv4;
      if (!ipv4) {
        const used: string[] = [];
        for (const other of await this.ids()) {
          const address = (await this.loadState(other))?.network?.ipv4;
          if (address) used.push(address);
        }
        ipv4 = allocateIpv4(bridge.config.ipv4, used);
        if (!ipv4) throw new SandboxError(`no free address left in the VM subnet ${bridge.subnet4}`);
      }
      const vm: VmNetwork = {
        tap: tapName(id),
        mac: (attachment?.mac ?? macFromIpv4(ipv4)).toLowerCase(),
        ipv4,
        ipv6: attachment?.ipv6,
        policy,
      };
      // Recorded in the VM's state inside the lock, so the next allocation sees it.
      const state = await this.loadState(id);
      if (state) await this.saveState({ ...state, network: vm });
      return vm;
    });
    await bridge.attach(id, network);
    return network;
  }

  /** Bytes the VM's root disk is grown to: the image's used space plus the writable space asked for. */
  private async diskSize(image: GuestImage, writableBytes: number | undefined): Promise<number> {
    const writable = writableBytes ?? (this.options.defaultDiskMb ?? 1024) * MiB;
    if (!Number.isFinite(writable) || writable <= 0) {
      throw new SandboxError(`resources.diskBytes must be a positive number of bytes (got ${writableBytes})`);
    }
    const used = await imageUsedBytes(image.rootfs);
    // Whole MiB, so QEMU's block_resize and resize2fs agree on the size.
    return Math.ceil((used + writable) / MiB) * MiB;
  }

  private readonly templates = new Map<string, Promise<MicrovmSnapshot>>();
  /** VMs being created right now (cleanupOrphans leaves them alone). */
  private readonly creating = new Set<string>();

  /**
   * The template snapshot for (image, cpus, memory, NIC, disk size): a VM booted once, its agent healthy, then
   * snapshotted. The disk size is part of it so that VMs restored from it need no resize (an online grow costs
   * ~1-3 s of guest time under TCG, and a disk cannot shrink); `diskBytes` defaults to the default disk size.
   */
  async template(
    image: string,
    cpus: number,
    memoryMb: number,
    nic = false,
    diskBytes?: number,
  ): Promise<MicrovmSnapshot> {
    const resolved = await this.resolveImage(image);
    if (!resolved) throw new SandboxError(`no microVM image "${image}" in ${this.imagesDir}`);
    const disk = diskBytes ?? (await this.diskSize(resolved, undefined));
    const key = `${image.replace(/[^\w.-]+/g, '_')}-${cpus}c-${memoryMb}m${nic ? '-nic' : ''}-${Math.ceil(disk / MiB)}d`;
    let pending = this.templates.get(key);
    if (!pending) {
      pending = this.makeTemplate(key, image, cpus, memoryMb, nic, disk);
      this.templates.set(key, pending);
      pending.catch(() => this.templates.delete(key));
    }
    return pending;
  }

  private async makeTemplate(
    key: string,
    image: string,
    cpus: number,
    memoryMb: number,
    nic: boolean,
    diskBytes: number,
  ): Promise<MicrovmSnapshot> {
    const resolved = await this.resolveImage(image);
    if (!resolved) throw new SandboxError(`no microVM image "${image}" in ${this.imagesDir}`);
    const manifest = await readFile(join(resolved.dir, 'manifest.json'), 'utf8').catch(() => '');
    const recipe = /"recipeHash":\s*"(\w+)"/.exec(manifest)?.[1] ?? (await stat(resolved.rootfs)).mtimeMs.toFixed(0);
    // The key covers everything the restored machine must match: image recipe, accelerator, vCPUs, memory,
    // and the layout version of the VM (TEMPLATE_LAYOUT) for changes of the QEMU command line.
    const { accel } = await this.accelerator(resolved);
    const hv = this.hypervisor.kind === 'qemu' ? '' : `-${this.hypervisor.kind}`;
    const dir = join(this.storageRoot, 'templates', `${key}-${accel}-${recipe}-${TEMPLATE_LAYOUT}${hv}`);
    try {
      return JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8')) as MicrovmSnapshot;
    } catch {
      // not made yet
    }
    const id = randomBytes(6).toString('hex');
    this.creating.add(id);
    await mkdir(this.vmDir(id), { recursive: true });
    try {
      const cloneMode = await cloneRootfs(
        resolved.rootfs,
        join(this.vmDir(id), 'rootfs.ext4'),
        this.options.rootfsCloneMode ?? 'auto',
      );
      await this.saveState({
        id,
        name: `template-${key}`,
        image,
        labels: { 'terrarium.microvm-template': key },
        env: {},
        resources: {},
        cpus,
        memoryMb,
        createdAt: new Date().toISOString(),
        cloneMode,
        nic,
        diskBytes,
      });
      await this.boot(await this.loadState(id).then((s) => s!));
      // Warm the page cache with what most execs load, so every VM restored from the template starts them fast.
      await this.client(id).request(
        { op: 'exec', cmd: ['sh', '-c', 'python3 -c pass; setpriv --help; id; true'], user: 'root' },
        { timeoutMs: this.transport.timeoutMs * 4 },
      );
      const snapshot = await this.snapshotVm(id, { resume: false, dir, template: true });
      return snapshot;
    } finally {
      await this.destroyVm(id);
      this.creating.delete(id);
    }
  }

  /** A fresh VM id, its unique display name (from the requested one) and its storage directory, created. */
  private async allocateVm(requestedName: string | undefined): Promise<{ id: string; name: string; dir: string }> {
    const id = randomBytes(6).toString('hex');
    this.creating.add(id);
    const base =
      (requestedName ?? 'vm')
        .toLowerCase()
        .replace(/[^a-z0-9_.-]+/g, '-')
        .replace(/^-+|-+$/g, '') || 'vm';
    const name = `${this.options.namePrefix ?? 'trm'}-${base.slice(0, 40)}-${id.slice(0, 6)}`;
    const dir = this.vmDir(id);
    await mkdir(dir, { recursive: true });
    return { id, name, dir };
  }

  /**
   * Creates a VM from a snapshot: clones the snapshot's disk and restores its memory (no boot). A network policy
   * other than "none" (or a `vmNetwork`) needs a snapshot of a VM with a NIC (templates of networked VMs have one).
   */
  async restore(
    snapshot: MicrovmSnapshot,
    spec: Omit<MicrovmSandboxSpec, 'image' | 'network'> & { network?: NetworkPolicy } = {},
  ): Promise<MicrovmSandbox> {
    const policy: NetworkPolicy = spec.network ?? { kind: 'none' };
    if ((snapshot.hypervisor ?? 'qemu') !== this.hypervisor.kind) {
      throw new SandboxUnsupportedError(
        `snapshot ${snapshot.id} was taken under ${snapshot.hypervisor ?? 'qemu'}: this engine runs ${this.hypervisor.kind}`,
      );
    }
    const wantsNetwork = policy.kind !== 'none' || spec.vmNetwork !== undefined;
    this.checkPolicy(policy, spec.vmNetwork);
    if (wantsNetwork && !snapshot.nic) {
      throw new SandboxUnsupportedError(
        `snapshot ${snapshot.id} is of a VM without a NIC: a VM restored from it cannot have network "${policy.kind}"`,
      );
    }
    const image = await this.resolveImage(snapshot.image);
    const diskBytes =
      spec.resources?.diskBytes !== undefined || snapshot.diskBytes === undefined
        ? image
          ? await this.diskSize(image, spec.resources?.diskBytes)
          : undefined
        : snapshot.diskBytes;
    const { id, name, dir } = await this.allocateVm(spec.name);
    try {
      const cloneMode = await cloneRootfs(
        join(snapshot.dir, 'rootfs.ext4'),
        join(dir, 'rootfs.ext4'),
        this.options.rootfsCloneMode ?? 'auto',
      );
      const state: VmState = {
        id,
        name,
        image: snapshot.image,
        labels: { ...spec.labels },
        env: { ...spec.env },
        resources: spec.resources ?? {},
        cpus: snapshot.cpus,
        memoryMb: snapshot.memoryMb,
        createdAt: new Date().toISOString(),
        cloneMode,
        restoreFrom: snapshot.dir,
        nic: snapshot.nic === true,
        diskBytes,
      };
      await this.saveState(state);
      if (wantsNetwork) state.network = await this.placeOnBridge(id, policy, spec.vmNetwork);
      await this.saveState(state);
      await this.boot(state);
      return new MicrovmSandbox(this, id, name);
    } catch (err) {
      await this.destroyVm(id);
      throw err;
    } finally {
      this.creating.delete(id);
    }
  }

  async get(id: string): Promise<Sandbox | undefined> {
    const state = await this.loadState(id);
    return state ? new MicrovmSandbox(this, state.id, state.name) : undefined;
  }

  async list(labels: Record<string, string>): Promise<SandboxInfo[]> {
    const infos: SandboxInfo[] = [];
    for (const id of await this.ids()) {
      const info = await this.inspectVm(id);
      if (info.state === 'missing') continue;
      if (Object.entries(labels).every(([k, v]) => info.labels[k] === v)) infos.push(info);
    }
    return infos;
  }

  private async ids(): Promise<string[]> {
    return readdir(this.vmsDir).catch(() => []);
  }

  // ---- per-VM operations (used by MicrovmSandbox) ----

  async loadState(id: string): Promise<VmState | undefined> {
    if (!/^[0-9a-f]{12}$/.test(id)) return undefined;
    let stored: VmState & { envSealed?: SealedEnv };
    try {
      stored = JSON.parse(await readFile(join(this.vmDir(id), 'state.json'), 'utf8')) as typeof stored;
    } catch {
      return undefined;
    }
    const { envSealed, ...state } = stored;
    if (envSealed) {
      try {
        state.env = openEnv(this.stateKey, id, envSealed);
      } catch (err) {
        state.env = {};
        state.envError = (err as Error).message;
      }
    }
    state.env ??= {};
    return state;
  }

  private async saveState(state: VmState): Promise<void> {
    const path = join(this.vmDir(state.id), 'state.json');
    const { env, envError, ...rest } = state;
    // The env (secret values) only ever reaches the disk sealed; an env that could not be opened is not
    // overwritten with an empty one (the right key may come back).
    let envSealed: SealedEnv | undefined;
    if (envError) {
      const previous = JSON.parse(await readFile(path, 'utf8').catch(() => '{}')) as { envSealed?: SealedEnv };
      envSealed = previous.envSealed;
    } else if (Object.keys(env).length > 0) {
      envSealed = sealEnv(this.stateKey, state.id, env);
    }
    await writeFile(`${path}.tmp`, JSON.stringify({ ...rest, ...(envSealed ? { envSealed } : {}) }, null, 2), {
      mode: 0o600,
    });
    await rename(`${path}.tmp`, path);
  }

  /** The pid of the VM's hypervisor process while it runs. */
  vmPid(id: string): Promise<number | undefined> {
    return this.hypervisor.pid(id, this.vmDir(id));
  }

  /** @deprecated the name from the QEMU-only engine: vmPid. */
  qemuPid(id: string): Promise<number | undefined> {
    return this.vmPid(id);
  }

  async inspectVm(id: string): Promise<SandboxInfo> {
    const state = await this.loadState(id);
    if (!state) {
      return { id, name: '', state: 'missing', labels: {}, createdAt: new Date(0) };
    }
    const running: SandboxState = (await this.vmPid(id)) !== undefined ? 'running' : 'stopped';
    return {
      id,
      name: state.name,
      state: running,
      labels: state.labels,
      createdAt: new Date(state.createdAt),
      ...(state.network ? { ipAddress: state.network.ipv4, hostAddress: this.bridge?.gateway4 } : {}),
    };
  }

  /** Serialises lifecycle operations on one VM. */
  withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    this.locks.set(
      id,
      next.catch(() => {}),
    );
    return next;
  }

  private async boot(state: VmState): Promise<void> {
    const dir = this.vmDir(state.id);
    const image = await this.resolveImage(state.image);
    if (!image) throw new SandboxError(`the image "${state.image}" of VM ${state.id} no longer exists`);
    const { accel } = await this.accelerator(image);
    this.tscKhz ??= hostTscKhz();
    const rootfs = join(dir, 'rootfs.ext4');
    const restoreFrom = state.restoreFrom;
    // The tap and its rules exist before the hypervisor opens the tap (re-applied on every start: idempotent).
    if (state.network) {
      if (!this.bridge) throw new SandboxError(`VM ${state.id} is on a bridge but the backend has none configured`);
      await this.bridge.attach(state.id, state.network);
    }
    // Disk size. Cold boot: grow the (clean, unmounted) copy on the host before the VM starts: resize2fs at
    // native speed. A restored guest has the disk mounted: it learns of the new size from the hypervisor and
    // grows the file system itself (below). A disk already as large as asked for needs nothing.
    const rootfsSize = (await stat(rootfs)).size;
    if (state.diskBytes && !state.diskGrown && rootfsSize >= state.diskBytes) state.diskGrown = true;
    if (!restoreFrom && state.diskBytes && !state.diskGrown) {
      await truncate(rootfs, state.diskBytes);
      const resized = await run('resize2fs', [rootfs, `${Math.floor(state.diskBytes / 1024)}K`]);
      // Not clean (e.g. a disk that was mounted): leave it to the online grow after boot.
      if (resized.code === 0) state.diskGrown = true;
    }
    await this.saveState(state);
    const vm = await this.hypervisor.launch({
      id: state.id,
      dir,
      image,
      accel,
      cpus: state.cpus,
      memoryMb: state.memoryMb,
      rootfs,
      tscKhz: await this.tscKhz,
      restoreFrom,
      nic: state.network
        ? { kind: 'tap', tap: state.network.tap, mac: state.network.mac }
        : state.nic
          ? { kind: 'isolated', mac: '02:74:00:00:00:01' }
          : undefined,
    });
    if (restoreFrom) {
      const suspended = restoreFrom === join(dir, 'suspend');
      if (suspended) await rm(join(dir, 'suspend'), { recursive: true, force: true });
      state.restoreFrom = undefined;
      await this.saveState(state);
    }
    const client = this.client(state.id);
    try {
      await client.waitHealthy(this.transport.healthTimeoutMs, () => vm.alive());
    } catch (err) {
      const consoleTail = await tail(join(dir, 'console.log'));
      const hypervisorLog = await this.hypervisor.log(state.id, dir);
      await this.killVm(state.id);
      throw new SandboxError(
        `VM ${state.id} did not come up: ${(err as Error).message}\n${hypervisorLog}\n${consoleTail}`,
      );
    }
    if (restoreFrom) {
      // The restored guest's clock stands where it was at the snapshot.
      await client.request(
        { op: 'clock', epochMs: Date.now(), entropy: randomBytes(64).toString('hex') },
        { timeoutMs: this.transport.timeoutMs },
      );
    }
    if (state.diskBytes && !state.diskGrown) {
      if (restoreFrom && rootfsSize < state.diskBytes) {
        await this.hypervisor.diskGrew(state.id, dir, state.diskBytes);
      }
      await client.request({ op: 'growDisk', minBytes: state.diskBytes }, { timeoutMs: this.transport.timeoutMs * 4 });
      state.diskGrown = true;
      await this.saveState(state);
    }
    if (state.network && this.bridge) {
      await client.request(
        { op: 'network', ...guestNetworkParams(this.bridge, state.network) },
        { timeoutMs: this.transport.timeoutMs },
      );
    }
    const { resources } = state;
    await client.request(
      {
        op: 'limits',
        memoryBytes: resources.memoryBytes,
        cpus: resources.cpus,
        pidsLimit: resources.pidsLimit,
        cpuset: sandboxCpuset(accel, state.cpus),
      },
      { timeoutMs: this.transport.timeoutMs },
    );
  }

  client(id: string): AgentClient {
    let client = this.clients.get(id);
    if (!client) {
      const endpoint = this.hypervisor.agentEndpoint(id, this.vmDir(id));
      client = new AgentClient(endpoint.socketPath, this.transport, endpoint.vsockPort);
      this.clients.set(id, client);
    }
    return client;
  }

  private dropClient(id: string) {
    this.clients.get(id)?.close();
    this.clients.delete(id);
  }

  async requireRunning(id: string): Promise<AgentClient> {
    if ((await this.vmPid(id)) === undefined) {
      const state = await this.loadState(id);
      throw new SandboxError(state ? `sandbox ${id} is stopped` : `sandbox ${id} does not exist`);
    }
    return this.client(id);
  }

  async startVm(id: string): Promise<void> {
    const state = await this.loadState(id);
    if (!state) throw new SandboxError(`sandbox ${id} does not exist`);
    if ((await this.vmPid(id)) !== undefined) return;
    this.dropClient(id);
    try {
      await this.boot(state);
    } catch (err) {
      if (!state.restoreFrom) throw err;
      // The suspended state could not be restored: boot the VM's disk afresh (processes are lost, files kept).
      await this.killVm(id);
      await rm(state.restoreFrom, { recursive: true, force: true });
      state.restoreFrom = undefined;
      await this.saveState(state);
      this.dropClient(id);
      await this.boot(state);
    }
  }

  /**
   * Stops a VM. The VM is suspended to disk (pause, write its memory and device state to a directory in its
   * storage directory), so the next start is a restore (~0.2 s under QEMU) rather than a boot; when that fails
   * it is shut down (QEMU: quit after a sync; Firecracker: SendCtrlAltDel), killed after the timeout, and the
   * next start boots it again.
   */
  async stopVm(id: string, timeoutSeconds = 10): Promise<void> {
    const pid = await this.vmPid(id);
    if (pid === undefined) return;
    const dir = this.vmDir(id);
    const state = await this.loadState(id);
    // Flush the guest's page cache to the disk image (the ext4 journal covers the rest).
    await this.client(id)
      .request({ op: 'sync' }, { timeoutMs: timeoutSeconds * 1000 })
      .catch(() => {});
    this.dropClient(id);
    const suspendDir = join(dir, 'suspend');
    let saved = false;
    if (state) {
      try {
        await rm(suspendDir, { recursive: true, force: true });
        await mkdir(suspendDir);
        await this.hypervisor.saveMemory(id, dir, suspendDir, {
          timeoutMs: Math.max(timeoutSeconds * 1000, 30_000),
          encrypt: true,
        });
        state.restoreFrom = suspendDir;
        await this.saveState(state);
        saved = true;
      } catch {
        await rm(suspendDir, { recursive: true, force: true });
        await this.hypervisor.resume(id, dir).catch(() => {});
      }
    }
    await this.hypervisor.requestExit(id, dir, !saved).catch(() => {});
    await this.waitForExit(id, pid, timeoutSeconds * 1000);
  }

  private async waitForExit(id: string, pid: number, timeoutMs: number): Promise<void> {
    const marker = this.hypervisor.processMarker(id, this.vmDir(id));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!(await pidAlive(pid, marker))) return;
      await sleep(20);
    }
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    for (let i = 0; i < 100 && (await pidAlive(pid, marker)); i++) await sleep(20);
  }

  private async killVm(id: string): Promise<void> {
    this.dropClient(id);
    const pid = await this.vmPid(id);
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      await this.waitForExit(id, pid, 5000);
    }
  }

  async destroyVm(id: string): Promise<void> {
    if (!/^[0-9a-f]{12}$/.test(id)) return;
    await this.killVm(id);
    // The tap and rules go whether or not the state says so (a crash may have left them half made).
    await this.bridge?.detach(id);
    await this.hypervisor.cleanup(id);
    await rm(this.vmDir(id), { recursive: true, force: true });
  }

  /**
   * The host network resources of VMs (taps, nftables rules) on this backend's bridge, for a reconciler: `list`
   * gives the VM ids that have any, `remove` deletes one VM's. Without a bridge, both are no-ops.
   */
  hostNetworkJanitor(): { list(): Promise<string[]>; remove(vmId: string): Promise<void> } {
    return {
      list: async () => (await this.bridge?.listPlumbedVmIds()) ?? [],
      remove: async (vmId) => {
        if (/^[0-9a-f]{12}$/.test(vmId)) await this.bridge?.detach(vmId);
      },
    };
  }

  /**
   * Removes what this backend left on the host for VMs that are not in `knownVmIds` (the manager's database):
   * their QEMU processes and storage directories under STORAGE_ROOT/vms, and their taps and nftables rules on
   * this backend's bridge. VMs being created by this process right now are left alone. Returns what it removed.
   */
  async cleanupOrphans(options: { knownVmIds: Iterable<string> }): Promise<{ vms: string[]; network: string[] }> {
    const known = new Set(options.knownVmIds);
    const skip = (id: string) => known.has(id) || this.creating.has(id);
    const vms: string[] = [];
    for (const id of await this.ids()) {
      if (!/^[0-9a-f]{12}$/.test(id) || skip(id)) continue;
      await this.withLock(id, () => this.destroyVm(id));
      vms.push(id);
    }
    // Jails of VMs whose storage directory is gone already (Firecracker with the jailer).
    for (const id of await this.hypervisor.leftovers()) {
      if (skip(id) || vms.includes(id)) continue;
      await this.withLock(id, () => this.destroyVm(id));
      vms.push(id);
    }
    const network: string[] = [];
    for (const id of (await this.bridge?.listPlumbedVmIds()) ?? []) {
      if (skip(id)) continue;
      await this.bridge?.detach(id);
      network.push(id);
    }
    return { vms, network };
  }

  /**
   * Snapshots a running VM: pause, migrate its memory and device state to a file, copy its disk, then
   * resume it (or leave it stopped). Restore with `restore(snapshot)`.
   */
  async snapshotVm(
    id: string,
    options: { resume?: boolean; dir?: string; template?: boolean } = {},
  ): Promise<MicrovmSnapshot> {
    const state = await this.loadState(id);
    if (!state || (await this.vmPid(id)) === undefined) throw new SandboxError(`sandbox ${id} is not running`);
    const started = Date.now();
    const snapshotId = `${id}-${Date.now().toString(36)}-${randomUUID().slice(0, 4)}`;
    const finalDir = options.dir ?? join(this.storageRoot, 'snapshots', snapshotId);
    // Written under a temporary name and renamed, so a half-written snapshot is never used.
    const dir = `${finalDir}.tmp-${randomUUID().slice(0, 8)}`;
    await mkdir(dir, { recursive: true });
    await this.client(id)
      .request({ op: 'sync' }, { timeoutMs: this.transport.timeoutMs })
      .catch(() => {});
    // Paused while the memory is written and the disk copied, so the two match.
    // Templates hold no secrets (made before any VM has an env) and are shared by every process of the server,
    // whatever its key: written in clear. Suspends and user snapshots are encrypted (QEMU).
    await this.hypervisor.saveMemory(id, this.vmDir(id), dir, { timeoutMs: 120_000, encrypt: !options.template });
    try {
      await cloneRootfs(
        join(this.vmDir(id), 'rootfs.ext4'),
        join(dir, 'rootfs.ext4'),
        this.options.rootfsCloneMode ?? 'auto',
      );
    } finally {
      if (options.resume !== false) await this.hypervisor.resume(id, this.vmDir(id));
    }
    const snapshot: MicrovmSnapshot = {
      id: snapshotId,
      dir: finalDir,
      image: state.image,
      cpus: state.cpus,
      memoryMb: state.memoryMb,
      sizeBytes: (await stat(join(dir, 'memory.bin'))).size,
      durationMs: Date.now() - started,
      nic: state.nic === true || state.network !== undefined,
      // A template's disk is the bare image: VMs restored from it are grown to their own size.
      diskBytes: options.template ? undefined : (await stat(join(dir, 'rootfs.ext4'))).size,
      hypervisor: this.hypervisor.kind,
    };
    await writeFile(join(dir, 'snapshot.json'), JSON.stringify(snapshot, null, 2));
    await rm(finalDir, { recursive: true, force: true });
    await rename(dir, finalDir);
    return snapshot;
  }

  async deleteSnapshot(snapshot: MicrovmSnapshot): Promise<void> {
    await rm(snapshot.dir, { recursive: true, force: true });
  }

  /** The VM's env (secret values: sealed at rest, see state-crypto.ts). */
  async vmEnv(id: string): Promise<Record<string, string>> {
    const state = await this.loadState(id);
    if (state?.envError) throw new SandboxError(state.envError);
    return state?.env ?? {};
  }

  get transportOptions(): Required<AgentTransportOptions> {
    return this.transport;
  }
}

/** The engine's name from when QEMU was its only hypervisor; existing callers keep compiling. */
export const QemuMicrovmBackend = MicrovmBackend;
export type QemuMicrovmBackend = MicrovmBackend;

export class MicrovmSandbox implements Sandbox {
  readonly backend = 'microvm';

  constructor(
    private readonly owner: MicrovmBackend,
    readonly id: string,
    readonly name: string,
  ) {}

  async exec(options: ExecOptions): Promise<ExecResult> {
    const started = Date.now();
    if (options.signal?.aborted) {
      return {
        exitCode: null,
        stdout: '',
        stderr: '',
        stdoutTruncated: false,
        stderrTruncated: false,
        timedOut: false,
        aborted: true,
        durationMs: 0,
      };
    }
    const client = await this.owner.requireRunning(this.id);
    const env = { ...(await this.owner.vmEnv(this.id)), ...options.env };
    const stdin =
      options.stdin === undefined
        ? undefined
        : Buffer.isBuffer(options.stdin)
          ? options.stdin
          : Buffer.from(options.stdin, 'utf8');
    const id = randomUUID();
    const onAbort = () => client.send({ op: 'cancel', target: id });
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const stream = options.onStdout !== undefined || options.onStderr !== undefined;
    const transport = this.owner.transportOptions;
    try {
      const response = await client.request(
        {
          op: 'exec',
          cmd: options.cmd,
          env,
          cwd: options.workdir,
          // The Sandbox contract: the image's user (root) unless asked otherwise.
          user: options.user ?? 'root',
          timeoutMs: options.timeoutMs,
          maxOutputBytes: options.maxOutputBytes,
          stream,
        },
        {
          id,
          body: stdin,
          // The transport timeout always exceeds the exec's own timeout.
          timeoutMs: options.timeoutMs !== undefined ? options.timeoutMs + transport.timeoutMs : undefined,
          onEvent: (frame: Frame) => {
            const header = frame.header as { stream?: string };
            if (header.stream === 'stdout') options.onStdout?.(frame.body);
            else if (header.stream === 'stderr') options.onStderr?.(frame.body);
          },
        },
      );
      const outcome = (response.header as { result: ExecOutcome }).result;
      return { ...outcome, durationMs: Math.max(outcome.durationMs, Date.now() - started) };
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  async writeFile(path: string, content: string | Buffer, options: { mode?: number; owner?: string } = {}) {
    const client = await this.owner.requireRunning(this.id);
    await client.request(
      { op: 'writeFile', path, mode: options.mode, owner: options.owner },
      { body: Buffer.isBuffer(content) ? content : Buffer.from(content, 'utf8'), timeoutMs: this.binaryTimeout() },
    );
  }

  async readFile(path: string): Promise<Buffer> {
    const client = await this.owner.requireRunning(this.id);
    return (await client.request({ op: 'readFile', path }, { timeoutMs: this.binaryTimeout() })).body;
  }

  async copyDirIn(hostDir: string, destDir: string, options: { owner?: string } = {}): Promise<void> {
    const client = await this.owner.requireRunning(this.id);
    const packed = await run('tar', ['-c', '-C', hostDir, '-f', '-', '.']);
    if (packed.code !== 0) throw new SandboxError(`packing ${hostDir} failed: ${packed.stderr.trim()}`);
    await client.request(
      { op: 'putTar', dest: destDir, owner: options.owner },
      { body: packed.stdout, timeoutMs: this.binaryTimeout() },
    );
  }

  async copyOut(path: string, hostDir: string): Promise<void> {
    const client = await this.owner.requireRunning(this.id);
    const archive = (await client.request({ op: 'getTar', path }, { timeoutMs: this.binaryTimeout() })).body;
    await mkdir(hostDir, { recursive: true });
    const unpacked = await run('tar', ['-x', '--no-same-owner', '-C', hostDir, '-f', '-'], archive);
    if (unpacked.code !== 0) throw new SandboxError(`unpacking into ${hostDir} failed: ${unpacked.stderr.trim()}`);
  }

  inspect(): Promise<SandboxInfo> {
    return this.owner.inspectVm(this.id);
  }

  start(): Promise<void> {
    return this.owner.withLock(this.id, () => this.owner.startVm(this.id));
  }

  stop(options: { timeoutSeconds?: number } = {}): Promise<void> {
    return this.owner.withLock(this.id, () => this.owner.stopVm(this.id, options.timeoutSeconds));
  }

  destroy(): Promise<void> {
    return this.owner.withLock(this.id, () => this.owner.destroyVm(this.id));
  }

  /** Snapshot this VM (memory + device state + disk); see MicrovmBackend.restore. */
  snapshot(options: { resume?: boolean } = {}): Promise<MicrovmSnapshot> {
    return this.owner.withLock(this.id, () => this.owner.snapshotVm(this.id, options));
  }

  private binaryTimeout() {
    return this.owner.transportOptions.binaryTimeoutMs;
  }
}
