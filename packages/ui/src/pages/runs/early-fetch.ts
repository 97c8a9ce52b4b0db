import { apiFetch } from '../../api/client.js';

/**
 * The runs page's data, asked for by an inline script of index.html before the app's scripts have even downloaded
 * (they take a few hundred milliseconds to arrive and parse; the runs come meanwhile). The script stores the
 * pending response here, by path.
 */
declare global {
  interface Window {
    __terrariumEarly?: Record<string, Promise<Response> | undefined>;
  }
}

/**
 * The early response for `path` if the page started one (taken once), as JSON; otherwise, or when it failed in any
 * way (no token yet, expired, network), the ordinary `apiFetch`, which reports errors in the server's words.
 */
export async function takeEarlyOrFetch<T>(path: string): Promise<T> {
  const early = window.__terrariumEarly?.[path];
  if (early && window.__terrariumEarly) window.__terrariumEarly[path] = undefined;
  if (early) {
    try {
      const response = await early;
      if (response.ok) return (await response.json()) as T;
    } catch {
      // Fall through to the ordinary request.
    }
  }
  return apiFetch<T>(path);
}
