import type { BatchView, CreateQueuedRunRequest, RunView } from '@terrarium/server/runs/service';
import type { TraceEntryView } from '@terrarium/shared';

export type { BatchView, RunView };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A small typed client for the Terrarium user API. */
export class TerrariumClient {
  constructor(
    readonly baseUrl: string,
    private readonly accessToken: string,
  ) {}

  createRun(request: CreateQueuedRunRequest): Promise<RunView> {
    return this.request('POST', '/api/runs', request);
  }

  killRun(id: number): Promise<RunView> {
    return this.request('POST', `/api/runs/${id}/kill`);
  }

  unkillRun(id: number): Promise<RunView> {
    return this.request('POST', `/api/runs/${id}/unkill`);
  }

  listBatches(): Promise<BatchView[]> {
    return this.request('GET', '/api/batches');
  }

  setBatchLimit(name: string, concurrencyLimit: number | null): Promise<BatchView> {
    return this.request('PUT', `/api/batches/${encodeURIComponent(name)}`, { concurrencyLimit });
  }

  getRun(id: number): Promise<RunView> {
    return this.request('GET', `/api/runs/${id}`);
  }

  listRuns(limit = 50): Promise<RunView[]> {
    return this.request('GET', `/api/runs?limit=${limit}`);
  }

  trace(id: number, afterId?: number): Promise<TraceEntryView[]> {
    return this.request('GET', `/api/runs/${id}/trace${afterId === undefined ? '' : `?afterId=${afterId}`}`);
  }

  /** Any user-API route, with the token, and errors that name the route and the server's message. */
  async request<T>(method: string, route: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${route}`, {
        method,
        headers: {
          Authorization: `Bearer ${this.accessToken}`,
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, `Cannot reach the Terrarium server at ${this.baseUrl}: ${(error as Error).message}`);
    }
    const text = await response.text();
    const data = text ? (JSON.parse(text) as unknown) : undefined;
    if (!response.ok) {
      const message = (data as { error?: { message?: string } } | undefined)?.error?.message ?? text;
      throw new ApiError(response.status, `${method} ${route} failed (HTTP ${response.status}): ${message}`);
    }
    return data as T;
  }
}

/** True when a Terrarium server answers at `baseUrl`. */
export async function isTerrariumServer(baseUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${baseUrl}/api/health`, { signal: AbortSignal.timeout(1500) });
    const body = (await response.json()) as { service?: string };
    return response.ok && body.service === 'terrarium';
  } catch {
    return false;
  }
}
