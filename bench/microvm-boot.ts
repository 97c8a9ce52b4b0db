/**
 * Prints microVM figures (QEMU microvm; TCG where KVM does not boot a guest):
 *  - cold boot: create() with templates off, until the guest agent answers health, median;
 *  - create from the pre-booted template snapshot (the default create path), median;
 *  - exec round trip (`true`), median;
 *  - snapshot (pause + migrate to file + disk copy) and restore-until-agent-answers, medians;
 *  - with --network: create on a bridge of its own (tap + nftables allow-list + guest network set-up), and
 *    create with a 4 GiB writable disk (block_resize + online resize2fs) against the default 1 GiB, medians.
 *
 *   scripts/build-guest-image.sh /var/lib/terrarium-microvm/images/bookworm
 *   npx tsx bench/microvm-boot.ts [--runs 5] [--storage /var/lib/terrarium-microvm/bench]
 *     [--hypervisor auto|qemu|firecracker --firecracker-bin /usr/local/bin/firecracker [--jailer-bin ...]]
 */
import { rm } from 'node:fs/promises';
import { type MicrovmSandbox, QemuMicrovmBackend } from '../packages/server/src/sandbox/microvm/backend.js';

const arg = (name: string) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const runs = Number(arg('--runs')) || 5;
const root = arg('--root') ?? '/var/lib/terrarium-microvm';
const storageRoot = arg('--storage') ?? `${root}/bench`;
const image = arg('--image') ?? 'bookworm';
const network = process.argv.includes('--network');
// A cold boot under TCG on a loaded host can take more than the default minute.
const transport = { healthTimeoutMs: Number(arg('--health-timeout-ms')) || 240_000 };
// The hypervisor (default: QEMU, as before); Firecracker where it is installed and KVM boots guests.
const hypervisor = (arg('--hypervisor') ?? 'qemu') as 'auto' | 'qemu' | 'firecracker';
const firecrackerBin = arg('--firecracker-bin') ?? '/usr/local/bin/firecracker';
const jailerBin = arg('--jailer-bin');
const engine = {
  hypervisor,
  firecracker: {
    firecrackerBin,
    ...(jailerBin ? { jailer: { bin: jailerBin, chrootBaseDir: `${storageRoot}/jailer`, uid: 1234, gid: 1234 } } : {}),
  },
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
const fmt = (ms: number) => `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;

const backend = new QemuMicrovmBackend({
  storageRoot,
  imagesDir: `${root}/images`,
  accel: 'auto',
  transport,
  ...engine,
});
const coldBackend = new QemuMicrovmBackend({
  ...engine,
  storageRoot,
  imagesDir: `${root}/images`,
  accel: 'auto',
  templates: false,
  transport,
});
await backend.ping();
const resolved = await backend.resolveImage(image);
if (!resolved) throw new Error(`no image ${image} in ${root}/images: run scripts/build-guest-image.sh`);
const accel = await backend.accelerator(resolved);
const info = backend.hypervisorInfo();
console.log(`hypervisor: ${info.hypervisor} (${info.reason}); transport: ${info.transport}`);
console.log(`accelerator: ${accel.accel} (${accel.reason})`);

let started = performance.now();
await backend.template(image, 1, 512);
console.log(
  `template (boot + warm + snapshot, once per image/CPUs/memory; cached on disk): ${fmt(performance.now() - started)}`,
);

const boots: number[] = [];
const creates: number[] = [];
const execs: number[] = [];
const snapshots: number[] = [];
const restores: number[] = [];
let snapshotBytes = 0;
for (let i = 0; i < runs; i++) {
  started = performance.now();
  const cold = await coldBackend.create({ image, network: { kind: 'none' }, name: 'bench-cold' });
  boots.push(performance.now() - started);
  await cold.destroy();

  started = performance.now();
  const sandbox = (await backend.create({ image, network: { kind: 'none' }, name: 'bench' })) as MicrovmSandbox;
  creates.push(performance.now() - started);
  for (let j = 0; j < 5; j++) {
    started = performance.now();
    await sandbox.exec({ cmd: ['true'] });
    execs.push(performance.now() - started);
  }
  const snapshot = await sandbox.snapshot({ resume: false });
  snapshots.push(snapshot.durationMs);
  snapshotBytes = snapshot.sizeBytes;
  await sandbox.destroy();
  started = performance.now();
  const restored = await backend.restore(snapshot, { name: 'bench-restored' });
  restores.push(performance.now() - started);
  const check = await restored.exec({ cmd: ['echo', 'restored'] });
  if (check.stdout !== 'restored\n') throw new Error(`restored VM answered ${JSON.stringify(check)}`);
  await restored.destroy();
  await backend.deleteSnapshot(snapshot);
  console.log(
    `run ${i + 1}/${runs}: cold boot ${fmt(boots.at(-1)!)}, create from template ${fmt(creates.at(-1)!)}, ` +
      `snapshot ${fmt(snapshots.at(-1)!)}, restore ${fmt(restores.at(-1)!)}`,
  );
}
console.log(`cold boot -> agent ready, median of ${runs}: ${fmt(median(boots))}`);
console.log(`create from template -> agent ready, median of ${runs}: ${fmt(median(creates))}`);
console.log(`exec round trip (true), median of ${execs.length}: ${fmt(median(execs))}`);
console.log(
  `snapshot (stop + migrate + disk copy), median: ${fmt(median(snapshots))}, ${(snapshotBytes / 2 ** 20).toFixed(0)} MiB memory file`,
);
console.log(`restore -> agent ready, median of ${runs}: ${fmt(median(restores))}`);

if (network) {
  const bridged = new QemuMicrovmBackend({
    storageRoot,
    imagesDir: `${root}/images`,
    accel: 'auto',
    transport,
    bridge: { name: 'trbench0', ipv4: '10.199.77.1/24' },
  });
  started = performance.now();
  await bridged.template(image, 1, 512, true);
  console.log(`template with a NIC (once): ${fmt(performance.now() - started)}`);
  const networked: number[] = [];
  const bigDisk: number[] = [];
  const defaultDisk: number[] = [];
  for (let i = 0; i < runs; i++) {
    started = performance.now();
    const vm = await bridged.create({
      image,
      name: 'bench-net',
      network: { kind: 'allow-list', allow: ['10.199.77.1'] },
    });
    networked.push(performance.now() - started);
    await vm.destroy();
    started = performance.now();
    const plain = await backend.create({ image, network: { kind: 'none' }, name: 'bench-disk1g' });
    defaultDisk.push(performance.now() - started);
    await plain.destroy();
    started = performance.now();
    const big = await backend.create({
      image,
      network: { kind: 'none' },
      name: 'bench-disk4g',
      resources: { diskBytes: 4 * 2 ** 30 },
    });
    bigDisk.push(performance.now() - started);
    await big.destroy();
    console.log(
      `run ${i + 1}/${runs}: networked create ${fmt(networked.at(-1)!)}, 1 GiB disk ${fmt(defaultDisk.at(-1)!)}, ` +
        `4 GiB disk ${fmt(bigDisk.at(-1)!)}`,
    );
  }
  console.log(`create on the bridge (allow-list) -> agent ready, median: ${fmt(median(networked))}`);
  console.log(`create, 1 GiB writable disk (default), median: ${fmt(median(defaultDisk))}`);
  console.log(`create, 4 GiB writable disk, median: ${fmt(median(bigDisk))}`);
  await bridged.bridge?.remove();
}
await rm(`${storageRoot}/vms`, { recursive: true, force: true });
