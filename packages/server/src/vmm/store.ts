/** Database access of the microVM manager: VMs (with address allocation), images, snapshots, activity, exec history. */
import { EventEmitter } from 'node:events';
import { and, desc, eq, inArray, isNotNull, ne, sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import {
  type VmmActivityRow,
  type VmmExecHistoryRow,
  type VmmImageRow,
  type VmmSnapshotRow,
  type VmmVmRow,
  vmmActivity,
  vmmExecHistory,
  vmmImages,
  vmmSnapshots,
  vmmVms,
} from '../db/schema.js';
import { lowestFreeCid, lowestFreeIp, type Subnet } from './addresses.js';
import { limitExceeded, VmmError } from './errors.js';

export type VmState = 'creating' | 'pooled' | 'running' | 'stopped' | 'lost' | 'failed' | 'destroyed';
/** States in which a VM counts against MAX_VMS and holds its address (warm-pool VMs too). */
export const LIVE_STATES: VmState[] = ['creating', 'pooled', 'running', 'stopped', 'lost'];
/** How a VM came up (vmm_vms.started_from). */
export type StartedFrom = 'pool' | 'snapshot' | 'template' | 'cold';

/** Key of the advisory lock that serialises address allocation across manager processes. */
const ALLOCATION_LOCK = 7_206_351_980_224_114n;

export interface NewVm {
  id: string;
  name: string;
  vcpus: number;
  memMib: number;
  diskMib?: number;
  image: string;
  allowList: string[];
  internet: boolean;
  secretEnvNames: string[];
  snapshotId?: string;
  owner: string;
  /** Default 'creating'. */
  state?: VmState;
}

export interface ActivityEvent {
  id: number;
  vmId: string | null;
  action: string;
  actor: string;
  details: Record<string, unknown>;
  createdAt: string;
}

export function activityView(row: VmmActivityRow): ActivityEvent {
  return {
    id: row.id,
    vmId: row.vmId,
    action: row.action,
    actor: row.actor,
    details: row.details,
    createdAt: row.createdAt.toISOString(),
  };
}

export class VmmStore {
  /** Emits 'activity' with an ActivityEvent for every recorded action (the SSE stream and webhooks listen). */
  readonly events = new EventEmitter();

  constructor(private readonly db: Database) {
    this.events.setMaxListeners(0);
  }

  /**
   * Inserts a VM in state 'creating' with a free IP address and vsock CID, refusing when MAX_VMS live VMs exist.
   * One transaction under an advisory lock: concurrent creates (in this or another process) see each other's rows.
   */
  async insertVm(vm: NewVm, options: { maxVms: number; subnet: Subnet }): Promise<VmmVmRow> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.db.transaction(async (tx) => {
          await tx.execute(sql`select pg_advisory_xact_lock(${ALLOCATION_LOCK})`);
          const live = await tx
            .select({ ip: vmmVms.ip, cid: vmmVms.cid })
            .from(vmmVms)
            .where(inArray(vmmVms.state, LIVE_STATES));
          if (live.length >= options.maxVms) {
            throw limitExceeded(`MAX_VMS=${options.maxVms} VMs exist already: destroy one first`, 409);
          }
          const held = await tx.select({ ip: vmmVms.ip, cid: vmmVms.cid }).from(vmmVms).where(isNotNull(vmmVms.ip));
          const ip = lowestFreeIp(
            options.subnet,
            held.map((r) => r.ip!),
          );
          if (!ip) throw new VmmError(409, 'no_address', 'no free IP address left in the VM subnet');
          const cid = lowestFreeCid(held.filter((r) => r.cid !== null).map((r) => r.cid!));
          const [row] = await tx
            .insert(vmmVms)
            .values({
              ...vm,
              diskMib: vm.diskMib ?? null,
              snapshotId: vm.snapshotId ?? null,
              state: vm.state ?? 'creating',
              ip,
              cid,
            })
            .returning();
          return row!;
        });
      } catch (err) {
        // A unique violation (23505) means another allocator won the race without the lock: try again.
        if ((err as { code?: string }).code === '23505' && attempt < 5) continue;
        throw err;
      }
    }
  }

  async getVm(id: string): Promise<VmmVmRow | undefined> {
    const [row] = await this.db.select().from(vmmVms).where(eq(vmmVms.id, id));
    return row;
  }

  async listVms(options: { includeDestroyed?: boolean } = {}): Promise<VmmVmRow[]> {
    const query = this.db.select().from(vmmVms);
    const rows = options.includeDestroyed
      ? await query.orderBy(vmmVms.createdAt)
      : await query.where(ne(vmmVms.state, 'destroyed')).orderBy(vmmVms.createdAt);
    return rows;
  }

  /**
   * Changes a VM only if it is in state `from`; undefined when it is not (another caller changed it first). The
   * warm pool hands out and evicts its VMs this way, so one pooled VM is never given to two callers.
   */
  async transitionVm(
    id: string,
    from: VmState,
    changes: Partial<
      Pick<
        VmmVmRow,
        'state' | 'name' | 'owner' | 'allowList' | 'internet' | 'secretEnvNames' | 'startedFrom' | 'createdAt'
      >
    >,
  ): Promise<VmmVmRow | undefined> {
    const [row] = await this.db
      .update(vmmVms)
      .set({ ...changes, updatedAt: new Date() })
      .where(and(eq(vmmVms.id, id), eq(vmmVms.state, from)))
      .returning();
    return row;
  }

  /** Warm-pool VMs (state 'pooled'), oldest first. */
  async pooledVms(): Promise<VmmVmRow[]> {
    return this.db.select().from(vmmVms).where(eq(vmmVms.state, 'pooled')).orderBy(vmmVms.createdAt);
  }

  async updateVm(
    id: string,
    changes: Partial<Pick<VmmVmRow, 'state' | 'backendId' | 'lostReason' | 'ip' | 'cid' | 'startedFrom'>>,
  ): Promise<VmmVmRow | undefined> {
    const [row] = await this.db
      .update(vmmVms)
      .set({ ...changes, updatedAt: new Date() })
      .where(eq(vmmVms.id, id))
      .returning();
    return row;
  }

  /** Ends a VM's life in the database: its address and CID go back to the pool. */
  async releaseVm(id: string, state: 'destroyed' | 'failed', reason?: string): Promise<void> {
    await this.db
      .update(vmmVms)
      .set({ state, ip: null, cid: null, updatedAt: new Date(), ...(reason !== undefined && { lostReason: reason }) })
      .where(eq(vmmVms.id, id));
  }

  async countLive(): Promise<number> {
    const rows = await this.db.select({ id: vmmVms.id }).from(vmmVms).where(inArray(vmmVms.state, LIVE_STATES));
    return rows.length;
  }

  // ---- activity ----

  async record(action: string, actor: string, vmId: string | null, details: Record<string, unknown> = {}) {
    const [row] = await this.db.insert(vmmActivity).values({ action, actor, vmId, details }).returning();
    const event = activityView(row!);
    this.events.emit('activity', event);
    return event;
  }

  async activity(options: { vmId?: string; limit?: number; afterId?: number } = {}): Promise<ActivityEvent[]> {
    const conditions = [
      ...(options.vmId ? [eq(vmmActivity.vmId, options.vmId)] : []),
      ...(options.afterId !== undefined ? [sql`${vmmActivity.id} > ${options.afterId}`] : []),
    ];
    const rows = await this.db
      .select()
      .from(vmmActivity)
      .where(conditions.length ? and(...conditions) : undefined)
      .orderBy(desc(vmmActivity.id))
      .limit(options.limit ?? 100);
    return rows.map(activityView);
  }

  // ---- exec history ----

  /** Records an exec about to be sent; false when this request id was recorded already (a client retry). */
  async startExec(entry: { vmId: string; requestId: string; kind: string; command: string[]; actor: string }) {
    const rows = await this.db
      .insert(vmmExecHistory)
      .values(entry)
      .onConflictDoNothing({ target: [vmmExecHistory.vmId, vmmExecHistory.requestId] })
      .returning();
    return rows.length > 0;
  }

  async finishExec(
    vmId: string,
    requestId: string,
    result: { exitCode: number | null; timedOut: boolean; durationMs: number; error?: string },
  ) {
    await this.db
      .update(vmmExecHistory)
      .set({
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        durationMs: Math.round(result.durationMs),
        error: result.error ?? null,
        finishedAt: new Date(),
      })
      .where(and(eq(vmmExecHistory.vmId, vmId), eq(vmmExecHistory.requestId, requestId)));
  }

  async execHistory(vmId: string, limit = 100): Promise<VmmExecHistoryRow[]> {
    return this.db
      .select()
      .from(vmmExecHistory)
      .where(eq(vmmExecHistory.vmId, vmId))
      .orderBy(desc(vmmExecHistory.id))
      .limit(limit);
  }

  // ---- images ----

  async listImages(): Promise<VmmImageRow[]> {
    return this.db.select().from(vmmImages).orderBy(vmmImages.createdAt);
  }

  async getImage(name: string): Promise<VmmImageRow | undefined> {
    const [row] = await this.db.select().from(vmmImages).where(eq(vmmImages.name, name));
    return row;
  }

  async upsertImage(image: { name: string; dir: string; builtIn: boolean }): Promise<VmmImageRow> {
    const [row] = await this.db
      .insert(vmmImages)
      .values(image)
      .onConflictDoUpdate({ target: vmmImages.name, set: { dir: image.dir, builtIn: image.builtIn } })
      .returning();
    return row!;
  }

  async insertImage(image: { name: string; dir: string }): Promise<VmmImageRow> {
    const [row] = await this.db.insert(vmmImages).values(image).onConflictDoNothing().returning();
    if (!row) throw new VmmError(409, 'conflict', `an image named "${image.name}" exists already`);
    return row;
  }

  async setDefaultImage(name: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.update(vmmImages).set({ isDefault: false }).where(eq(vmmImages.isDefault, true));
      await tx.update(vmmImages).set({ isDefault: true }).where(eq(vmmImages.name, name));
    });
  }

  async defaultImage(): Promise<VmmImageRow | undefined> {
    const [row] = await this.db.select().from(vmmImages).where(eq(vmmImages.isDefault, true));
    return row;
  }

  async deleteImage(name: string): Promise<void> {
    await this.db.delete(vmmImages).where(eq(vmmImages.name, name));
  }

  async vmsUsingImage(name: string): Promise<VmmVmRow[]> {
    return this.db
      .select()
      .from(vmmVms)
      .where(and(eq(vmmVms.image, name), inArray(vmmVms.state, LIVE_STATES)));
  }

  // ---- snapshots ----

  async insertSnapshot(snapshot: typeof vmmSnapshots.$inferInsert): Promise<VmmSnapshotRow> {
    const [row] = await this.db.insert(vmmSnapshots).values(snapshot).returning();
    return row!;
  }

  async listSnapshots(vmId?: string): Promise<VmmSnapshotRow[]> {
    const query = this.db.select().from(vmmSnapshots);
    return vmId
      ? query.where(eq(vmmSnapshots.vmId, vmId)).orderBy(vmmSnapshots.createdAt)
      : query.orderBy(vmmSnapshots.createdAt);
  }

  async getSnapshot(id: string): Promise<VmmSnapshotRow | undefined> {
    const [row] = await this.db.select().from(vmmSnapshots).where(eq(vmmSnapshots.id, id));
    return row;
  }

  async deleteSnapshot(id: string): Promise<void> {
    await this.db.delete(vmmSnapshots).where(eq(vmmSnapshots.id, id));
  }

  async snapshotsOfImage(image: string): Promise<VmmSnapshotRow[]> {
    return this.db.select().from(vmmSnapshots).where(eq(vmmSnapshots.image, image));
  }
}
