/**
 * The UI's end-to-end harness: a real Terrarium server (startTestServer: real HTTP, real database, real Docker) serving
 * the built UI (packages/ui/dist; `npm run build -w packages/ui`), driven by Debian's Chromium through playwright-core.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { startTestServer, type TestServer, type TestServerOptions } from '../../server/test/helpers/server.js';

export const CHROMIUM_PATH = process.env.TERRARIUM_CHROMIUM_PATH ?? '/usr/bin/chromium';
export const UI_DIST = fileURLToPath(new URL('../dist', import.meta.url));
/** Screenshots land here (gitignored) for people to look at. */
export const SCREENSHOT_DIR = fileURLToPath(new URL('../../../test-artifacts/ui', import.meta.url));

export interface UiHarnessOptions {
  /** Passed to startTestServer (env, withBaseImage…). */
  server?: TestServerOptions;
  viewport?: { width: number; height: number };
}

export interface UiHarness {
  test: TestServer;
  browser: Browser;
  page: Page;
  /** The server's URL, which serves the UI at `/`. */
  baseUrl: string;
  /** Signs the page in through the sign-in page with the server's access token, ending on the runs page. */
  signIn(): Promise<void>;
  /** Saves a full-page screenshot of the current page as test-artifacts/ui/<name>.png; resolves to its path. */
  screenshot(name: string): Promise<string>;
  close(): Promise<void>;
}

export async function startUiHarness(options: UiHarnessOptions = {}): Promise<UiHarness> {
  if (!existsSync(path.join(UI_DIST, 'index.html'))) {
    throw new Error(`The UI is not built (${UI_DIST} has no index.html): run \`npm run build -w packages/ui\`.`);
  }
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `No Chromium at ${CHROMIUM_PATH}: run \`apt-get install -y chromium\` (or ./terrarium doctor --install).`,
    );
  }
  const test = await startTestServer(options.server);
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      args: ['--no-sandbox', '--headless', '--disable-background-networking'],
    });
    const context = await browser.newContext({ viewport: options.viewport ?? { width: 1400, height: 900 } });
    const page = await context.newPage();
    const baseUrl = test.server.url;
    const openBrowser = browser;
    return {
      test,
      browser,
      page,
      baseUrl,
      async signIn() {
        await page.goto(`${baseUrl}/login`);
        await page.getByLabel('Access token').fill(test.accessToken);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForURL(`${baseUrl}/runs`);
      },
      async screenshot(name: string) {
        await mkdir(SCREENSHOT_DIR, { recursive: true });
        const file = path.join(SCREENSHOT_DIR, `${name}.png`);
        await page.screenshot({ path: file, fullPage: true });
        return file;
      },
      async close() {
        await openBrowser.close().catch(() => {});
        await test.close();
      },
    };
  } catch (error) {
    await browser?.close().catch(() => {});
    await test.close();
    throw error;
  }
}

/**
 * Replaces the text of a CodeMirror editor the way a person does: click, select all, type. Playwright's `fill` selects
 * the contenteditable's content through the DOM, which CodeMirror reads asynchronously: on a loaded machine the text
 * can land at the old cursor instead of replacing the document. Ctrl+A goes through CodeMirror's own keymap.
 * Resolves once the editor holds exactly `text`.
 */
export async function replaceEditorText(page: Page, editor: Locator, text: string): Promise<void> {
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
  const deadline = Date.now() + 5_000;
  let seen = await editor.textContent();
  while (seen !== text) {
    if (Date.now() > deadline) throw new Error(`the editor holds ${JSON.stringify(seen)}, not ${JSON.stringify(text)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    seen = await editor.textContent();
  }
}
