/**
 * The reconciler makes the host match the database, both ways, at start-up and on a timer:
 * - a VM the database says is running whose QEMU process is gone is marked `lost` (its disk is kept until destroyed);
 * - a VM whose storage directory vanished is marked `lost`;
 * - a warm-pool VM (state `pooled`) whose process or directory is gone is removed (the pool boots another);
 * - a VM stuck in `creating` that no one in this process is creating (the manager died mid-create) is marked `failed`;
 * - storage directories under STORAGE_ROOT/vms/ that belong to no live VM are removed (their QEMU killed first);
 * - QEMU processes whose command line names a VM directory under STORAGE_ROOT/vms/ of no live VM are killed;
 * - network resources (tap devices, firewall rules) of no live VM are removed through the engine's janitor hook;
 * - snapshot directories under STORAGE_ROOT/snapshots/ that no vmm_snapshots row names are removed (once older than
 *   the grace period: a snapshot being taken has its directory before its row), and a snapshot row whose files
 *   vanished is deleted (it could never be restored) with a `snapshot-lost` activity entry;
 * - half-written image uploads (`*.part-*` files in IMAGES_DIR/<image>/) older than the grace period are removed.
 * Warm templates (STORAGE_ROOT/templates/) belong to the engine, which rebuilds them when needed; they are left alone.
 */
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { VmmVmRow } from '../db/schema.js';
import type { VmManager } from './manager.js';
import { VMM_ID_LABEL } from './manager.js';

/** Host network resources keyed by the engine's VM id; the engine's networking provides it. */
export interface HostNetworkJanitor {
  /** Engine VM ids that have network resources (taps, firewall rules) on this host. */
  list(): Promise<string[]>;
  remove(engineVmId: string): Promise<void>;
}

export interface ReconcileReport {
  lost: string[];
  failed: string[];
  removedDirs: string[];
  killedPids: number[];
  removedNetwork: string[];
  /** Snapshot directories no row named. */
  removedSnapshotDirs: string[];
  /** Snapshot rows whose files were gone (deleted). */
  lostSnapshots: string[];
  /** Half-written image uploads removed. */
  removedPartialUploads: string[];
}

export interface ReconcilerOptions {
  manager: VmManager;
  storageRoot: string;
  /** IMAGES_DIR: half-written uploads are looked for in its image directories. */
  imagesDir?: string;
  log: Logger;
  network?: HostNetworkJanitor;
  /** Directories without a manager label (e.g. warm templates being made) younger than this are left alone. */
  graceMs?: number;
}

const ENGINE_ID = /^[0-9a-f]{12}$/;
const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );
const TEMPLATE_LABEL = 'terrarium.microvm-template';

export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ReconcileReport> | undefined;

  constructor(private readonly options: ReconcilerOptions) {}

  private get vmsDir() {
    return join(this.options.storageRoot, 'vms');
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.reconcile().catch((err: unknown) => this.options.log.error({ err }, 'microVM reconcile failed'));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }

  /** One pass; concurrent calls share it. */
  reconcile(): Promise<ReconcileReport> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<ReconcileReport> {
    const { manager, log } = this.options;
    const { store, backend } = manager;
    const report: ReconcileReport = {
      lost: [],
      failed: [],
      removedDirs: [],
      killedPids: [],
      removedNetwork: [],
      removedSnapshotDirs: [],
      lostSnapshots: [],
      removedPartialUploads: [],
    };
    const dirs = new Set((await readdir(this.vmsDir).catch(() => [] as string[])).filter((d) => ENGINE_ID.test(d)));

    // Database → host.
    for (const row of await store.listVms()) {
      // A stop, start, destroy or snapshot in progress briefly has no QEMU process or no directory.
      if (manager.busy.has(row.id)) continue;
      if (row.state === 'creating') {
        if (manager.creating.has(row.id)) continue;
        await store.releaseVm(row.id, 'failed', 'the manager stopped while the VM was being created');
        await store.record('fail', 'reconciler', row.id, { reason: 'interrupted create' });
        report.failed.push(row.id);
        continue;
      }
      if (row.state === 'pooled') {
        // A warm-pool VM that died is no one's loss: it is removed (and the pool boots another).
        const reason = await this.lostReason({ ...row, state: 'running' }, dirs);
        const claimed = reason ? await store.transitionVm(row.id, 'pooled', { state: 'failed' }) : undefined;
        if (claimed) {
          if (claimed.backendId) await backend.destroyVm(claimed.backendId).catch(() => {});
          await store.releaseVm(row.id, 'destroyed', reason);
          await store.record('pool-evict', 'reconciler', row.id, { reason });
          report.lost.push(row.id);
        }
        continue;
      }
      if (row.state !== 'running' && row.state !== 'stopped') continue;
      const reason = await this.lostReason(row, dirs);
      if (reason) {
        await store.updateVm(row.id, { state: 'lost', lostReason: reason });
        await store.record('lost', 'reconciler', row.id, { reason });
        report.lost.push(row.id);
      }
    }

    // Host → database: what no live VM owns goes.
    const live = await store.listVms();
    const owned = new Set(live.filter((r) => r.backendId && r.state !== 'failed').map((r) => r.backendId!));
    const kept = new Set<string>(owned);
    for (const dir of dirs) {
      if (owned.has(dir)) continue;
      const state = await backend.loadState(dir);
      const vmmId = state?.labels[VMM_ID_LABEL];
      if (vmmId && manager.creating.has(vmmId)) {
        kept.add(dir);
        continue;
      }
      if (!vmmId && (await this.young(dir, state?.labels[TEMPLATE_LABEL] !== undefined))) {
        kept.add(dir);
        continue;
      }
      await backend.destroyVm(dir);
      report.removedDirs.push(dir);
    }
    for (const { pid, engineId } of await this.qemuProcesses()) {
      if (kept.has(engineId)) continue;
      try {
        process.kill(pid, 'SIGKILL');
        report.killedPids.push(pid);
      } catch {
        // already gone
      }
    }
    if (this.options.network) {
      for (const engineId of await this.options.network.list()) {
        if (kept.has(engineId)) continue;
        await this.options.network.remove(engineId);
        report.removedNetwork.push(engineId);
      }
    }
    await this.reconcileSnapshots(report);
    await this.removePartialUploads(report);
    const changed = Object.values(report).some((list) => list.length > 0);
    if (changed) {
      log.warn(report, 'microVM reconciler changed the host or the database');
      await store.record('reconcile', 'reconciler', null, { ...report });
    }
    return report;
  }

  /** Snapshot rows ↔ directories under STORAGE_ROOT/snapshots/, both ways. */
  private async reconcileSnapshots(report: ReconcileReport): Promise<void> {
    const { store } = this.options.manager;
    const snapshotsDir = join(this.options.storageRoot, 'snapshots');
    const rows = await store.listSnapshots();
    const named = new Set(rows.map((row) => resolve(row.dir)));
    for (const row of rows) {
      if (await exists(join(row.dir, 'snapshot.json'))) continue;
      // A snapshot row is written after its directory is complete, so a row without files lost them for good.
      await rm(row.dir, { recursive: true, force: true });
      await store.deleteSnapshot(row.id);
      await store.record('snapshot-lost', 'reconciler', row.vmId, {
        snapshotId: row.id,
        reason: 'its files are gone from the host',
      });
      report.lostSnapshots.push(row.id);
    }
    // A snapshot being taken (its VM is busy) has its directory before its row: look again next pass.
    if (this.options.manager.busy.size > 0) return;
    for (const entry of await readdir(snapshotsDir).catch(() => [] as string[])) {
      const dir = join(snapshotsDir, entry);
      if (named.has(resolve(dir))) continue;
      // Taking a snapshot writes `<dir>.tmp-…`, renames it, then inserts the row: leave young ones alone.
      if (await this.youngPath(dir)) continue;
      await rm(dir, { recursive: true, force: true });
      report.removedSnapshotDirs.push(entry);
    }
  }

  /** `*.part-*` files an interrupted image upload left in IMAGES_DIR/<image>/. */
  private async removePartialUploads(report: ReconcileReport): Promise<void> {
    const imagesDir = this.options.imagesDir;
    if (!imagesDir) return;
    for (const image of await readdir(imagesDir).catch(() => [] as string[])) {
      const dir = join(imagesDir, image);
      for (const file of await readdir(dir).catch(() => [] as string[])) {
        if (!/\.part-[0-9a-f]+$/.test(file)) continue;
        const path = join(dir, file);
        // An upload in progress writes its part file continuously: only stale ones go.
        if (await this.youngPath(path)) continue;
        await rm(path, { force: true });
        report.removedPartialUploads.push(join(image, file));
      }
    }
  }

  private async youngPath(path: string): Promise<boolean> {
    const info = await stat(path).catch(() => undefined);
    if (!info) return true;
    return Date.now() - info.mtimeMs < (this.options.graceMs ?? 120_000);
  }

  private async lostReason(row: VmmVmRow, dirs: Set<string>): Promise<string | undefined> {
    if (!row.backendId || !dirs.has(row.backendId)) return "the VM's storage directory is gone";
    if (row.state === 'running' && (await this.options.manager.backend.qemuPid(row.backendId)) === undefined) {
      return 'the hypervisor process exited unexpectedly';
    }
    return undefined;
  }

  /** A directory no manager VM claims is left alone while young (a warm template being made, a create starting). */
  private async young(dir: string, template: boolean): Promise<boolean> {
    const info = await stat(join(this.vmsDir, dir)).catch(() => undefined);
    if (!info) return false;
    const grace = (this.options.graceMs ?? 120_000) * (template ? 5 : 1);
    return Date.now() - info.mtimeMs < grace;
  }

  /** QEMU processes whose command line names a VM directory under this STORAGE_ROOT. */
  private async qemuProcesses(): Promise<{ pid: number; engineId: string }[]> {
    const marker = `${this.vmsDir}/`;
    const found: { pid: number; engineId: string }[] = [];
    for (const entry of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
      if (!cmdline.includes('qemu-system') || !cmdline.includes(marker)) continue;
      const at = cmdline.indexOf(marker) + marker.length;
      const engineId = cmdline.slice(at, at + 12);
      if (ENGINE_ID.test(engineId)) found.push({ pid: Number(entry), engineId });
    }
    return found;
  }
}
