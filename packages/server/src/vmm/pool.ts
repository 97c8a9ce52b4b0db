/**
 * The warm pool: TERRARIUM_VMM_WARM_POOL_SIZE ready VMs of one shape (TERRARIUM_VMM_WARM_POOL_CPU /
 * TERRARIUM_VMM_WARM_POOL_MEM_MB, the default image, no network), kept filled in the background, one boot at a
 * time (from the warm template when ENABLE_SNAPSHOTS is on and the shape is the template's, else a cold boot).
 *
 * Pool VMs are ordinary rows of vmm_vms in state 'pooled': their IP address and CID are allocated in the database
 * like any VM's, they count against MAX_VMS, and no user sees them. A create that asks for exactly what a pool VM
 * is (see `matches`) gets one: the row changes from 'pooled' to 'running' in one conditional update, so a pool VM is
 * never handed out twice, and the pool refills. A create that needs room evicts a pool VM. After a restart the
 * reconciler adopts live pool VMs (or removes dead ones) and the pool evicts those that no longer fit the
 * configuration (another shape or default image).
 */
import type { Logger } from 'pino';
import type { VmmVmRow } from '../db/schema.js';
import type { VmmStore } from './store.js';

export interface PoolConfig {
  /** Ready VMs to keep; 0 turns the pool off (and evicts what a previous configuration left). */
  size: number;
  vcpus: number;
  memMib: number;
}

export interface PoolStatus extends PoolConfig {
  /** Pool VMs ready to hand out. */
  ready: number;
  /** A pool VM is booting now. */
  filling: boolean;
  /** The last fill failure, until a fill succeeds. */
  lastError: string | null;
}

/** What the pool needs from the manager (kept narrow so the two stay testable apart). */
export interface PoolHost {
  readonly store: VmmStore;
  readonly maxVms: number;
  /** The default image's name, if it can boot. */
  poolImage(): Promise<string | undefined>;
  /** Boots one pool VM of this shape and image; resolves when it is 'pooled'. */
  fillOne(vcpus: number, memMib: number, image: string): Promise<void>;
  /** Whether a pool VM's hypervisor process is still there (checked at hand-out: the reconciler runs seldom). */
  alive(row: VmmVmRow): Promise<boolean>;
  /** Removes a VM's engine state and releases its row (already moved out of 'pooled'). */
  discard(row: VmmVmRow, reason: string): Promise<void>;
}

export interface PoolRequest {
  vcpus: number;
  memMib: number;
  image: string;
  diskMib?: number;
  allowList: string[];
  internet: boolean;
  secretEnv: Record<string, string>;
  snapshotId?: string;
}

export class WarmPool {
  private filling: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastError: string | null = null;
  private failures = 0;

  constructor(
    private readonly host: PoolHost,
    readonly config: PoolConfig,
    private readonly log: Logger,
    private readonly options: { recheckMs?: number } = {},
  ) {}

  /**
   * Whether a pool VM can serve this request: same shape and image, nothing a running pool VM lacks. A pool VM
   * has no NIC (network rules are made per tap at boot), the bare image's disk, and no secret environment (the
   * engine keeps a VM's environment from its creation and has no call to change it afterwards).
   */
  matches(request: PoolRequest): boolean {
    return (
      this.config.size > 0 &&
      request.vcpus === this.config.vcpus &&
      request.memMib === this.config.memMib &&
      request.snapshotId === undefined &&
      request.diskMib === undefined &&
      request.allowList.length === 0 &&
      !request.internet &&
      Object.keys(request.secretEnv).length === 0
    );
  }

  /** Starts filling, and looks again on a timer (after failures, or when capacity frees up). */
  start(): void {
    this.kick();
    this.timer = setInterval(() => this.kick(), this.options.recheckMs ?? 15_000);
    this.timer.unref();
  }

  /** Stops filling; waits for a boot in progress to end (its VM stays pooled for the next process). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.filling?.catch(() => {});
  }

  kick(): void {
    if (this.stopped || this.filling) return;
    this.filling = this.fill()
      .catch((err: unknown) => this.log.warn({ err }, 'filling the microVM warm pool failed'))
      .finally(() => {
        this.filling = undefined;
      });
  }

  /**
   * Hands out a ready pool VM matching the request: its row becomes the caller's ('running'). Undefined when
   * none is ready. The pool refills in the background.
   */
  async take(
    request: PoolRequest,
    claim: Pick<VmmVmRow, 'name' | 'owner'> & { nameFromId: boolean },
  ): Promise<VmmVmRow | undefined> {
    if (!this.matches(request)) return undefined;
    for (const row of await this.host.store.pooledVms()) {
      if (row.vcpus !== request.vcpus || row.memMib !== request.memMib || row.image !== request.image) continue;
      const taken = await this.host.store.transitionVm(row.id, 'pooled', {
        state: 'running',
        name: claim.nameFromId ? row.id : claim.name,
        owner: claim.owner,
        allowList: [],
        internet: false,
        secretEnvNames: [],
        startedFrom: 'pool',
        createdAt: new Date(),
      });
      if (!taken) continue;
      if (!(await this.host.alive(taken))) {
        // Died since it was pooled: never hand out a dead VM; it goes, the next one is tried.
        await this.host.discard(taken, 'its hypervisor process was gone at hand-out');
        continue;
      }
      this.kick();
      return taken;
    }
    this.kick();
    return undefined;
  }

  /** Destroys one pool VM to make room for a VM the pool cannot serve; false when there is none. */
  async evictOne(reason = 'room was needed for another VM'): Promise<boolean> {
    for (const row of await this.host.store.pooledVms()) {
      const claimed = await this.host.store.transitionVm(row.id, 'pooled', { state: 'failed' });
      if (!claimed) continue;
      await this.host.discard(claimed, reason);
      return true;
    }
    return false;
  }

  async status(): Promise<PoolStatus> {
    const ready = (await this.host.store.pooledVms()).filter(
      (row) => row.vcpus === this.config.vcpus && row.memMib === this.config.memMib,
    ).length;
    return { ...this.config, ready, filling: this.filling !== undefined, lastError: this.lastError };
  }

  private async fill(): Promise<void> {
    const image = await this.host.poolImage();
    // Pool VMs that no longer fit (another shape or default image, or the pool was made smaller) go first.
    const pooled = await this.host.store.pooledVms();
    const fitting = pooled.filter(
      (row) => row.vcpus === this.config.vcpus && row.memMib === this.config.memMib && row.image === image,
    );
    for (const row of pooled) {
      if (this.stopped) return;
      const surplus = fitting.indexOf(row) >= this.config.size;
      if (fitting.includes(row) && !surplus) continue;
      const claimed = await this.host.store.transitionVm(row.id, 'pooled', { state: 'failed' });
      if (claimed) await this.host.discard(claimed, surplus ? 'the pool is smaller now' : 'it no longer fits the pool');
    }
    if (!image) return;
    let ready = Math.min(fitting.length, this.config.size);
    while (!this.stopped && ready < this.config.size) {
      // Pool VMs count against MAX_VMS: they never take the place of a VM a user asked for.
      if ((await this.host.store.countLive()) >= this.host.maxVms) return;
      if (this.failures > 0 && this.lastFailureAt + this.backoffMs() > Date.now()) return;
      try {
        await this.host.fillOne(this.config.vcpus, this.config.memMib, image);
        this.failures = 0;
        this.lastError = null;
        ready++;
      } catch (err) {
        this.failures++;
        this.lastFailureAt = Date.now();
        this.lastError = (err as Error).message;
        this.log.warn({ err, failures: this.failures }, 'booting a warm-pool microVM failed');
        return;
      }
    }
  }

  private lastFailureAt = 0;

  /** After failures, fills are retried less and less often (up to 10 min apart). */
  private backoffMs(): number {
    return Math.min(600_000, 5_000 * 2 ** (this.failures - 1));
  }
}
