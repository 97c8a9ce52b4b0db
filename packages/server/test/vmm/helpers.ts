/** Shared set-up of the microVM manager tests: a real server with TERRARIUM_VMM=true and an HTTP client for /v1. */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { extract, pack } from 'tar-stream';
import { startTestServer, type TestServer, type TestServerOptions } from '../helpers/server.js';
import { IMAGE, IMAGES_DIR, MICROVM_ROOT } from '../microvm/helpers.js';

/** One storage root for the manager's VM tests (its warm templates are reused between runs). */
export const VMM_STORAGE_ROOT = `${MICROVM_ROOT}/vmm-test`;
export const VMM_SUBNET = '10.214.0.0/24';
export const VMM_BRIDGE = 'trvmmtest0';
export const ADMIN_EMAIL = 'admin@example.com';
export const ADMIN_PASSWORD = 'correct horse battery staple';

export interface V1Options {
  /** The X-API-Key to send; default the configured API_KEY, null for none. */
  key?: string | null;
  headers?: Record<string, string>;
  /** A raw body (a tar archive by default). */
  raw?: Buffer;
  contentType?: string;
}

export interface V1Response {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: the tests check response bodies by assertions
  body: any;
  headers: Headers;
}

export interface VmmTestServer extends TestServer {
  apiKey: string;
  v1(method: string, route: string, body?: unknown, options?: V1Options): Promise<V1Response>;
}

export async function startVmmServer(
  env: Record<string, string> = {},
  options: TestServerOptions = {},
): Promise<VmmTestServer> {
  const apiKey = `cfg-${randomBytes(12).toString('hex')}`;
  const server = await startTestServer({
    withBaseImage: false,
    ...options,
    env: {
      TERRARIUM_VMM: 'true',
      API_KEY: apiKey,
      ADMIN_EMAIL,
      ADMIN_PASSWORD,
      STORAGE_ROOT: VMM_STORAGE_ROOT,
      KERNEL_PATH: `${IMAGES_DIR}/${IMAGE}/vmlinuz`,
      BASE_ROOTFS_PATH: `${IMAGES_DIR}/${IMAGE}/rootfs.ext4`,
      // A bridge and subnet of their own: the engine's tests use the default ones at the same time.
      TERRARIUM_VM_BRIDGE: VMM_BRIDGE,
      TERRARIUM_VM_SUBNET: VMM_SUBNET,
      ...env,
      ...options.env,
    },
  });
  async function v1(method: string, route: string, body?: unknown, opts: V1Options = {}): Promise<V1Response> {
    const key = opts.key === undefined ? apiKey : opts.key;
    const response = await fetch(`${server.server.url}/v1${route}`, {
      method,
      headers: {
        ...(key !== null && { 'x-api-key': key }),
        ...(body !== undefined && { 'content-type': 'application/json' }),
        ...(opts.raw !== undefined && { 'content-type': opts.contentType ?? 'application/x-tar' }),
        ...opts.headers,
      },
      body: opts.raw !== undefined ? opts.raw : body === undefined ? undefined : JSON.stringify(body),
    });
    const type = response.headers.get('content-type') ?? '';
    const parsed = type.includes('json')
      ? await response.json().catch(() => undefined)
      : type.includes('x-tar')
        ? Buffer.from(await response.arrayBuffer())
        : await response.text();
    return { status: response.status, body: parsed, headers: response.headers };
  }
  return { ...server, apiKey, v1 };
}

export async function makeTar(
  entries: { name: string; content?: string; type?: 'file' | 'symlink' | 'directory'; linkname?: string }[],
) {
  const archive = pack();
  for (const entry of entries) {
    if (entry.type === 'symlink')
      archive.entry({ name: entry.name, type: 'symlink', linkname: entry.linkname ?? '/etc/passwd' });
    else if (entry.type === 'directory') archive.entry({ name: entry.name, type: 'directory' });
    else archive.entry({ name: entry.name }, entry.content ?? '');
  }
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function readTar(archive: Buffer): Promise<Map<string, { type: string; content: string }>> {
  const entries = new Map<string, { type: string; content: string }>();
  const ex = extract();
  Readable.from([archive]).pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    entries.set(entry.header.name.replace(/\/$/, ''), {
      type: entry.header.type ?? 'file',
      content: Buffer.concat(chunks).toString('utf8'),
    });
  }
  return entries;
}
