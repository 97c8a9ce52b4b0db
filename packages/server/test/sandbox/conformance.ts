/**
 * The Sandbox conformance suite: the behaviour every backend must have, run against a real backend.
 * A backend's test file calls describeSandboxConformance with a factory and an image (Debian-based, with
 * coreutils, util-linux, python3 and the `nobody` user).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecOptions, ImageBuildSpec, Sandbox, SandboxBackend, SandboxSpec } from '../../src/sandbox/types.js';
import { SandboxUnsupportedError } from '../../src/sandbox/types.js';

export interface ConformanceOptions {
  /** A Debian-based image with coreutils, util-linux, python3 and the `nobody` user. */
  image: () => Promise<string>;
  /** A non-root user that exists in the image; default 'nobody' (group 'nogroup'). */
  nonRootUser?: { name: string; group: string };
  /** Run the buildImage cases (default true). */
  build?: boolean;
  /** Returns everything the backend stores about an image (config, history...) as text, to look for secrets. */
  imageMetadata?: (tag: string) => Promise<string>;
  /** Deletes an image the suite built. */
  removeImage?: (tag: string) => Promise<void>;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** Command lines of the live processes in a sandbox (zombies have an empty cmdline and are left out). */
const PROCESS_LIST =
  'for p in /proc/[0-9]*; do c=$(tr "\\0" " " < $p/cmdline 2>/dev/null); [ -n "$c" ] && echo "$c"; done';

export function describeSandboxConformance(
  name: string,
  makeBackend: () => SandboxBackend | Promise<SandboxBackend>,
  options: ConformanceOptions,
): void {
  describe(`sandbox conformance: ${name}`, () => {
    const runId = randomBytes(6).toString('hex');
    const runLabel = { 'terrarium.test-run': runId };
    const user = options.nonRootUser ?? { name: 'nobody', group: 'nogroup' };
    let backend: SandboxBackend;
    let image: string;
    let shared: Sandbox;
    const hostDirs: string[] = [];
    const builtImages: string[] = [];

    const create = (spec: Partial<SandboxSpec> & { labels?: Record<string, string> } = {}) =>
      backend.create({ image, network: { kind: 'none' }, ...spec, labels: { ...runLabel, ...spec.labels } });
    const sh = (sandbox: Sandbox, script: string, extra: Partial<ExecOptions> = {}) =>
      sandbox.exec({ cmd: ['sh', '-c', script], ...extra });
    const hostDir = async () => {
      const dir = await mkdtemp(join(tmpdir(), 'terrarium-conformance-'));
      hostDirs.push(dir);
      return dir;
    };

    beforeAll(async () => {
      backend = await makeBackend();
      await backend.ping();
      image = await options.image();
      shared = await create({ name: 'conf-shared', labels: { role: 'shared' }, env: { SANDBOX_ENV: 'from-spec' } });
    });

    afterAll(async () => {
      if (backend) {
        for (const info of await backend.list(runLabel)) {
          await (await backend.get(info.id))?.destroy();
        }
        expect(await backend.list(runLabel)).toEqual([]);
      }
      for (const tag of builtImages) await options.removeImage?.(tag);
      for (const dir of hostDirs) await rm(dir, { recursive: true, force: true });
    });

    describe('lifecycle', () => {
      it('creates a running sandbox that inspect, get and list find', async () => {
        const info = await shared.inspect();
        expect(info.id).toBe(shared.id);
        expect(info.name).toBe(shared.name);
        expect(info.state).toBe('running');
        expect(info.labels).toMatchObject({ ...runLabel, role: 'shared' });
        expect(info.createdAt.getTime()).toBeGreaterThan(Date.now() - 10 * 60_000);

        const again = await backend.get(shared.id);
        expect(again?.id).toBe(shared.id);
        expect((await again!.exec({ cmd: ['echo', 'reattached'] })).stdout).toBe('reattached\n');

        const listed = await backend.list({ ...runLabel, role: 'shared' });
        expect(listed.map((s) => s.id)).toEqual([shared.id]);
        expect(listed[0]!.state).toBe('running');
      });

      it('makes names unique', async () => {
        const [a, b] = await Promise.all([create({ name: 'same' }), create({ name: 'same' })]);
        expect(a.name).not.toBe(b.name);
        await Promise.all([a.destroy(), b.destroy()]);
      });

      it('lists by labels', async () => {
        const [a, b] = await Promise.all([
          create({ labels: { role: 'list-a' } }),
          create({ labels: { role: 'list-b' } }),
        ]);
        expect((await backend.list({ ...runLabel, role: 'list-a' })).map((s) => s.id)).toEqual([a.id]);
        expect((await backend.list({ ...runLabel, role: 'list-b' })).map((s) => s.id)).toEqual([b.id]);
        expect(await backend.list({ ...runLabel, role: 'list-none' })).toEqual([]);
        await Promise.all([a.destroy(), b.destroy()]);
      });

      it('stops and starts again, keeping its files', async () => {
        const sandbox = await create({ labels: { role: 'stop-start' } });
        await sandbox.writeFile('/root/kept.txt', 'still here');
        await sandbox.stop({ timeoutSeconds: 5 });
        expect((await sandbox.inspect()).state).toBe('stopped');
        expect((await backend.list({ ...runLabel, role: 'stop-start' }))[0]!.state).toBe('stopped');
        await expect(sandbox.exec({ cmd: ['true'] })).rejects.toThrow();
        await sandbox.stop(); // stopping a stopped sandbox is fine
        await sandbox.start();
        expect((await sandbox.inspect()).state).toBe('running');
        await sandbox.start(); // so is starting a running one
        expect((await sandbox.exec({ cmd: ['cat', '/root/kept.txt'] })).stdout).toBe('still here');
        await sandbox.destroy();
      });

      it('destroys idempotently; afterwards get is undefined and inspect says missing', async () => {
        const sandbox = await create({ labels: { role: 'destroy' } });
        await sandbox.destroy();
        await sandbox.destroy();
        expect(await backend.get(sandbox.id)).toBeUndefined();
        expect((await sandbox.inspect()).state).toBe('missing');
        expect(await backend.list({ ...runLabel, role: 'destroy' })).toEqual([]);
        await expect(sandbox.exec({ cmd: ['true'] })).rejects.toThrow();
      });

      it('get of an unknown id is undefined', async () => {
        expect(await backend.get(`no-such-sandbox-${runId}`)).toBeUndefined();
      });

      it('knows its images', async () => {
        expect(await backend.imageExists(image)).toBe(true);
        expect(await backend.imageExists(`terrarium-test/no-such-image:${runId}`)).toBe(false);
      });
    });

    describe('exec', () => {
      it('separates stdout, stderr and the exit code', async () => {
        const result = await sh(shared, 'echo out; echo err >&2; exit 3');
        expect(result).toMatchObject({
          exitCode: 3,
          stdout: 'out\n',
          stderr: 'err\n',
          stdoutTruncated: false,
          stderrTruncated: false,
          timedOut: false,
          aborted: false,
        });
        expect(result.durationMs).toBeGreaterThanOrEqual(0);
        expect((await shared.exec({ cmd: ['true'] })).exitCode).toBe(0);
      });

      it('passes argv without a shell', async () => {
        expect((await shared.exec({ cmd: ['echo', 'a  b', '$HOME', '*'] })).stdout).toBe('a  b $HOME *\n');
      });

      it('reports a non-zero exit code for a missing program', async () => {
        const result = await shared.exec({ cmd: ['/no/such/program'] });
        expect(result.exitCode).not.toBe(0);
        expect(result.exitCode).not.toBeNull();
      });

      it('feeds stdin, text and binary, then closes it', async () => {
        expect((await sh(shared, 'cat; echo done', { stdin: 'hello\n' })).stdout).toBe('hello\ndone\n');
        const big = randomBytes(3 * 1024 * 1024);
        const result = await shared.exec({ cmd: ['sha256sum'], stdin: big });
        expect(result.stdout.split(' ')[0]).toBe(sha256(big));
        expect((await shared.exec({ cmd: ['cat'], stdin: '' })).stdout).toBe('');
        // A process that never reads its stdin is fine too.
        const ignored = await shared.exec({ cmd: ['sh', '-c', 'exit 4'], stdin: randomBytes(8 * 1024 * 1024) });
        expect(ignored.exitCode).toBe(4);
      });

      it('sets the environment per exec on top of the sandbox env, without persisting it', async () => {
        const script = 'echo "$SANDBOX_ENV|$EXEC_ONLY"';
        expect((await sh(shared, script, { env: { EXEC_ONLY: 'x y' } })).stdout).toBe('from-spec|x y\n');
        expect((await sh(shared, script)).stdout).toBe('from-spec|\n');
      });

      it('runs as the requested user in the requested directory', async () => {
        expect((await sh(shared, 'id -un; pwd', { user: user.name, workdir: '/tmp' })).stdout).toBe(
          `${user.name}\n/tmp\n`,
        );
        expect((await shared.exec({ cmd: ['id', '-u'] })).stdout).toBe('0\n');
      });

      it('streams output while the process runs', async () => {
        const chunks: { at: number; text: string }[] = [];
        const errChunks: string[] = [];
        const started = Date.now();
        const result = await sh(shared, 'echo one; sleep 1.5; echo two; echo err >&2', {
          onStdout: (chunk) => chunks.push({ at: Date.now() - started, text: chunk.toString() }),
          onStderr: (chunk) => errChunks.push(chunk.toString()),
        });
        expect(chunks.map((c) => c.text).join('')).toBe(result.stdout);
        expect(result.stdout).toBe('one\ntwo\n');
        expect(errChunks.join('')).toBe('err\n');
        expect(chunks[0]!.text).toBe('one\n');
        expect(chunks[0]!.at).toBeLessThan(result.durationMs - 1000);
      });

      it('kills the process and all its descendants on timeout', async () => {
        const started = Date.now();
        const result = await sh(shared, '(sleep 301 &); setsid sleep 302 & sleep 303; echo not-reached', {
          timeoutMs: 1000,
        });
        expect(result.timedOut).toBe(true);
        expect(result.aborted).toBe(false);
        expect(result.exitCode).not.toBe(0);
        expect(result.stdout).not.toContain('not-reached');
        expect(Date.now() - started).toBeLessThan(8000);
        expect(result.durationMs).toBeGreaterThanOrEqual(1000);
        const processes = (await sh(shared, PROCESS_LIST)).stdout;
        expect(processes).not.toMatch(/sleep 30[123]/);
      });

      it('keeps the output produced before a timeout', async () => {
        const result = await sh(shared, 'echo before; sleep 300', { timeoutMs: 800 });
        expect(result.timedOut).toBe(true);
        expect(result.stdout).toBe('before\n');
      });

      it('kills the process when aborted', async () => {
        const controller = new AbortController();
        setTimeout(() => controller.abort(), 500);
        const result = await sh(shared, 'sleep 304 & sleep 305', { signal: controller.signal });
        expect(result.aborted).toBe(true);
        expect(result.timedOut).toBe(false);
        expect(result.durationMs).toBeLessThan(8000);
        expect((await sh(shared, PROCESS_LIST)).stdout).not.toMatch(/sleep 30[45]/);

        const preAborted = AbortSignal.abort();
        const skipped = await sh(shared, 'echo ran > /tmp/pre-aborted', { signal: preAborted });
        expect(skipped.aborted).toBe(true);
        expect((await sh(shared, 'cat /tmp/pre-aborted 2>/dev/null || echo absent')).stdout).toBe('absent\n');
      });

      it('keeps only the tail of long output, and says so', async () => {
        let streamed = 0;
        const result = await sh(shared, 'head -c 3000000 /dev/zero | tr "\\0" a; printf tail-marker; echo short >&2', {
          maxOutputBytes: 1000,
          onStdout: (chunk) => {
            streamed += chunk.length;
          },
        });
        expect(result.exitCode).toBe(0);
        expect(streamed).toBe(3_000_000 + 'tail-marker'.length);
        expect(result.stdout.length).toBe(1000);
        expect(result.stdout.endsWith('aaatail-marker')).toBe(true);
        expect(result.stdoutTruncated).toBe(true);
        expect(result.stderr).toBe('short\n');
        expect(result.stderrTruncated).toBe(false);

        const byDefault = await sh(shared, 'head -c 2000000 /dev/zero | tr "\\0" b >&2');
        expect(byDefault.stderr.length).toBe(1024 * 1024);
        expect(byDefault.stderrTruncated).toBe(true);
        expect(byDefault.stdoutTruncated).toBe(false);
      });

      it('runs concurrent execs independently', async () => {
        const results = await Promise.all(
          Array.from({ length: 6 }, (_, i) => sh(shared, `sleep 0.3; echo ${i}; exit ${i}`)),
        );
        results.forEach((result, i) => {
          expect(result.stdout).toBe(`${i}\n`);
          expect(result.exitCode).toBe(i);
        });
      });
    });

    describe('files', () => {
      it('writes and reads text, creating parent directories', async () => {
        await shared.writeFile('/tmp/conf/a/b/c.txt', 'héllo\n');
        expect((await shared.readFile('/tmp/conf/a/b/c.txt')).toString()).toBe('héllo\n');
        expect((await sh(shared, 'cat /tmp/conf/a/b/c.txt')).stdout).toBe('héllo\n');
        await shared.writeFile('/tmp/conf/a/b/c.txt', 'replaced');
        expect((await shared.readFile('/tmp/conf/a/b/c.txt')).toString()).toBe('replaced');
      });

      it('writes and reads binary content byte for byte', async () => {
        const bytes = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(1024 * 1024)]);
        await shared.writeFile('/tmp/conf/binary.bin', bytes);
        expect(sha256(await shared.readFile('/tmp/conf/binary.bin'))).toBe(sha256(bytes));
        expect((await sh(shared, 'sha256sum /tmp/conf/binary.bin')).stdout.split(' ')[0]).toBe(sha256(bytes));
        await shared.writeFile('/tmp/conf/empty', Buffer.alloc(0));
        expect((await shared.readFile('/tmp/conf/empty')).length).toBe(0);
      });

      it('sets the mode and the owner', async () => {
        await shared.writeFile('/tmp/conf/script.sh', '#!/bin/sh\necho ran\n', { mode: 0o750 });
        expect((await sh(shared, 'stat -c %a /tmp/conf/script.sh && /tmp/conf/script.sh')).stdout).toBe('750\nran\n');

        await shared.writeFile('/home/conf-owned/sub/file.txt', 'mine', { owner: user.name });
        const owners = await sh(
          shared,
          'stat -c %U:%G /home/conf-owned/sub/file.txt /home/conf-owned/sub /home/conf-owned',
        );
        expect(owners.stdout).toBe(`${user.name}:${user.group}\n`.repeat(3));
        const append = await sh(shared, 'echo more >> /home/conf-owned/sub/file.txt', { user: user.name });
        expect(append.exitCode).toBe(0);

        await shared.writeFile('/tmp/conf/group.txt', 'g', { owner: `${user.name}:root` });
        expect((await sh(shared, 'stat -c %U:%G /tmp/conf/group.txt')).stdout).toBe(`${user.name}:root\n`);
        await shared.writeFile('/tmp/conf/root.txt', 'r');
        expect((await sh(shared, 'stat -c %U /tmp/conf/root.txt')).stdout).toBe('root\n');
        // Existing parents keep their owner and mode.
        expect((await sh(shared, 'stat -c %U:%a /tmp')).stdout).toBe('root:1777\n');

        await expect(shared.writeFile('/tmp/conf/x', 'x', { owner: 'no-such-user-here' })).rejects.toThrow();
      });

      it('reads through symlinks and rejects missing files and directories', async () => {
        await sh(shared, 'mkdir -p /tmp/conf/links && echo target > /tmp/conf/links/t && ln -sf t /tmp/conf/links/l');
        expect((await shared.readFile('/tmp/conf/links/l')).toString()).toBe('target\n');
        await expect(shared.readFile('/tmp/conf/does-not-exist')).rejects.toThrow();
        await expect(shared.readFile('/tmp/conf/links')).rejects.toThrow();
      });

      it('copies a host directory in, keeping contents, modes and symlinks, with an owner', async () => {
        const dir = await hostDir();
        const blob = randomBytes(512 * 1024);
        await mkdir(join(dir, 'sub', 'deeper'), { recursive: true });
        await writeFile(join(dir, 'a.txt'), 'alpha\n');
        await writeFile(join(dir, 'sub', 'blob.bin'), blob);
        await writeFile(join(dir, 'sub', 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
        await writeFile(join(dir, 'sub', 'deeper', 'x'), '');
        await symlink('a.txt', join(dir, 'link'));

        await shared.copyDirIn(dir, '/opt/conf-in/nested', { owner: user.name });
        const check = await sh(
          shared,
          'cd /opt/conf-in/nested && cat a.txt && sha256sum sub/blob.bin && sub/run.sh && readlink link && ' +
            'stat -c %U sub/blob.bin sub/deeper/x sub . .. && test -f sub/deeper/x && echo ok',
        );
        expect(check.stdout).toBe(
          `alpha\n${sha256(blob)}  sub/blob.bin\nrun\na.txt\n${`${user.name}\n`.repeat(5)}ok\n`,
        );

        await shared.copyDirIn(dir, '/tmp/conf-in-root');
        expect((await sh(shared, 'stat -c %U /tmp/conf-in-root/a.txt /tmp/conf-in-root/sub')).stdout).toBe(
          'root\nroot\n',
        );
        // Copying into an existing directory merges.
        await shared.copyDirIn(dir, '/tmp/conf-in-root');
        expect((await sh(shared, 'ls /tmp/conf-in-root | sort')).stdout).toBe('a.txt\nlink\nsub\n');
      });

      it('copies files and directories out', async () => {
        await sh(
          shared,
          'mkdir -p /tmp/conf-out/d/e && printf one > /tmp/conf-out/d/one && head -c 100000 /dev/urandom > /tmp/conf-out/d/e/r && ' +
            'chmod 700 /tmp/conf-out/d/e/r && ln -sf one /tmp/conf-out/d/l',
        );
        const remoteHash = (await sh(shared, 'sha256sum /tmp/conf-out/d/e/r')).stdout.split(' ')[0];
        const out = await hostDir();
        await shared.copyOut('/tmp/conf-out/d', out);
        expect(await readFile(join(out, 'd', 'one'), 'utf8')).toBe('one');
        expect(sha256(await readFile(join(out, 'd', 'e', 'r')))).toBe(remoteHash);
        expect((await stat(join(out, 'd', 'e', 'r'))).mode & 0o777).toBe(0o700);
        expect(await readlink(join(out, 'd', 'l'))).toBe('one');

        await shared.copyOut('/tmp/conf-out/d/one', out);
        expect(await readFile(join(out, 'one'), 'utf8')).toBe('one');
        await expect(shared.copyOut('/tmp/conf-out/missing', out)).rejects.toThrow();
      });
    });

    describe('resources and network', () => {
      it('OOM-kills a process over the memory limit (exit 137)', async () => {
        const sandbox = await create({ resources: { memoryBytes: 64 * 1024 * 1024 } });
        const result = await sandbox.exec({
          cmd: ['python3', '-c', 'x = b"a" * (256 << 20); print(len(x))'],
          timeoutMs: 30_000,
        });
        expect(result.exitCode).toBe(137);
        expect(result.stdout).toBe('');
        const small = await sandbox.exec({ cmd: ['python3', '-c', 'x = b"a" * (16 << 20); print(len(x))'] });
        expect(small.stdout).toBe(`${16 << 20}\n`);
        await sandbox.destroy();
      });

      it('limits CPU time to the CPU count', async () => {
        const sandbox = await create({ resources: { cpus: 0.5 } });
        const result = await sandbox.exec({
          cmd: [
            'python3',
            '-c',
            // Only the busy loop is measured: interpreter start-up costs vary widely (seconds under emulation).
            'import time\ncpu0 = time.process_time()\nstart = time.time()\nwhile time.time() - start < 3: pass\nprint(time.process_time() - cpu0)',
          ],
        });
        const cpuSeconds = Number(result.stdout.trim());
        expect(cpuSeconds).toBeGreaterThan(0.5);
        expect(cpuSeconds).toBeLessThan(2.2); // ~1.5 at half a CPU; ~3.0 without a limit
        await sandbox.destroy();
      });

      it('limits the number of processes', async () => {
        const sandbox = await create({ resources: { pidsLimit: 24 } });
        const result = await sandbox.exec({
          cmd: [
            'python3',
            '-c',
            [
              'import subprocess',
              'procs, fails = [], 0',
              'for i in range(64):',
              '    try: procs.append(subprocess.Popen(["sleep", "30"]))',
              '    except OSError: fails += 1',
              'print(len(procs), fails)',
              'for p in procs: p.kill()',
            ].join('\n'),
          ],
        });
        const [started, failed] = result.stdout.trim().split(' ').map(Number);
        expect(started).toBeLessThan(24);
        expect(failed).toBeGreaterThan(0);
        await sandbox.destroy();
      });

      // A fresh sandbox plus 200 MB of writes: a software-emulated VM on a loaded machine can need more than 30 s.
      it('either enforces a disk limit or refuses it with SandboxUnsupportedError', async () => {
        let sandbox: Sandbox;
        try {
          sandbox = await create({ resources: { diskBytes: 200 * 1024 * 1024 } });
        } catch (err) {
          expect(err).toBeInstanceOf(SandboxUnsupportedError);
          expect((err as Error).message).toMatch(/TASK_ENVIRONMENT_STORAGE_GB/);
          return;
        }
        const result = await sh(sandbox, 'head -c 400000000 /dev/zero > /root/big');
        expect(result.exitCode).not.toBe(0);
        await sandbox.destroy();
      }, 120_000);

      it('has only loopback with network "none"', async () => {
        const info = await shared.inspect();
        expect(info.ipAddress).toBeUndefined();
        const interfaces = (await sh(shared, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")).stdout;
        expect(interfaces.trim().split('\n')).toEqual(['lo']);
      });
    });

    describe('buildImage', () => {
      const secret = `s3cret-${randomBytes(12).toString('hex')}`;
      let spec: ImageBuildSpec;

      beforeAll(async () => {
        const dir = await hostDir();
        await writeFile(join(dir, 'hello.txt'), 'hello from the host\n');
        spec = {
          tag: `terrarium-test/conformance:${runId}`,
          baseImage: image,
          copy: [{ hostDir: dir, destDir: '/opt/build-in', owner: user.name }],
          steps: [
            {
              description: 'check the copy and use the secret',
              run:
                'set -e; test -f /opt/build-in/hello.txt; printf %s "$BUILD_SECRET" | sha256sum | cut -d" " -f1 > /opt/secret-hash; ' +
                'echo step-one-output',
              secretEnv: { BUILD_SECRET: secret },
            },
            {
              description: 'second step',
              run: 'echo built > /opt/built.txt; [ -z "$BUILD_SECRET" ] && echo no-secret-here',
            },
          ],
          config: { user: user.name, workdir: '/opt', env: { IMAGE_ENV: 'yes' }, cmd: ['python3', '-c', 'print(1)'] },
          labels: { ...runLabel, 'terrarium.test-kind': 'build' },
          network: { kind: 'none' },
          timeoutMs: 120_000,
        };
      });

      it.runIf(options.build !== false)('builds an image whose config and history hold no secret', async () => {
        const events: { phase: string; message: string }[] = [];
        expect(await backend.buildImage(spec, (event) => events.push(event))).toBe(spec.tag);
        builtImages.push(spec.tag);
        expect(await backend.imageExists(spec.tag)).toBe(true);
        const messages = events.map((e) => e.message).join('\n');
        expect(messages).toContain('check the copy and use the secret');
        expect(messages).toContain('step-one-output');
        expect(messages).toContain('no-secret-here');
        expect(messages).not.toContain(secret);
        // No build sandbox is left behind.
        expect(await backend.list({ ...runLabel, 'terrarium.test-kind': 'build' })).toEqual([]);

        if (options.imageMetadata) {
          const metadata = await options.imageMetadata(spec.tag);
          expect(metadata.length).toBeGreaterThan(100);
          expect(metadata).not.toContain(secret);
        }

        const sandbox = await create({ image: spec.tag, labels: { role: 'from-build' } });
        const check = await sh(
          sandbox,
          'id -un; pwd; cat /opt/built.txt /opt/secret-hash; stat -c %U /opt/build-in/hello.txt',
        );
        expect(check.stdout).toBe(`${user.name}\n/opt\nbuilt\n${sha256(secret)}\n${user.name}\n`);
        const env = (await sandbox.exec({ cmd: ['env'] })).stdout;
        expect(env).toContain('IMAGE_ENV=yes');
        expect(env).toMatch(/^PATH=/m);
        expect(env).not.toContain(secret);
        expect(env).not.toContain('BUILD_SECRET');
        await sandbox.destroy();
      });

      it.runIf(options.build !== false)('returns a cached image without rebuilding', async () => {
        const events: { phase: string; message: string }[] = [];
        const started = Date.now();
        expect(await backend.buildImage(spec, (event) => events.push(event))).toBe(spec.tag);
        expect(Date.now() - started).toBeLessThan(3000);
        expect(events.some((e) => e.phase === 'step')).toBe(false);
        expect(events.some((e) => e.phase === 'cached')).toBe(true);
      });

      it.runIf(options.build !== false)('fails clearly on a failing step and cleans up', async () => {
        const failing: ImageBuildSpec = {
          ...spec,
          tag: `terrarium-test/conformance-fail:${runId}`,
          copy: [],
          steps: [{ description: 'explode on purpose', run: 'echo failing-output; echo to-stderr >&2; exit 7' }],
          labels: { ...runLabel, 'terrarium.test-kind': 'build-fail' },
        };
        const error = await backend.buildImage(failing).then(
          () => undefined,
          (err: Error) => err,
        );
        expect(error).toBeInstanceOf(Error);
        expect(error!.message).toContain('explode on purpose');
        expect(error!.message).toMatch(/exit code 7/);
        expect(error!.message).toContain('failing-output');
        expect(error!.message).toContain('to-stderr');
        expect(await backend.imageExists(failing.tag)).toBe(false);
        expect(await backend.list({ ...runLabel, 'terrarium.test-kind': 'build-fail' })).toEqual([]);
      });
    });
  });
}
