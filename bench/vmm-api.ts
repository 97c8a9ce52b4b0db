/**
 * Prints microVM manager figures through its HTTP API (`/v1`), on this machine's accelerator (TCG where KVM does not
 * boot a guest):
 *  - create → guest-agent ready, cold boot (a shape that has no warm template), median;
 *  - create → ready from the warm template (ENABLE_SNAPSHOTS, the SNAPSHOT_TEMPLATE_* shape), median;
 *  - create → ready from a snapshot of a running VM, median;
 *  - create → ready from the warm pool (TERRARIUM_VMM_WARM_POOL_SIZE=1, a hand-out of a booted VM), median;
 *  - exec round trip (`true`) over HTTP, median and p90.
 * Every create's `startedFrom` is checked, so a figure is never of another path than its label says (the template
 * creates carry a secret env var, which the pool does not serve).
 *
 *   scripts/build-guest-image.sh /var/lib/terrarium-microvm/images/bookworm
 *   npx tsx bench/vmm-api.ts [--runs 3] [--execs 30] [--storage /var/lib/terrarium-microvm/vmm-bench]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../packages/server/src/config/index.js';
import { startServer } from '../packages/server/src/server.js';

const arg = (name: string) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const runs = Number(arg('--runs')) || 3;
const execs = Number(arg('--execs')) || 30;
const root = arg('--root') ?? '/var/lib/terrarium-microvm';
const storageRoot = arg('--storage') ?? `${root}/vmm-bench`;
const image = arg('--image') ?? 'bookworm';

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const p90 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.ceil(values.length * 0.9) - 1]!;
const fmt = (ms: number) => `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;

const dataDir = await mkdtemp(join(tmpdir(), 'terrarium-vmm-bench-'));
const apiKey = randomBytes(16).toString('hex');
const config = loadConfig({
  TERRARIUM_DATA_DIR: dataDir,
  TERRARIUM_HOST: '127.0.0.1',
  TERRARIUM_VMM: 'true',
  API_KEY: apiKey,
  STORAGE_ROOT: storageRoot,
  KERNEL_PATH: `${root}/images/${image}/vmlinuz`,
  BASE_ROOTFS_PATH: `${root}/images/${image}/rootfs.ext4`,
  ENABLE_SNAPSHOTS: 'true',
  SNAPSHOT_TEMPLATE_CPU: '1',
  SNAPSHOT_TEMPLATE_MEM_MB: '512',
  MAX_VMS: '4',
  TERRARIUM_VMM_WARM_POOL_SIZE: '1',
  VSOCK_HEALTH_TIMEOUT_MS: '300000',
  VSOCK_TIMEOUT_MS: '60000',
  TERRARIUM_VM_BRIDGE: 'trvmmbench0',
  TERRARIUM_VM_SUBNET: '10.215.0.0/24',
});
const server = await startServer(config, { port: 0, logDestination: join(dataDir, 'server.jsonl') });

async function v1<T = unknown>(method: string, route: string, body?: unknown): Promise<T> {
  const response = await fetch(`${server.url}/v1${route}`, {
    method,
    headers: { 'x-api-key': apiKey, ...(body !== undefined && { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

async function timedCreate(body: Record<string, unknown>, startedFrom: string): Promise<{ ms: number; id: string }> {
  const started = performance.now();
  const vm = await v1<{ id: string; startedFrom: string }>('POST', '/vms', body);
  const ms = performance.now() - started;
  if (vm.startedFrom !== startedFrom)
    throw new Error(`expected a create from "${startedFrom}", got "${vm.startedFrom}"`);
  return { ms, id: vm.id };
}

/** Waits until the warm pool has a ready VM (it refills in the background after each hand-out). */
async function poolReady(): Promise<void> {
  for (;;) {
    const health = await v1<{ pool: { ready: number; filling: boolean; lastError: string | null } }>('GET', '/health');
    if (health.pool.ready >= 1 && !health.pool.filling) return;
    if (health.pool.lastError) throw new Error(`the warm pool cannot fill: ${health.pool.lastError}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

try {
  const health = await v1<{ accelerator: string; acceleratorReason: string }>('GET', '/health');
  console.log(`accelerator: ${health.accelerator} (${health.acceleratorReason})`);

  const cold: number[] = [];
  const warm: number[] = [];
  const fromSnapshot: number[] = [];
  const fromPool: number[] = [];
  const rtt: number[] = [];
  // A secret env var keeps a create of the template shape off the warm pool: it measures the template restore.
  const templateBody = { vcpus: 1, memMib: 512, secretEnv: { BENCH: '1' } };

  // The first warm create waits for the template (boot + snapshot, once per image and shape; cached on disk).
  let started = performance.now();
  const first = await timedCreate(templateBody, 'template');
  console.log(
    `first create of the template shape (includes making the template if not cached): ${fmt(performance.now() - started)}`,
  );
  await v1('DELETE', `/vms/${first.id}`);

  for (let i = 0; i < runs; i++) {
    await poolReady();
    const p = await timedCreate({ vcpus: 1, memMib: 512 }, 'pool');
    fromPool.push(p.ms);
    await v1('DELETE', `/vms/${p.id}`);
    await poolReady();
    const c = await timedCreate({ vcpus: 1, memMib: 640 }, 'cold');
    cold.push(c.ms);
    await v1('DELETE', `/vms/${c.id}`);
    const w = await timedCreate(templateBody, 'template');
    warm.push(w.ms);
    if (i === 0) {
      for (let j = 0; j < execs; j++) {
        started = performance.now();
        await v1('POST', `/vms/${w.id}/exec`, { cmd: ['true'] });
        rtt.push(performance.now() - started);
      }
    }
    const snapshot = await v1<{ id: string }>('POST', `/vms/${w.id}/snapshots`);
    const s = await timedCreate({ snapshotId: snapshot.id }, 'snapshot');
    fromSnapshot.push(s.ms);
    await v1('DELETE', `/vms/${s.id}`);
    await v1('DELETE', `/vms/${w.id}`);
    await v1('DELETE', `/snapshots/${snapshot.id}`);
  }
  console.log(`create → ready, cold boot (1 vCPU, 640 MiB): median ${fmt(median(cold))} over ${runs}`);
  console.log(`create → ready, warm template (1 vCPU, 512 MiB): median ${fmt(median(warm))} over ${runs}`);
  console.log(`create → ready, from a snapshot: median ${fmt(median(fromSnapshot))} over ${runs}`);
  console.log(`create → ready, warm-pool hand-out (1 vCPU, 512 MiB): median ${fmt(median(fromPool))} over ${runs}`);
  console.log(
    `ratios: cold / template ${(median(cold) / median(warm)).toFixed(1)}×, cold / pool ${(median(cold) / median(fromPool)).toFixed(0)}×`,
  );
  const load = (await import('node:os')).loadavg();
  console.log(`load average (1, 5, 15 min) at the end: ${load.map((l) => l.toFixed(1)).join(', ')}`);
  console.log(`exec round trip over HTTP (true): median ${fmt(median(rtt))}, p90 ${fmt(p90(rtt))} over ${execs}`);
} finally {
  for (const vm of (await v1<{ vms: { id: string }[] }>('GET', '/vms').catch(() => ({ vms: [] }))).vms) {
    await v1('DELETE', `/vms/${vm.id}`).catch(() => {});
  }
  // Pool VMs are nobody's (not listed): stop refilling and give them up, or they would outlive the bench.
  const pool = server.vmm?.manager.pool;
  await pool?.stop();
  while (await pool?.evictOne('the bench is over')) {}
  await server.close();
  await rm(dataDir, { recursive: true, force: true });
}
