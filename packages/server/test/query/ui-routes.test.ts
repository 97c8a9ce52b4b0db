/**
 * Serving the built web UI (src/api/routes/ui.ts) over real HTTP: files of the build, SPA fallback to index.html,
 * JSON 404s under the API prefixes, no path escaping the build, and a clear answer when the UI is not built.
 * (Lives beside the query tests because both belong to the runs page's server side.)
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installErrorHandler } from '../../src/api/errors.js';
import { publicUiUrl, registerUiRoutes, runPageUrl, UI_NOT_BUILT_MESSAGE } from '../../src/api/routes/ui.js';

async function serve(uiDir: string): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify();
  installErrorHandler(app);
  app.get('/api/health', async () => ({ ok: true }));
  await registerUiRoutes(app, { uiDir });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url };
}

describe('UI routes', () => {
  let dir: string;
  let built: { app: FastifyInstance; url: string };
  let missing: { app: FastifyInstance; url: string };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'terrarium-ui-'));
    await mkdir(path.join(dir, 'dist', 'assets'), { recursive: true });
    await writeFile(path.join(dir, 'dist', 'index.html'), '<!doctype html><div id="root"></div>');
    await writeFile(path.join(dir, 'dist', 'assets', 'index-abc123.js'), 'console.log(1)');
    await writeFile(path.join(dir, 'secret.txt'), 'outside the build');
    built = await serve(path.join(dir, 'dist'));
    missing = await serve(path.join(dir, 'not-built'));
  });
  afterAll(async () => {
    await built?.app.close();
    await missing?.app.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers the pages of the app with index.html, revalidated on each load', async () => {
    for (const route of ['/', '/runs', '/runs/42?sql=SELECT%201', '/task-environments']) {
      const response = await fetch(`${built.url}${route}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/text\/html/);
      expect(response.headers.get('cache-control')).toMatch(/no-cache|max-age=0/);
      expect(await response.text()).toContain('<div id="root">');
    }
  });

  it('serves hashed assets with a long cache lifetime', async () => {
    const response = await fetch(`${built.url}/assets/index-abc123.js`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/javascript/);
    expect(response.headers.get('cache-control')).toMatch(/immutable/);
    expect(await response.text()).toBe('console.log(1)');
  });

  it('keeps API routes working and answers unknown API paths with a JSON 404', async () => {
    expect(await (await fetch(`${built.url}/api/health`)).json()).toEqual({ ok: true });
    for (const route of ['/api/nope', '/hooks/nope', '/llm/nope', '/v1/nope', '/api']) {
      const response = await fetch(`${built.url}${route}`);
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: { code: 'not_found' } });
    }
  });

  it('never serves a file outside the build', async () => {
    const response = await fetch(`${built.url}/..%2fsecret.txt`);
    expect(await response.text()).not.toContain('outside the build');
    const bad = await fetch(`${built.url}/%E0%A4%A`);
    expect(bad.status).toBe(400);
  });

  it('says how to build the UI when it is not built', async () => {
    const response = await fetch(`${missing.url}/runs`);
    expect(response.status).toBe(503);
    expect(await response.text()).toBe(UI_NOT_BUILT_MESSAGE);
    expect(UI_NOT_BUILT_MESSAGE).toContain('npm run build -w packages/ui');
  });

  it('builds run links on UI_URL, else on the server address', () => {
    expect(runPageUrl(publicUiUrl('https://terrarium.example.com/', 'http://127.0.0.1:4001'), 7)).toBe(
      'https://terrarium.example.com/runs/7',
    );
    expect(runPageUrl(publicUiUrl(undefined, 'http://127.0.0.1:4001'), 7)).toBe('http://127.0.0.1:4001/runs/7');
  });
});
