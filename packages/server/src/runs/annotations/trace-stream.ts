import { NotFoundError } from '../errors.js';
import type { RunRepository } from '../repository.js';
import type { TraceReader } from './trace-reader.js';

export interface TraceStreamOptions {
  /**
   * How often the database is asked for new entries: one indexed range query (run id, id > last), so 100 ms costs
   * little and keeps entries well within a second even on a loaded machine.
   */
  pollMs?: number;
  /** How often the run's status is looked at (status changes need not be that quick). */
  statusPollMs?: number;
  /** A comment line this often keeps proxies from closing an idle stream. */
  heartbeatMs?: number;
  /**
   * Entries per query and per SSE message, so a 100,000-entry backlog arrives in pieces: the first show at once and
   * the browser parses each as it comes.
   */
  batchSize?: number;
}

const FIRST_BATCH_SIZE = 200;

export interface SseSink {
  write(chunk: string): boolean;
  readonly closed: boolean;
}

/** One SSE message. `data` is one line of JSON (JSON.stringify never emits raw newlines). */
export function sseMessage(event: string, data: unknown, id?: number): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Streams a run's trace as server-sent events: the entries after `afterId`, then new ones as they are written, and
 * the run's status whenever it changes. New entries are found by polling the (indexed) run id + id range rather
 * than in-process events, so entries written by another server process on the same PostgreSQL arrive too.
 *
 * Events: `entries` (data: TraceEntryView[], id: the last entry's id, so a reconnect resumes with Last-Event-ID),
 * `status` (data: {status}). Resolves when the sink closes or `signal` aborts.
 */
export async function streamTrace(
  repo: RunRepository,
  reader: TraceReader,
  runId: number,
  afterId: number,
  sink: SseSink,
  signal: AbortSignal,
  options: TraceStreamOptions = {},
): Promise<void> {
  const pollMs = options.pollMs ?? 100;
  const statusPollMs = options.statusPollMs ?? 1000;
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const batchSize = options.batchSize ?? 2_000;
  let lastId = afterId;
  let lastStatus: string | undefined;
  let lastBeat = Date.now();
  let lastStatusCheck = 0;
  sink.write('retry: 1000\n\n');
  // The first page is small, so the first entries show at once however long the trace is.
  let limit = Math.min(batchSize, FIRST_BATCH_SIZE);
  while (!signal.aborted && !sink.closed) {
    const entries = await reader.page(runId, lastId, limit);
    const full = entries.length === limit;
    limit = batchSize;
    if (entries.length > 0) {
      lastId = entries.at(-1)!.id;
      sink.write(sseMessage('entries', entries, lastId));
      // Let the event loop write the message out: PGlite's queries can resolve without ever returning to it, and a
      // backlog read page after page would otherwise reach the browser only when the last page is read.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (entries.length > 0 || Date.now() - lastStatusCheck >= statusPollMs) {
      lastStatusCheck = Date.now();
      const run = await repo.getRun(runId);
      if (!run) throw new NotFoundError(`Run ${runId} does not exist.`);
      if (run.status !== lastStatus) {
        lastStatus = run.status;
        sink.write(sseMessage('status', { status: run.status }));
      }
    }
    if (Date.now() - lastBeat >= heartbeatMs) {
      sink.write(': ping\n\n');
      lastBeat = Date.now();
    }
    // A full page means more is waiting: read on at once.
    if (!full) await sleep(pollMs, signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
