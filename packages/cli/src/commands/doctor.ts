import { existsSync } from 'node:fs';
import { ensureDockerEngine } from '@terrarium/server/sandbox/docker/engine';
import { aptInstall, which, whyAptUnavailable } from '@terrarium/server/system/apt';

/** Where the web UI's end-to-end tests expect Debian's Chromium (packages/ui/e2e/harness.ts). */
const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * Checks (and with --install, provides) what Terrarium needs on this machine: a Docker engine, debootstrap to
 * build the base image locally when no registry is reachable, and Chromium for the web UI's end-to-end tests.
 */
export async function doctorCommand(options: { install?: boolean }): Promise<number> {
  const install = options.install === true;
  const say = (line: string) => process.stderr.write(`${line}\n`);
  await ensureDockerEngine({ install, log: (message: string) => say(`docker: ${message}`) });
  say('docker: the engine answers');
  if (!which('debootstrap')) {
    const why = whyAptUnavailable();
    if (!install || why) {
      say(
        `debootstrap: missing${why ? ` (and cannot install it: ${why})` : ''}. Terrarium needs it to build its base image ` +
          'locally: `apt-get install -y debootstrap`, or set TERRARIUM_BASE_IMAGE to an image such as python:3.11-slim.',
      );
      return 1;
    }
    await aptInstall(['debootstrap'], (line) => say(`apt: ${line}`));
  }
  say('debootstrap: available');
  return ensureChromium(install, say);
}

/** Chromium only matters to the UI's end-to-end tests: missing without --install is a note, not a failure. */
async function ensureChromium(install: boolean, say: (line: string) => void): Promise<number> {
  if (existsSync(CHROMIUM_PATH)) {
    say('chromium: available');
    return 0;
  }
  const why = whyAptUnavailable();
  if (!install || why) {
    say(
      `chromium: missing${why ? ` (and cannot install it: ${why})` : ''}. Only the web UI's end-to-end tests need it: ` +
        '`apt-get install -y chromium`.',
    );
    return install ? 1 : 0;
  }
  await aptInstall(['chromium'], (line) => say(`apt: ${line}`));
  say('chromium: installed');
  return 0;
}
