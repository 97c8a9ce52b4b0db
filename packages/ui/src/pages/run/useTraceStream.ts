import type { TraceEntryView } from '@terrarium/shared';
import { useEffect, useRef, useState } from 'react';
import { errorFromResponse, getAccessToken } from '../../api/client.js';
import { SseParser } from './sse.js';

export interface TraceStreamState {
  /** Every entry of the run (all branches), sorted by id. The array is replaced on each change. */
  entries: TraceEntryView[];
  /** The run status the stream last reported. */
  status: string | null;
  /** Whether the stream is connected. */
  live: boolean;
  error: Error | null;
}

/**
 * Follows GET /api/runs/:runId/trace/stream: the whole trace, then new entries as they are written. Read with fetch and
 * a ReadableStream rather than EventSource so the access token travels in the Authorization header, not in the URL.
 * Reconnects (resuming after the last entry it has) when the connection drops.
 */
export function useTraceStream(runId: number): TraceStreamState {
  const [state, setState] = useState<TraceStreamState>({ entries: [], status: null, live: false, error: null });
  const entriesRef = useRef<TraceEntryView[]>([]);

  useEffect(() => {
    entriesRef.current = [];
    setState({ entries: [], status: null, live: false, error: null });
    const abort = new AbortController();
    let retryTimer: ReturnType<typeof setTimeout> | undefined;

    const connect = async () => {
      const afterId = entriesRef.current.at(-1)?.id ?? 0;
      const headers = new Headers({ accept: 'text/event-stream' });
      const token = getAccessToken();
      if (token) headers.set('authorization', `Bearer ${token}`);
      try {
        const response = await fetch(`/api/runs/${runId}/trace/stream?afterId=${afterId}`, {
          headers,
          signal: abort.signal,
        });
        if (!response.ok || !response.body) {
          const error = errorFromResponse(response.status, response.statusText, await response.text());
          setState((s) => ({ ...s, live: false, error }));
          // A 4xx will not get better by retrying.
          if (response.status >= 500) retryTimer = setTimeout(connect, 2000);
          return;
        }
        setState((s) => ({ ...s, live: true, error: null }));
        const parser = new SseParser();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          let added: TraceEntryView[] = [];
          let status: string | null = null;
          for (const event of parser.push(value)) {
            if (event.event === 'entries') added = added.concat(JSON.parse(event.data) as TraceEntryView[]);
            else if (event.event === 'status') status = (JSON.parse(event.data) as { status: string }).status;
            else if (event.event === 'error') throw new Error((JSON.parse(event.data) as { message: string }).message);
          }
          if (added.length > 0) {
            const last = entriesRef.current.at(-1)?.id ?? 0;
            const fresh = added.filter((e) => e.id > last);
            entriesRef.current = entriesRef.current.concat(fresh);
          }
          if (added.length > 0 || status !== null) {
            const entries = entriesRef.current;
            setState((s) => ({ ...s, entries, ...(status !== null && { status }) }));
          }
        }
        if (!abort.signal.aborted) retryTimer = setTimeout(connect, 1000);
      } catch (error) {
        if (abort.signal.aborted) return;
        setState((s) => ({
          ...s,
          live: false,
          error: error instanceof Error ? error : new Error(String(error)),
        }));
        retryTimer = setTimeout(connect, 2000);
      }
      setState((s) => ({ ...s, live: false }));
    };
    void connect();
    return () => {
      abort.abort();
      if (retryTimer) clearTimeout(retryTimer);
    };
  }, [runId]);

  return state;
}
