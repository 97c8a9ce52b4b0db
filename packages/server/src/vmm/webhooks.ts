/**
 * Webhooks: every activity event (create, stop, start, destroy, lost, …) is POSTed as JSON to each registered URL
 * that wants its action. Deliveries are signed, `X-Terrarium-Signature: sha256=<hex HMAC-SHA256 of
 * "<timestamp>.<body>">` under the webhook's secret, with `X-Terrarium-Timestamp` (ms) so receivers can refuse
 * replays, and retried with exponential backoff on network errors and non-2xx answers. Pending retries live in
 * memory: a manager restart drops them (the activity log keeps every event).
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/client.js';
import { type VmmWebhookRow, vmmWebhooks } from '../db/schema.js';
import { notFound } from './errors.js';
import type { ActivityEvent, VmmStore } from './store.js';

export interface WebhookView {
  id: string;
  url: string;
  actions: string[];
  createdAt: string;
}

export interface WebhookOptions {
  /** Delivery attempts in all (first try included). Default 5. */
  attempts?: number;
  /** Delay before the first retry; doubles each time. Default 1 s. */
  baseDelayMs?: number;
  /** Timeout of one delivery. Default 10 s. */
  timeoutMs?: number;
}

export function signPayload(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

const view = (row: VmmWebhookRow): WebhookView => ({
  id: row.id,
  url: row.url,
  actions: row.actions,
  createdAt: row.createdAt.toISOString(),
});

export class Webhooks {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly listener = (event: ActivityEvent) => void this.dispatch(event);
  private closed = false;

  constructor(
    private readonly db: Database,
    private readonly store: VmmStore,
    private readonly log: Logger,
    private readonly options: WebhookOptions = {},
  ) {
    store.events.on('activity', this.listener);
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
  }

  close(): void {
    this.closed = true;
    this.store.events.off('activity', this.listener);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private async dispatch(event: ActivityEvent): Promise<void> {
    let hooks: VmmWebhookRow[];
    try {
      hooks = await this.db.select().from(vmmWebhooks);
    } catch (err) {
      if (!this.closed) this.log.warn({ err }, 'loading webhooks failed');
      return;
    }
    for (const hook of hooks) {
      if (hook.actions.length > 0 && !hook.actions.includes(event.action)) continue;
      void this.deliver(hook, event, 1);
    }
  }

  private async deliver(hook: VmmWebhookRow, event: ActivityEvent, attempt: number): Promise<void> {
    if (this.closed) return;
    const attempts = this.options.attempts ?? 5;
    const body = JSON.stringify({ type: 'activity', deliveryAttempt: attempt, event });
    const timestamp = String(Date.now());
    let failure: string | undefined;
    try {
      const response = await fetch(hook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-terrarium-event': event.action,
          'x-terrarium-delivery': `${event.id}`,
          'x-terrarium-timestamp': timestamp,
          'x-terrarium-signature': signPayload(hook.secret, timestamp, body),
        },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
      await response.arrayBuffer().catch(() => undefined);
      if (response.ok) return;
      failure = `HTTP ${response.status}`;
    } catch (err) {
      failure = (err as Error).message;
    }
    if (attempt >= attempts || this.closed) {
      this.log.warn({ webhook: hook.id, event: event.id, failure }, 'webhook delivery failed; giving up');
      return;
    }
    const delay = (this.options.baseDelayMs ?? 1000) * 2 ** (attempt - 1);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void this.deliver(hook, event, attempt + 1);
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }
}
