/**
 * Webhooks: every activity event (create, stop, start, destroy, lost, …) is POSTed as JSON to each registered URL
 * that wants its action. Deliveries are signed, `X-Terrarium-Signature: sha256=<hex HMAC-SHA256 of
 * "<timestamp>.<body>">` under the webhook's secret, with `X-Terrarium-Timestamp` (ms) so receivers can refuse
 * replays and `X-Terrarium-Delivery` (stable across retries) so they can drop duplicates.
 *
 * Deliveries are durable: each is a row in vmm_webhook_deliveries, written when the event is recorded, and a
 * worker sends the due ones with exponential backoff. A manager restart resumes pending deliveries where they
 * were; after the last attempt a delivery is marked 'failed' with its last status or error. A worker claims a row
 * by moving its `next_attempt_at` past the send timeout (a lease), so two manager processes never send it at once;
 * a process that dies mid-send leaves the lease to expire and the delivery is sent again (at least once; the
 * delivery id lets receivers deduplicate).
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { and, asc, desc, eq, lte, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/client.js';
import { type VmmWebhookDeliveryRow, type VmmWebhookRow, vmmWebhookDeliveries, vmmWebhooks } from '../db/schema.js';
import { notFound } from './errors.js';
import type { ActivityEvent, VmmStore } from './store.js';

export interface WebhookView {
  id: string;
  url: string;
  actions: string[];
  createdAt: string;
}

export interface DeliveryView {
  id: string;
  webhookId: string;
  eventId: number;
  action: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAttemptAt: string | null;
  lastStatus: number | null;
  lastError: string | null;
  deliveredAt: string | null;
  createdAt: string;
}

export interface WebhookOptions {
  /** Delivery attempts in all (first try included). Default 8. */
  attempts?: number;
  /** Delay before the first retry; doubles each time. Default 1 s. */
  baseDelayMs?: number;
  /** Longest delay between two attempts. Default 10 min. */
  maxDelayMs?: number;
  /** Timeout of one delivery. Default 10 s. */
  timeoutMs?: number;
  /** How often the worker looks for due deliveries. Default 1 s. */
  pollMs?: number;
}

export function signPayload(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** The delay before attempt `attempt + 1` after `attempt` failed ones. */
export function backoffMs(attempt: number, baseDelayMs: number, maxDelayMs: number): number {
  return Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
}

const view = (row: VmmWebhookRow): WebhookView => ({
  id: row.id,
  url: row.url,
  actions: row.actions,
  createdAt: row.createdAt.toISOString(),
});

const deliveryView = (row: VmmWebhookDeliveryRow): DeliveryView => ({
  id: row.id,
  webhookId: row.webhookId,
  eventId: row.eventId,
  action: row.action,
  state: row.state as DeliveryView['state'],
  attempts: row.attempts,
  nextAttemptAt: row.state === 'pending' ? row.nextAttemptAt.toISOString() : null,
  lastStatus: row.lastStatus,
  lastError: row.lastError,
  deliveredAt: row.deliveredAt?.toISOString() ?? null,
  createdAt: row.createdAt.toISOString(),
});

export class Webhooks {
  private readonly listener = (event: ActivityEvent) => void this.enqueue(event);
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  /** Enqueues in flight, so close() can wait for them (a recorded event always gets its delivery rows). */
  private readonly enqueuing = new Set<Promise<void>>();
  private closed = false;
  private readonly opts: Required<WebhookOptions>;

  constructor(
    private readonly db: Database,
    private readonly store: VmmStore,
    private readonly log: Logger,
    options: WebhookOptions = {},
  ) {
    this.opts = {
      attempts: options.attempts ?? 8,
      baseDelayMs: options.baseDelayMs ?? 1000,
      maxDelayMs: options.maxDelayMs ?? 600_000,
      timeoutMs: options.timeoutMs ?? 10_000,
      pollMs: options.pollMs ?? 1000,
    };
    store.events.on('activity', this.listener);
    this.timer = setInterval(() => this.kick(), this.opts.pollMs);
    this.timer.unref();
    // Deliveries left pending by a previous process are due now or later: look at once.
    this.kick();
  }

  async create(url: string, actions: string[]): Promise<WebhookView & { secret: string }> {
    const secret = `whsec_${randomBytes(24).toString('base64url')}`;
    const [row] = await this.db.insert(vmmWebhooks).values({ id: randomUUID(), url, secret, actions }).returning();
    return { ...view(row!), secret };
  }

  async list(): Promise<WebhookView[]> {
    return (await this.db.select().from(vmmWebhooks).orderBy(vmmWebhooks.createdAt)).map(view);
  }

  async delete(id: string): Promise<void> {
    const deleted = await this.db.delete(vmmWebhooks).where(eq(vmmWebhooks.id, id)).returning();
    if (deleted.length === 0) throw notFound(`webhook ${id}`);
    // Its pending deliveries can never be sent now: say so instead of leaving them pending forever.
    await this.db
      .update(vmmWebhookDeliveries)
      .set({ state: 'failed', lastError: 'the webhook was deleted', updatedAt: new Date() })
      .where(and(eq(vmmWebhookDeliveries.webhookId, id), eq(vmmWebhookDeliveries.state, 'pending')));
  }

  /** The deliveries of one webhook, newest first (for operators). */
  async deliveries(
    webhookId: string,
    options: { state?: DeliveryView['state']; limit?: number } = {},
  ): Promise<DeliveryView[]> {
    const [hook] = await this.db.select().from(vmmWebhooks).where(eq(vmmWebhooks.id, webhookId));
    if (!hook) throw notFound(`webhook ${webhookId}`);
    const rows = await this.db
      .select()
      .from(vmmWebhookDeliveries)
      .where(
        and(
          eq(vmmWebhookDeliveries.webhookId, webhookId),
          ...(options.state ? [eq(vmmWebhookDeliveries.state, options.state)] : []),
        ),
      )
      .orderBy(desc(vmmWebhookDeliveries.createdAt), desc(vmmWebhookDeliveries.eventId))
      .limit(options.limit ?? 100);
    return rows.map(deliveryView);
  }

  /** Stops the worker; waits for a send in progress to be recorded. Pending deliveries stay for the next process. */
  async close(): Promise<void> {
    this.closed = true;
    this.store.events.off('activity', this.listener);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.enqueuing]);
    await this.pass?.catch(() => {});
  }

  /** Writes one pending delivery per webhook that wants this event (idempotent per webhook and event). */
  private enqueue(event: ActivityEvent): void {
    const work = (async () => {
      const hooks = await this.db.select().from(vmmWebhooks);
      const wanted = hooks.filter((hook) => hook.actions.length === 0 || hook.actions.includes(event.action));
      if (wanted.length === 0) return;
      await this.db
        .insert(vmmWebhookDeliveries)
        .values(
          wanted.map((hook) => ({
            id: `dlv_${randomBytes(8).toString('hex')}`,
            webhookId: hook.id,
            eventId: event.id,
            action: event.action,
            event: { ...event },
          })),
        )
        .onConflictDoNothing();
      this.kick();
    })().catch((err: unknown) => {
      if (!this.closed) this.log.warn({ err, event: event.id }, 'queueing webhook deliveries failed');
    });
    this.enqueuing.add(work);
    void work.finally(() => this.enqueuing.delete(work));
  }

  /** Starts a worker pass unless one is running. */
  private kick(): void {
    if (this.closed || this.pass) return;
    this.pass = this.sendDue()
      .catch((err: unknown) => {
        if (!this.closed) this.log.warn({ err }, 'sending webhook deliveries failed');
      })
      .finally(() => {
        this.pass = undefined;
      });
  }

  private async sendDue(): Promise<void> {
    while (!this.closed) {
      const due = await this.db
        .select()
        .from(vmmWebhookDeliveries)
        .where(and(eq(vmmWebhookDeliveries.state, 'pending'), lte(vmmWebhookDeliveries.nextAttemptAt, new Date())))
        .orderBy(asc(vmmWebhookDeliveries.nextAttemptAt))
        .limit(20);
      if (due.length === 0) return;
      await Promise.all(due.map((row) => this.attempt(row)));
    }
  }

  /** Claims one due delivery (a lease past the send timeout), sends it and records the outcome. */
  private async attempt(row: VmmWebhookDeliveryRow): Promise<void> {
    const lease = new Date(Date.now() + this.opts.timeoutMs + 30_000);
    const [claimed] = await this.db
      .update(vmmWebhookDeliveries)
      .set({ nextAttemptAt: lease, attempts: sql`${vmmWebhookDeliveries.attempts} + 1` })
      .where(
        and(
          eq(vmmWebhookDeliveries.id, row.id),
          eq(vmmWebhookDeliveries.state, 'pending'),
          // Still due: a worker that claimed it first has moved it into the future.
          lte(vmmWebhookDeliveries.nextAttemptAt, sql`now()`),
        ),
      )
      .returning();
    if (!claimed) return; // another worker took it
    const [hook] = await this.db.select().from(vmmWebhooks).where(eq(vmmWebhooks.id, claimed.webhookId));
    if (!hook) {
      await this.finish(claimed, { state: 'failed', lastError: 'the webhook was deleted' });
      return;
    }
    const attempt = claimed.attempts;
    const body = JSON.stringify({ type: 'activity', deliveryAttempt: attempt, event: claimed.event });
    const timestamp = String(Date.now());
    let status: number | null = null;
    let failure: string | undefined;
    try {
      const response = await fetch(hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-terrarium-event': claimed.action,
          'x-terrarium-delivery': claimed.id,
          'x-terrarium-event-id': String(claimed.eventId),
          'x-terrarium-timestamp': timestamp,
          'x-terrarium-signature': signPayload(hook.secret, timestamp, body),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await response.arrayBuffer().catch(() => undefined);
      status = response.status;
      if (response.ok) {
        await this.finish(claimed, {
          state: 'delivered',
          lastStatus: status,
          lastError: null,
          deliveredAt: new Date(),
        });
        return;
      }
      failure = `HTTP ${response.status}`;
    } catch (err) {
      failure = (err as Error).message;
    }
    if (attempt >= this.opts.attempts) {
      this.log.warn({ webhook: hook.id, delivery: claimed.id, failure }, 'webhook delivery failed; giving up');
      await this.finish(claimed, { state: 'failed', lastStatus: status, lastError: failure });
      return;
    }
    const delay = backoffMs(attempt, this.opts.baseDelayMs, this.opts.maxDelayMs);
    await this.finish(claimed, {
      lastStatus: status,
      lastError: failure,
      nextAttemptAt: new Date(Date.now() + delay),
    });
    // A retry sooner than the next poll is looked at on time.
    if (delay < this.opts.pollMs) setTimeout(() => this.kick(), delay + 5).unref();
  }

  private async finish(row: VmmWebhookDeliveryRow, changes: Partial<VmmWebhookDeliveryRow>): Promise<void> {
    await this.db
      .update(vmmWebhookDeliveries)
      .set({ ...changes, updatedAt: new Date() })
      .where(eq(vmmWebhookDeliveries.id, row.id));
  }
}
