/** QEMU microvm command lines, the accelerator probe and root-filesystem cloning. */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile, stat, writeFile } from 'node:fs/promises';
import { AGENT_PORT_NAME } from './protocol.js';

export type Accelerator = 'kvm' | 'tcg';

export interface GuestImage {
  name: string;
  dir: string;
  kernel: string;
  initramfs: string;
  rootfs: string;
  /** The uncompressed ELF kernel Firecracker boots (vmlinux next to vmlinuz), when the image has one. */
  vmlinux?: string;
}

export interface VmLaunch {
  accel: Accelerator;
  image: GuestImage;
  /** vCPUs for the sandbox; under TCG the VM gets one more (vCPU 0) for the kernel and the guest agent. */
  cpus: number;
  memoryMb: number;
  rootfs: string;
  agentSocket: string;
  qmpSocket: string;
  consoleLog: string;
  pidFile: string;
  /** Restore from a migration stream file instead of booting. */
  incomingFile?: string;
  /** A command the stream is piped through on its way in (e.g. decryption); it reads the file on stdin. */
  incomingFilter?: string;
  tscKhz?: number;
  /**
   * The VM's NIC (virtio-net), or none. `tap`: plumbed into the backend's bridge. `isolated`: a NIC on a hub with
   * no other port (templates and snapshots of networked VMs need the same devices when they are restored).
   */
  nic?: { kind: 'tap'; tap: string; mac: string } | { kind: 'isolated'; mac: string };
}

/** The host TSC frequency in kHz, from /proc/cpuinfo (the TCG clock fix needs it on the kernel command line). */
export async function hostTscKhz(): Promise<number | undefined> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const match = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo);
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}

export function kernelCommandLine(accel: Accelerator, tscKhz?: number, cpus = 1): string {
  const args = ['console=ttyS0', 'panic=-1', 'quiet', 'loglevel=3', 'random.trust_cpu=on'];
  // Under TCG ~40% of boots hang at "Unable to calibrate against PIT" without these.
  if (accel === 'tcg' && tscKhz) args.push(`tsc_early_khz=${tscKhz}`, 'tsc=reliable');
  // Under TCG, timer ticks arrive late and tick-sampled CPU accounting charges them to whatever runs: the
  // sandbox's vCPUs are nohz_full (precise, context-switch-based accounting); vCPU 0 keeps housekeeping.
  if (accel === 'tcg') args.push(`nohz_full=${sandboxCpuset(accel, cpus)}`);
  return args.join(' ');
}

/** The vCPUs sandbox processes run on (cgroup cpuset), and the VM's total vCPU count. */
export function sandboxCpuset(accel: Accelerator, cpus: number): string {
  if (accel !== 'tcg') return cpus === 1 ? '0' : `0-${cpus - 1}`;
  return cpus === 1 ? '1' : `1-${cpus}`;
}

export function vmCpuCount(accel: Accelerator, cpus: number): number {
  return accel === 'tcg' ? cpus + 1 : cpus;
}

export function qemuArgs(launch: VmLaunch): string[] {
  const args = [
    '-M',
    'microvm,acpi=on',
    '-accel',
    launch.accel,
    '-cpu',
    launch.accel === 'kvm' ? 'host' : 'max',
    '-smp',
    String(vmCpuCount(launch.accel, launch.cpus)),
    '-m',
    `${launch.memoryMb}M`,
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-kernel',
    launch.image.kernel,
    '-initrd',
    launch.image.initramfs,
    '-append',
    kernelCommandLine(launch.accel, launch.tscKhz, launch.cpus),
    '-serial',
    `file:${launch.consoleLog}`,
    '-drive',
    `id=root,file=${launch.rootfs},format=raw,if=none,cache=writeback`,
    '-device',
    'virtio-blk-device,drive=root',
    '-device',
    'virtio-serial-device',
    '-chardev',
    `socket,id=agent,path=${launch.agentSocket},server=on,wait=off`,
    '-device',
    `virtserialport,chardev=agent,name=${AGENT_PORT_NAME}`,
    '-qmp',
    `unix:${launch.qmpSocket},server=on,wait=off`,
    '-pidfile',
    launch.pidFile,
  ];
  if (launch.nic) {
    // Last, so the NIC-less machine layout (and its templates) stays exactly as it was.
    const netdev =
      launch.nic.kind === 'tap'
        ? `tap,id=net0,ifname=${launch.nic.tap},script=no,downscript=no`
        : 'hubport,id=net0,hubid=0';
    args.push('-netdev', netdev, '-device', `virtio-net-device,netdev=net0,mac=${launch.nic.mac}`);
  }
  if (launch.incomingFile) {
    const file = shellQuote(launch.incomingFile);
    args.push('-incoming', launch.incomingFilter ? `exec:${launch.incomingFilter} -in ${file}` : `exec:cat ${file}`);
  }
  return args;
}

export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export interface ProbeOptions {
  qemuBinary: string;
  image: GuestImage;
  cacheFile: string;
  timeoutMs: number;
}

/**
 * Does a guest really boot under KVM here? /dev/kvm may exist yet be unusable (nested "kvm-pvm": a stock
 * kernel hangs). Boot the image's kernel + initramfs with `terrarium.probe` (the initramfs prints a marker
 * and powers off) under -accel kvm with a timeout; fall back to TCG. The answer is cached per kernel.
 */
export async function probeAccelerator(options: ProbeOptions): Promise<{ accel: Accelerator; reason: string }> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: '/dev/kvm is not available' };
  }
  const kernelStat = await stat(options.image.kernel);
  const key = `${options.image.kernel}:${kernelStat.size}:${kernelStat.mtimeMs}`;
  try {
    const cached = JSON.parse(await readFile(options.cacheFile, 'utf8')) as {
      key: string;
      accel: Accelerator;
      reason: string;
    };
    if (cached.key === key) return { accel: cached.accel, reason: `${cached.reason} (cached)` };
  } catch {
    // no cache yet
  }
  const started = Date.now();
  const ok = await new Promise<boolean>((resolve) => {
    const child = spawn(
      options.qemuBinary,
      [
        '-M',
        'microvm,acpi=on',
        '-accel',
        'kvm',
        '-cpu',
        'host',
        '-m',
        '256M',
        '-nodefaults',
        '-no-user-config',
        '-display',
        'none',
        '-no-reboot',
        '-kernel',
        options.image.kernel,
        '-initrd',
        options.image.initramfs,
        '-append',
        'console=ttyS0 panic=-1 terrarium.probe',
        '-serial',
        'stdio',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('TERRARIUM_PROBE_OK')) {
        clearTimeout(timer);
        child.kill('SIGKILL');
        resolve(true);
      }
    });
    child.on('error', () => resolve(false));
    child.on('close', () => {
      clearTimeout(timer);
      resolve(output.includes('TERRARIUM_PROBE_OK'));
    });
  });
  const result: { accel: Accelerator; reason: string } = ok
    ? { accel: 'kvm', reason: `a guest booted under KVM in ${Date.now() - started} ms` }
    : { accel: 'tcg', reason: `no guest boot under KVM within ${options.timeoutMs} ms: using TCG` };
  await writeFile(options.cacheFile, JSON.stringify({ key, ...result })).catch(() => {});
  return result;
}

export type RootfsCloneMode = 'auto' | 'reflink' | 'copy';

function cp(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('cp', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', (err) => resolve({ code: 1, stderr: err.message }));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
}

/** Makes the per-VM copy of the base root filesystem: a reflink where the filesystem supports it, else a sparse copy. */
export async function cloneRootfs(source: string, dest: string, mode: RootfsCloneMode): Promise<'reflink' | 'copy'> {
  if (mode !== 'copy') {
    const reflink = await cp(['--reflink=always', source, dest]);
    if (reflink.code === 0) return 'reflink';
    if (mode === 'reflink') {
      throw new Error(`ROOTFS_CLONE_MODE=reflink but the filesystem cannot reflink: ${reflink.stderr.trim()}`);
    }
  }
  const copy = await cp(['--sparse=always', source, dest]);
  if (copy.code !== 0) throw new Error(`copying the root filesystem failed: ${copy.stderr.trim()}`);
  return 'copy';
}
