import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTerminalRunStatus, type RunView } from '@terrarium/shared';
import { loadConfig } from '../../src/config/index.js';
import { type RunningServer, type StartServerOptions, startServer } from '../../src/server.js';
import { testBaseImage } from './base-image.js';
import { type FakeLlmProvider, startFakeLlmProvider } from './fake-llm-provider.js';
import { freePort } from './net.js';

export const EXAMPLES_DIR = fileURLToPath(new URL('../../../../examples', import.meta.url));
export const exampleFamily = (name: string) => path.join(EXAMPLES_DIR, 'task-families', name);
export const exampleAgent = (name: string) => path.join(EXAMPLES_DIR, 'agents', name);

export interface ApiResponse<T> {
  status: number;
  body: T;
}

export interface TestServer {
  server: RunningServer;
  dataDir: string;
  accessToken: string;
  /** Calls the user API with the server's access token; the body is parsed as JSON when there is one. */
  api<T = unknown>(method: string, route: string, body?: unknown): Promise<ApiResponse<T>>;
  /** Creates a run and polls until it reaches a terminal state. */
  runToEnd(request: Record<string, unknown>, timeoutMs?: number): Promise<RunView>;
  close(): Promise<void>;
}

export interface TestServerOptions extends StartServerOptions {
  /** Extra environment variables on top of the test defaults. */
  env?: Record<string, string>;
  /** Whether the run engine needs the Docker base image (default true). */
  withBaseImage?: boolean;
}

/**
 * A real server on a free port with a fresh PGlite data directory, the test base image and the test networks; the
 * one way e2e tests start a server.
 */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const { env = {}, withBaseImage = true, ...startOptions } = options;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'terrarium-e2e-'));
  const port = startOptions.port ?? (await freePort());
  const config = loadConfig({
    TERRARIUM_DATA_DIR: dataDir,
    PORT: String(port),
    NO_INTERNET_NETWORK_NAME: 'terrarium-test-no-internet',
    FULL_INTERNET_NETWORK_NAME: 'terrarium-test-full-internet',
    ...(withBaseImage && { TERRARIUM_BASE_IMAGE: await testBaseImage() }),
    ...env,
  });
  const accessToken = config.ACCESS_TOKEN!;
  const server = await startServer(config, {
    logDestination: path.join(dataDir, 'server.jsonl'),
    ...startOptions,
    port,
  });

  async function api<T>(method: string, route: string, body?: unknown): Promise<ApiResponse<T>> {
    const response = await fetch(`${server.url}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${accessToken}`,
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  async function runToEnd(request: Record<string, unknown>, timeoutMs = 180_000): Promise<RunView> {
    const created = await api<RunView>('POST', '/api/runs', request);
    if (created.status !== 201) throw new Error(`creating the run failed: ${JSON.stringify(created.body)}`);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const { body: run } = await api<RunView>('GET', `/api/runs/${created.body.id}`);
      if (isTerminalRunStatus(run.status)) return run;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(`run ${created.body.id} did not finish within ${timeoutMs} ms`);
  }

  return {
    server,
    dataDir,
    accessToken,
    api,
    runToEnd,
    async close() {
      await server.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface LlmTestServer extends TestServer {
  /** The fake OpenAI provider behind the server's middleman; `close` stops it too. */
  fake: FakeLlmProvider;
}

/**
 * A test server (no base image) whose middleman talks to a fresh fake OpenAI provider, with the test user `u1`
 * already known: for the routes that call a model on a person's behalf (summaries, query generation, playground).
 */
export async function startLlmTestServer(env: Record<string, string> = {}): Promise<LlmTestServer> {
  const fake = await startFakeLlmProvider();
  try {
    const test = await startTestServer({
      withBaseImage: false,
      env: { OPENAI_API_URL: fake.url, OPENAI_API_KEY: fake.keys.openai, ...env },
    });
    await test.server.repo.ensureUser('u1', 'Test user');
    return {
      ...test,
      fake,
      async close() {
        await test.close();
        await fake.close();
      },
    };
  } catch (error) {
    await fake.close();
    throw error;
  }
}
