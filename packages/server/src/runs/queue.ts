import type { RunStatus } from '@terrarium/shared';
import { type SQL, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database, DatabaseOrTransaction } from '../db/client.js';
import type { HostLoadGate } from './host-load.js';

/** States in which a run holds a slot of its batch. */
export const ACTIVE_RUN_STATUSES = ['setting-up', 'running', 'scoring'] as const satisfies readonly RunStatus[];

/** Key space of the per-batch advisory locks (the second key is hashtext(batch name)). */
const BATCH_LOCK_SPACE = 720_635;

/** How many queued runs one pass looks at. */
const CANDIDATES_PER_PASS = 500;

export interface BatchInfo {
  name: string;
  /** null: no limit. 0 holds the batch. */
  concurrencyLimit: number | null;
  queued: number;
  active: number;
  createdAt: Date;
}

export const defaultBatchName = (userId: string) => `default---${userId}`;

const inList = (values: (string | number)[]): SQL =>
  sql.join(
    values.map((v) => sql`${v}`),
    sql`, `,
  );
const ACTIVE_SQL = inList([...ACTIVE_RUN_STATUSES]);

/**
 * The queue and batch tables, over raw SQL where Drizzle's builder cannot say it (FOR UPDATE SKIP LOCKED, advisory
 * locks). The same statements run on PGlite and PostgreSQL.
 */
export class QueueStore {
  constructor(private readonly db: Database) {}

  async ensureBatch(name: string, concurrencyLimit: number | null): Promise<void> {
    await this.db.execute(
      sql`insert into run_batches (name, concurrency_limit) values (${name}, ${concurrencyLimit}) on conflict (name) do nothing`,
    );
  }

  async setBatchLimit(name: string, concurrencyLimit: number | null): Promise<void> {
    await this.db.execute(sql`
      insert into run_batches (name, concurrency_limit) values (${name}, ${concurrencyLimit})
      on conflict (name) do update set concurrency_limit = excluded.concurrency_limit`);
  }

  async listBatches(name?: string): Promise<BatchInfo[]> {
    const where = name === undefined ? sql`` : sql`where b.name = ${name}`;
    const { rows } = await this.db.execute<{
      name: string;
      concurrency_limit: number | null;
      queued: string | number;
      active: string | number;
      created_at: Date | string;
    }>(sql`
      select b.name, b.concurrency_limit, b.created_at,
        (select count(*) from runs r where r.batch_name = b.name and r.status = 'queued') as queued,
        (select count(*) from runs r where r.batch_name = b.name and r.status in (${ACTIVE_SQL})) as active
      from run_batches b ${where} order by b.name`);
    return rows.map((row) => ({
      name: row.name,
      concurrencyLimit: row.concurrency_limit === null ? null : Number(row.concurrency_limit),
      queued: Number(row.queued),
      active: Number(row.active),
      createdAt: new Date(row.created_at),
    }));
  }

  /**
   * Claims as many queued runs as the batch limits allow, in priority then FIFO order, marking them `setting-up` and
   * owned by `runnerId`. Safe with several server processes on one database: candidate rows are locked with
   * FOR UPDATE SKIP LOCKED (two claimers never take the same run), and a transaction-scoped advisory lock per batch
   * serialises the count-then-claim of one batch (two claimers never both fill its last slot).
   */
  async claim(
    runnerId: string,
    { maxRuns = Number.POSITIVE_INFINITY, candidates: window = CANDIDATES_PER_PASS } = {},
  ): Promise<number[]> {
    if (maxRuns <= 0) return [];
    return this.db.transaction(async (tx) => {
      const { rows: candidates } = await tx.execute<{ id: string | number; batch_name: string | null }>(sql`
        select r.id, r.batch_name from runs r
        where r.status = 'queued'
        order by (r.priority = 'high') desc, r.id
        limit ${window}
        for update of r skip locked`);
      if (candidates.length === 0) return [];
      const batches = [...new Set(candidates.map((c) => c.batch_name).filter((b): b is string => b !== null))].sort();
      // Sorted order: two claimers lock the batches they share in the same order, so they cannot deadlock.
      for (const batch of batches) await lockBatch(tx, batch);
      const room = new Map<string, number>();
      if (batches.length > 0) {
        const { rows } = await tx.execute<{ name: string; concurrency_limit: number | null; active: string | number }>(
          sql`
          select b.name, b.concurrency_limit,
            (select count(*) from runs r where r.batch_name = b.name and r.status in (${ACTIVE_SQL})) as active
          from run_batches b where b.name in (${inList(batches)})`,
        );
        for (const row of rows) {
          if (row.concurrency_limit !== null)
            room.set(row.name, Math.max(0, Number(row.concurrency_limit) - Number(row.active)));
        }
      }
      const claimed: number[] = [];
      for (const candidate of candidates) {
        if (claimed.length >= maxRuns) break;
        const batch = candidate.batch_name;
        if (batch !== null && room.has(batch)) {
          const left = room.get(batch)!;
          if (left <= 0) continue;
          room.set(batch, left - 1);
        }
        claimed.push(Number(candidate.id));
      }
      if (claimed.length > 0) {
        await tx.execute(sql`
          update runs set status = 'setting-up', runner_id = ${runnerId}, started_at = now(), updated_at = now()
          where id in (${inList(claimed)})`);
      }
      return claimed;
    });
  }

  /** 1-based positions of queued runs in start order (priority, then FIFO). */
  async queuePositions(ids?: number[]): Promise<Map<number, number>> {
    const filter = ids === undefined ? sql`` : ids.length === 0 ? sql`where false` : sql`where id in (${inList(ids)})`;
    const { rows } = await this.db.execute<{ id: string | number; position: string | number }>(sql`
      select id, position from (
        select id, row_number() over (order by (priority = 'high') desc, id) as position
        from runs where status = 'queued') q ${filter}`);
    return new Map(rows.map((row) => [Number(row.id), Number(row.position)]));
  }

  /** Batches whose limit is reached (so their queued runs are concurrency-limited). */
  async fullBatches(): Promise<Set<string>> {
    const { rows } = await this.db.execute<{ name: string }>(sql`
      select b.name from run_batches b
      where b.concurrency_limit is not null
        and (select count(*) from runs r where r.batch_name = b.name and r.status in (${ACTIVE_SQL})) >= b.concurrency_limit`);
    return new Set(rows.map((row) => row.name));
  }

  /** Ends a run that is still queued as killed; false when it had left the queue already. */
  async killQueued(runId: number, message: string): Promise<boolean> {
    const { rows } = await this.db.execute<{ id: string | number }>(sql`
      update runs set status = 'killed', error_message = ${message}, finished_at = now(), updated_at = now()
      where id = ${runId} and status = 'queued' returning id`);
    return rows.length > 0;
  }

  /**
   * Puts a killed run back in the queue, if it was killed before its sandbox existed (queued, or while its image was
   * built): nothing of it was torn down, so it can start afresh. Returns whether it was re-queued.
   */
  async unkill(runId: number): Promise<boolean> {
    const { rows } = await this.db.execute<{ id: string | number }>(sql`
      update runs set status = 'queued', error_message = null, error_step = null, setup_steps = '[]'::jsonb,
        started_at = null, finished_at = null, runner_id = null, kill_requested_at = null, updated_at = now()
      where id = ${runId} and status = 'killed'
        and not (setup_steps @> '[{"step": "create-sandbox"}]'::jsonb)
        and not exists (select 1 from agent_branches where agent_branches.run_id = runs.id)
      returning id`);
    return rows.length > 0;
  }

  /** Asks the runner that owns a run to kill it (used when another process owns it). */
  async requestKill(runId: number): Promise<void> {
    await this.db.execute(sql`update runs set kill_requested_at = now() where id = ${runId}`);
  }

  /** Runs of `runnerId` someone asked to kill. */
  async killRequests(runnerId: string): Promise<number[]> {
    const { rows } = await this.db.execute<{ id: string | number }>(sql`
      select id from runs where runner_id = ${runnerId} and kill_requested_at is not null
        and status in (${ACTIVE_SQL})`);
    return rows.map((row) => Number(row.id));
  }

  /** Non-terminal, non-queued runs owned by `runnerId` (or by nobody); every such run when `runnerId` is undefined. */
  async activeRuns(runnerId: string | undefined): Promise<{ id: number; status: RunStatus }[]> {
    const owner = runnerId === undefined ? sql`` : sql`and (runner_id = ${runnerId} or runner_id is null)`;
    const { rows } = await this.db.execute<{ id: string | number; status: RunStatus }>(sql`
      select id, status from runs where status in (${ACTIVE_SQL}) ${owner} order by id`);
    return rows.map((row) => ({ id: Number(row.id), status: row.status }));
  }

  /** Statuses of the given runs (missing ids are absent from the map). */
  async statuses(ids: number[]): Promise<Map<number, RunStatus>> {
    if (ids.length === 0) return new Map();
    const { rows } = await this.db.execute<{ id: string | number; status: RunStatus }>(
      sql`select id, status from runs where id in (${inList(ids)})`,
    );
    return new Map(rows.map((row) => [Number(row.id), row.status]));
  }

  /** Puts a run that was interrupted during setup back in the queue, in its old place. */
  async requeue(runId: number, fromStatus: RunStatus): Promise<boolean> {
    const { rows } = await this.db.execute<{ id: string | number }>(sql`
      update runs set status = 'queued', runner_id = null, started_at = null, setup_steps = '[]'::jsonb,
        updated_at = now()
      where id = ${runId} and status = ${fromStatus} returning id`);
    return rows.length > 0;
  }

  /** Ends a run in `status` unless it already reached a terminal state. */
  async finish(
    runId: number,
    status: 'error' | 'killed',
    errorStep: string | null,
    message: string,
    fromStatuses: readonly RunStatus[] = ACTIVE_RUN_STATUSES,
  ): Promise<boolean> {
    const { rows } = await this.db.execute<{ id: string | number }>(sql`
      update runs set status = ${status}, error_step = ${errorStep}, error_message = ${message},
        finished_at = now(), updated_at = now()
      where id = ${runId} and status in (${inList([...fromStatuses])}) returning id`);
    return rows.length > 0;
  }
}

async function lockBatch(tx: DatabaseOrTransaction, batch: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${BATCH_LOCK_SPACE}, hashtext(${batch}))`);
}

export interface RunQueueOptions {
  store: QueueStore;
  /** This server process; claimed runs are marked as its own. */
  runnerId: string;
  /** True when this process is the only one using the database (PGlite): every run is its own. */
  exclusive?: boolean;
  /** VIVARIA_RUN_QUEUE_INTERVAL_MS: how often the queue is checked even when nothing pokes it. */
  intervalMs: number;
  /** Starts a claimed run in the background. */
  start: (runId: number) => void;
  /** Holds the queue while the host is overloaded (VM_HOST_MAX_CPU / VM_HOST_MAX_MEMORY). */
  hostLoad?: HostLoadGate;
  /**
   * How many runs this process is working on. While it works on none, an overloaded host still gets one run at a
   * time: the load is someone else's then, and holding would stall the queue for as long as it lasts.
   */
  activeCount?: () => number;
  /** How many queued runs one pass looks at (default 500). */
  candidatesPerPass?: number;
  /** Called on every pass before claiming (e.g. to act on kill requests from other processes). */
  beforePass?: () => Promise<void>;
  /**
   * At most this many runs start per pass (default: as many as capacity allows). With `timerOnly` and a 6 s interval,
   * 1 models a queue that starts one run per tick (the reference design's default), for comparison in benchmarks.
   */
  startsPerPass?: number;
  /** Pass only on the timer: creations, ends and limit changes do not trigger a pass. */
  timerOnly?: boolean;
  log: Logger;
}

/**
 * The worker loop: on a timer and whenever poked (a run was created or ended, a batch limit changed), one pass
 * claims as many queued runs as capacity allows and starts them. Passes never overlap; a poke during a pass runs
 * another pass right after it.
 */
export class RunQueue {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private started = false;
  private stopped = false;
  /** Why the last pass held the queue (host overloaded), if it did. */
  holdReason: string | undefined;

  constructor(private readonly options: RunQueueOptions) {}

  get store(): QueueStore {
    return this.options.store;
  }

  get runnerId(): string {
    return this.options.runnerId;
  }

  get exclusive(): boolean {
    return this.options.exclusive === true;
  }

  start(): void {
    this.started = true;
    this.stopped = false;
    this.timer = setInterval(() => this.schedulePass(), this.options.intervalMs);
    this.timer.unref();
    this.schedulePass();
  }

  /** Asks for a pass as soon as possible. */
  poke(): void {
    if (this.options.timerOnly) return;
    this.schedulePass();
  }

  private schedulePass(): void {
    if (!this.started || this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.pass();
        } catch (error) {
          this.options.log.error({ err: error }, 'run queue pass failed');
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
  }

  /** One pass: returns the ids of the runs it started. */
  async pass(): Promise<number[]> {
    if (this.stopped) return [];
    await this.options.beforePass?.();
    const hold = await this.options.hostLoad?.overloaded();
    if (hold !== this.holdReason) {
      if (hold) this.options.log.warn(`run queue held: ${hold}`);
      else if (this.holdReason) this.options.log.info('run queue released: host load is back under the limits');
    }
    this.holdReason = hold;
    const idle = this.options.activeCount !== undefined && this.options.activeCount() === 0;
    if (hold && !idle) {
      // Look again soon rather than a whole interval later: load usually drops within seconds.
      if (!this.options.timerOnly) setTimeout(() => this.poke(), Math.min(this.options.intervalMs, 1000)).unref();
      return [];
    }
    if (this.stopped) return [];
    const claimed = await this.options.store.claim(this.options.runnerId, {
      ...(this.options.startsPerPass !== undefined && { maxRuns: this.options.startsPerPass }),
      ...(hold && { maxRuns: 1 }),
      ...(this.options.candidatesPerPass !== undefined && { candidates: this.options.candidatesPerPass }),
    });
    for (const id of claimed) this.options.start(id);
    return claimed;
  }

  /** Stops the loop and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
