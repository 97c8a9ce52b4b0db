/**
 * QemuMicrovmBackend: sandboxes as QEMU `-M microvm` virtual machines.
 *
 * Each VM gets a directory under STORAGE_ROOT/vms/<id>/ with its own copy of the image's root filesystem,
 * its state (state.json), the serial console log, the QMP socket and the guest agent's virtio-serial socket.
 * Everything inside the VM goes through the guest agent (packages/guest-agent) over that socket.
 * Accelerator: KVM when a probe guest really boots under it, else TCG (see qemu.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
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
import { SandboxBackendUnavailableError, SandboxError, SandboxUnsupportedError } from '../types.js';
import { AgentClient, type AgentTransportOptions, DEFAULT_TRANSPORT } from './agent-client.js';
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
  probeAccelerator,
  qemuArgs,
  type RootfsCloneMode,
  sandboxCpuset,
  shellQuote,
  type VmLaunch,
} from './qemu.js';
import { QmpClient } from './qmp.js';

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
  env: Record<string, string>;
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
}

const MiB = 1024 * 1024;
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

function pidAlive(pid: number, marker: string): Promise<boolean> {
  return readFile(`/proc/${pid}/cmdline`, 'utf8').then(
    (cmdline) => cmdline.includes(marker),
    () => false,
  );
}

export class QemuMicrovmBackend implements SandboxBackend {
  readonly name = 'microvm';
  private readonly storageRoot: string;
  private readonly imagesDir: string;
  private readonly qemuBinary: string;
  private readonly transport: Required<AgentTransportOptions>;
  private readonly clients = new Map<string, AgentClient>();
  private readonly children = new Map<string, ChildProcess>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private accel: Promise<{ accel: Accelerator; reason: string }> | undefined;
  /** The bridge VMs with a network are plumbed into (undefined: no networking configured). */
  readonly bridge: BridgeNetwork | undefined;
  private tscKhz: Promise<number | undefined> | undefined;

  constructor(private readonly options: QemuMicrovmBackendOptions) {
    this.storageRoot = options.storageRoot;
    this.imagesDir = options.imagesDir ?? join(options.storageRoot, 'images');
    this.qemuBinary = options.qemuBinary ?? 'qemu-system-x86_64';
    this.transport = { ...DEFAULT_TRANSPORT, ...options.transport };
    this.bridge = options.bridge ? new BridgeNetwork(options.bridge) : undefined;
  }

  private get vmsDir() {
    return join(this.storageRoot, 'vms');
  }

  private vmDir(id: string) {
    return join(this.vmsDir, id);
  }

  async ping(): Promise<void> {
    const version = await run(this.qemuBinary, ['--version']).catch(() => undefined);
    if (version?.code !== 0) {
      throw new SandboxBackendUnavailableError(
        `${this.qemuBinary} is not installed: run scripts/ensure-microvm-tools.sh (apt-get install qemu-system-x86)`,
      );
    }
    await mkdir(this.vmsDir, { recursive: true });
  }

  /** The accelerator VMs use (probed once per kernel; the result is cached under STORAGE_ROOT). */
  accelerator(image: GuestImage): Promise<{ accel: Accelerator; reason: string }> {
    const wanted = this.options.accel ?? 'auto';
    if (wanted !== 'auto') return Promise.resolve({ accel: wanted, reason: 'configured' });
    this.accel ??= probeAccelerator({
      qemuBinary: this.qemuBinary,
      image,
      cacheFile: join(this.storageRoot, 'accel-probe.json'),
      timeoutMs: this.options.kvmProbeTimeoutMs ?? 8000,
    });
    return this.accel;
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
      return image;
    } catch {
      return undefined;
    }
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

    if (this.options.templates !== false) {
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
    const dir = join(this.storageRoot, 'templates', `${key}-${accel}-${recipe}-${TEMPLATE_LAYOUT}`);
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
    try {
      return JSON.parse(await readFile(join(this.vmDir(id), 'state.json'), 'utf8')) as VmState;
    } catch {
      return undefined;
    }
  }

  private async saveState(state: VmState): Promise<void> {
    const path = join(this.vmDir(state.id), 'state.json');
    await writeFile(`${path}.tmp`, JSON.stringify(state, null, 2));
    await rename(`${path}.tmp`, path);
  }

  async qemuPid(id: string): Promise<number | undefined> {
    const text = await readFile(join(this.vmDir(id), 'qemu.pid'), 'utf8').catch(() => '');
    const pid = Number(text.trim());
    if (!pid) return undefined;
    return (await pidAlive(pid, this.vmDir(id))) ? pid : undefined;
  }

  async inspectVm(id: string): Promise<SandboxInfo> {
    const state = await this.loadState(id);
    if (!state) {
      return { id, name: '', state: 'missing', labels: {}, createdAt: new Date(0) };
    }
    const running: SandboxState = (await this.qemuPid(id)) !== undefined ? 'running' : 'stopped';
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
    const launch: VmLaunch = {
      accel,
      image,
      cpus: state.cpus,
      memoryMb: state.memoryMb,
      rootfs: join(dir, 'rootfs.ext4'),
      agentSocket: join(dir, 'agent.sock'),
      qmpSocket: join(dir, 'qmp.sock'),
      consoleLog: join(dir, 'console.log'),
      pidFile: join(dir, 'qemu.pid'),
      incomingFile: state.restoreFrom ? join(state.restoreFrom, 'memory.bin') : undefined,
      tscKhz: await this.tscKhz,
      nic: state.network
        ? { kind: 'tap', tap: state.network.tap, mac: state.network.mac }
        : state.nic
          ? { kind: 'isolated', mac: '02:74:00:00:00:01' }
          : undefined,
    };
    for (const file of [launch.agentSocket, launch.qmpSocket, launch.pidFile]) await rm(file, { force: true });
    // The tap and its rules exist before QEMU opens the tap (re-applied on every start: idempotent).
    if (state.network) {
      if (!this.bridge) throw new SandboxError(`VM ${state.id} is on a bridge but the backend has none configured`);
      await this.bridge.attach(state.id, state.network);
    }
    // Disk size. Cold boot: grow the (clean, unmounted) copy on the host before QEMU starts: resize2fs at
    // native speed. A restored guest has the disk mounted: it learns of the new size through block_resize and
    // grows the file system itself (below). A disk already as large as asked for needs nothing.
    const rootfsSize = (await stat(launch.rootfs)).size;
    if (state.diskBytes && !state.diskGrown && rootfsSize >= state.diskBytes) state.diskGrown = true;
    if (!launch.incomingFile && state.diskBytes && !state.diskGrown) {
      await truncate(launch.rootfs, state.diskBytes);
      const resized = await run('resize2fs', [launch.rootfs, `${Math.floor(state.diskBytes / 1024)}K`]);
      // Not clean (e.g. a disk that was mounted): leave it to the online grow after boot.
      if (resized.code === 0) state.diskGrown = true;
    }
    await this.saveState(state);
    const log = openSync(join(dir, 'qemu.log'), 'a');
    const child = spawn(this.qemuBinary, [...qemuArgs(launch), ...(this.options.extraQemuArgs ?? [])], {
      detached: true,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    child.unref();
    this.children.set(state.id, child);
    let exited = false;
    child.on('exit', () => {
      exited = true;
      if (this.children.get(state.id) === child) this.children.delete(state.id);
    });
    // QEMU creates its sockets at start-up (the agent's and the QMP one, in that order).
    const exists = (path: string) =>
      access(path).then(
        () => true,
        () => false,
      );
    for (let i = 0; i < 400 && !exited; i++) {
      if ((await exists(launch.agentSocket)) && (await exists(launch.qmpSocket))) break;
      await sleep(25);
    }
    const qemuLog = async () => (await readFile(join(dir, 'qemu.log'), 'utf8').catch(() => '')).trim().slice(-2000);
    if (exited) throw new SandboxError(`QEMU exited at start-up: ${await qemuLog()}`);
    if (launch.incomingFile) {
      const qmp = await QmpClient.connect(launch.qmpSocket);
      try {
        for (let i = 0; ; i++) {
          const status = (await qmp.execute('query-status')) as { status: string };
          if (status.status === 'paused' || status.status === 'postmigrate') break;
          if (status.status === 'running') break;
          if (i > 2000) throw new SandboxError(`restore did not finish: ${status.status}`);
          await sleep(5);
        }
        await qmp.execute('cont');
      } finally {
        qmp.close();
      }
      const suspended = state.restoreFrom === join(dir, 'suspend');
      if (suspended) await rm(join(dir, 'suspend'), { recursive: true, force: true });
      state.restoreFrom = undefined;
      await this.saveState(state);
    }
    const client = this.client(state.id);
    try {
      await client.waitHealthy(this.transport.healthTimeoutMs, () => !exited);
    } catch (err) {
      const consoleTail = (await readFile(launch.consoleLog, 'utf8').catch(() => '')).slice(-2000);
      await this.killVm(state.id);
      throw new SandboxError(
        `VM ${state.id} did not come up: ${(err as Error).message}\n${await qemuLog()}\n${consoleTail}`,
      );
    }
    if (launch.incomingFile) {
      // The restored guest's clock stands where it was at the snapshot.
      await client.request(
        { op: 'clock', epochMs: Date.now(), entropy: randomBytes(64).toString('hex') },
        { timeoutMs: this.transport.timeoutMs },
      );
    }
    if (state.diskBytes && !state.diskGrown) {
      if (launch.incomingFile && rootfsSize < state.diskBytes) {
        const qmp = await QmpClient.connect(launch.qmpSocket);
        try {
          await qmp.execute('block_resize', { device: 'root', size: state.diskBytes });
        } finally {
          qmp.close();
        }
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
      client = new AgentClient(join(this.vmDir(id), 'agent.sock'), this.transport);
      this.clients.set(id, client);
    }
    return client;
  }

  private dropClient(id: string) {
    this.clients.get(id)?.close();
    this.clients.delete(id);
  }

  async requireRunning(id: string): Promise<AgentClient> {
    if ((await this.qemuPid(id)) === undefined) {
      const state = await this.loadState(id);
      throw new SandboxError(state ? `sandbox ${id} is stopped` : `sandbox ${id} does not exist`);
    }
    return this.client(id);
  }

  async startVm(id: string): Promise<void> {
    const state = await this.loadState(id);
    if (!state) throw new SandboxError(`sandbox ${id} does not exist`);
    if ((await this.qemuPid(id)) !== undefined) return;
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
   * Stops a VM. The VM is suspended to disk (pause, migrate its memory and device state to a file in its
   * directory), so the next start is a restore (~0.2 s) rather than a boot; when that fails it is synced and
   * shut down, and the next start boots it again.
   */
  async stopVm(id: string, timeoutSeconds = 10): Promise<void> {
    const pid = await this.qemuPid(id);
    if (pid === undefined) return;
    const state = await this.loadState(id);
    // Flush the guest's page cache to the disk image (the ext4 journal covers the rest).
    await this.client(id)
      .request({ op: 'sync' }, { timeoutMs: timeoutSeconds * 1000 })
      .catch(() => {});
    this.dropClient(id);
    const suspendDir = join(this.vmDir(id), 'suspend');
    try {
      const qmp = await QmpClient.connect(join(this.vmDir(id), 'qmp.sock'), 2000);
      try {
        if (state) {
          try {
            await rm(suspendDir, { recursive: true, force: true });
            await mkdir(suspendDir);
            await qmp.execute('stop');
            await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(join(suspendDir, 'memory.bin'))}` });
            await qmp.waitForMigration(Math.max(timeoutSeconds * 1000, 30_000));
            state.restoreFrom = suspendDir;
            await this.saveState(state);
          } catch {
            await rm(suspendDir, { recursive: true, force: true });
            await qmp.execute('cont').catch(() => {});
          }
        }
        await qmp.execute('quit').catch(() => {});
      } finally {
        qmp.close();
      }
    } catch {
      // fall through to the kill below
    }
    await this.waitForExit(id, pid, timeoutSeconds * 1000);
  }

  private async waitForExit(id: string, pid: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!(await pidAlive(pid, this.vmDir(id)))) return;
      await sleep(20);
    }
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    for (let i = 0; i < 100 && (await pidAlive(pid, this.vmDir(id))); i++) await sleep(20);
  }

  private async killVm(id: string): Promise<void> {
    this.dropClient(id);
    const pid = await this.qemuPid(id);
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
    if (!state || (await this.qemuPid(id)) === undefined) throw new SandboxError(`sandbox ${id} is not running`);
    const started = Date.now();
    const snapshotId = `${id}-${Date.now().toString(36)}-${randomUUID().slice(0, 4)}`;
    const finalDir = options.dir ?? join(this.storageRoot, 'snapshots', snapshotId);
    // Written under a temporary name and renamed, so a half-written snapshot is never used.
    const dir = `${finalDir}.tmp-${randomUUID().slice(0, 8)}`;
    await mkdir(dir, { recursive: true });
    await this.client(id)
      .request({ op: 'sync' }, { timeoutMs: this.transport.timeoutMs })
      .catch(() => {});
    const qmp = await QmpClient.connect(join(this.vmDir(id), 'qmp.sock'));
    try {
      await qmp.execute('stop');
      await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(join(dir, 'memory.bin'))}` });
      await qmp.waitForMigration();
      await cloneRootfs(
        join(this.vmDir(id), 'rootfs.ext4'),
        join(dir, 'rootfs.ext4'),
        this.options.rootfsCloneMode ?? 'auto',
      );
      if (options.resume !== false) await qmp.execute('cont');
    } finally {
      qmp.close();
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
    };
    await writeFile(join(dir, 'snapshot.json'), JSON.stringify(snapshot, null, 2));
    await rm(finalDir, { recursive: true, force: true });
    await rename(dir, finalDir);
    return snapshot;
  }

  async deleteSnapshot(snapshot: MicrovmSnapshot): Promise<void> {
    await rm(snapshot.dir, { recursive: true, force: true });
  }

  async vmEnv(id: string): Promise<Record<string, string>> {
    return (await this.loadState(id))?.env ?? {};
  }

  get transportOptions(): Required<AgentTransportOptions> {
    return this.transport;
  }
}

export class MicrovmSandbox implements Sandbox {
  readonly backend = 'microvm';

  constructor(
    private readonly owner: QemuMicrovmBackend,
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

  /** Snapshot this VM (memory + disk); see QemuMicrovmBackend.restore. */
  snapshot(options: { resume?: boolean } = {}): Promise<MicrovmSnapshot> {
    return this.owner.withLock(this.id, () => this.owner.snapshotVm(this.id, options));
  }

  private binaryTimeout() {
    return this.owner.transportOptions.binaryTimeoutMs;
  }
}
