/**
 * SSH access to sandboxes (task environments and agent containers): public keys go into a user's
 * ~/.ssh/authorized_keys and an sshd started on demand listens on port 22 of the sandbox's own address.
 *
 * Why a real sshd on the sandbox's address rather than `docker exec` as the transport: task authors expect
 * `ssh agent@<ip>`, scp, rsync and editors' remote-SSH to work as with any machine, and they do. The base image
 * ships openssh-server (packages/server/src/sandbox/docker/base-image.ts); sshd only runs once a key is granted.
 */
import type { Sandbox } from '../../sandbox/types.js';
import { SandboxError } from '../../sandbox/types.js';

/** One OpenSSH public key line: type, base64 blob, optional comment. */
const SSH_PUBLIC_KEY =
  /^(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp(?:256|384|521)|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}(?: [^\r\n]*)?$/;

/** Users task authors may be granted access as. */
export type SshUser = 'agent' | 'root';

/** Explains what is wrong with a public key line, or undefined when it looks like one. */
export function sshPublicKeyProblem(key: string): string | undefined {
  const line = key.trim();
  if (line === '') return 'the public key is empty';
  if (/[\r\n]/.test(line)) return 'expected one public key on one line, got several lines';
  if (/PRIVATE KEY/.test(line)) return 'this is a private key; give the .pub file instead';
  if (!SSH_PUBLIC_KEY.test(line.replace(/\s+/g, ' '))) {
    return 'not an OpenSSH public key: expected "<type> <base64> [comment]", e.g. "ssh-ed25519 AAAA… you@host"';
  }
  return undefined;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

async function run(sandbox: Sandbox, script: string, what: string): Promise<string> {
  const result = await sandbox.exec({ cmd: ['sh', '-c', script], user: 'root', timeoutMs: 60_000 });
  if (result.exitCode !== 0) {
    throw new SandboxError(
      `${what} failed in sandbox ${sandbox.name} (exit ${result.exitCode}): ${(result.stderr || result.stdout).trim().slice(-2000)}`,
    );
  }
  return result.stdout;
}

/**
 * Adds `keys` to `user`'s ~/.ssh/authorized_keys (each once) and makes sure sshd runs. No-op for an empty list.
 * This is the hook for agent runs too: call it with SSH_PUBLIC_KEYS_WITH_ACCESS_TO_ALL_AGENT_CONTAINERS once the
 * sandbox has started.
 */
export async function installSshKeys(
  sandbox: Sandbox,
  keys: readonly string[],
  options: { user?: SshUser } = {},
): Promise<void> {
  if (keys.length === 0) return;
  for (const key of keys) {
    const problem = sshPublicKeyProblem(key);
    if (problem) throw new SandboxError(`Cannot install SSH key "${key.slice(0, 40)}…": ${problem}.`);
  }
  const user = options.user ?? 'agent';
  const home = user === 'root' ? '/root' : '/home/agent';
  const lines = keys.map((key) => key.trim().replace(/\s+/g, ' '));
  // grep -qxF keeps the file free of duplicates when the same key is granted twice.
  const script = [
    'set -eu',
    `mkdir -p ${home}/.ssh`,
    `touch ${home}/.ssh/authorized_keys`,
    ...lines.map(
      (line) =>
        `grep -qxF ${shellQuote(line)} ${home}/.ssh/authorized_keys || printf '%s\\n' ${shellQuote(line)} >> ${home}/.ssh/authorized_keys`,
    ),
    `chown -R ${user}:${user} ${home}/.ssh`,
    `chmod 700 ${home}/.ssh && chmod 600 ${home}/.ssh/authorized_keys`,
  ].join('\n');
  await run(sandbox, script, 'Installing SSH keys');
  await ensureSshd(sandbox);
}

/** Marks a sandbox whose host keys are its own (the image's, made when the package was installed, are shared). */
const HOST_KEYS_MARKER = '/etc/ssh/.terrarium-host-keys';
const HOST_KEY = '/etc/ssh/ssh_host_ed25519_key';

/**
 * Starts sshd in the sandbox unless it runs already (e.g. again after the sandbox was stopped and started).
 * Host keys are generated per sandbox the first time. Resolves once sshd accepts connections on port 22.
 */
export async function ensureSshd(sandbox: Sandbox): Promise<void> {
  const script = [
    'set -eu',
    'if [ ! -x /usr/sbin/sshd ]; then echo "NO_SSHD" >&2; exit 3; fi',
    // One ed25519 host key: generating RSA keys (ssh-keygen -A) takes seconds, and every OpenSSH client since 6.5
    // speaks ed25519.
    `if [ ! -e ${HOST_KEYS_MARKER} ]; then rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -t ed25519 -N '' -f ${HOST_KEY}; touch ${HOST_KEYS_MARKER}; fi`,
    'mkdir -p /run/sshd && chmod 755 /run/sshd',
    // sshd daemonizes; its output goes nowhere so that this exec ends when the parent exits.
    `if ! pgrep -x sshd >/dev/null 2>&1; then /usr/sbin/sshd -h ${HOST_KEY} -o PasswordAuthentication=no </dev/null >/dev/null 2>&1; fi`,
    'for i in $(seq 1 50); do if pgrep -x sshd >/dev/null 2>&1; then exit 0; fi; sleep 0.1; done',
    'echo "sshd did not start" >&2; exit 1',
  ].join('\n');
  const result = await sandbox.exec({ cmd: ['sh', '-c', script], user: 'root', timeoutMs: 60_000 });
  if (result.exitCode === 3) {
    throw new SandboxError(
      `Sandbox ${sandbox.name} has no sshd (/usr/sbin/sshd). Its image must contain openssh-server: Terrarium's ` +
        'base image does; with TERRARIUM_BASE_IMAGE set, add openssh-server to that image.',
    );
  }
  if (result.exitCode !== 0) {
    throw new SandboxError(
      `Starting sshd in sandbox ${sandbox.name} failed: ${(result.stderr || result.stdout).trim()}`,
    );
  }
}

/** Whether any authorized_keys file exists in the sandbox (then sshd is restarted with the sandbox). */
export async function hasSshKeys(sandbox: Sandbox): Promise<boolean> {
  const result = await sandbox.exec({
    cmd: ['sh', '-c', 'test -s /home/agent/.ssh/authorized_keys || test -s /root/.ssh/authorized_keys'],
    user: 'root',
    timeoutMs: 30_000,
  });
  return result.exitCode === 0;
}

/** The sandbox's SSH host public keys ("<type> <base64>"), for a known_hosts file: clients then check the host. */
export async function sshHostKeys(sandbox: Sandbox): Promise<string[]> {
  const out = await run(
    sandbox,
    'for f in /etc/ssh/ssh_host_*_key.pub; do [ -e "$f" ] && cut -d" " -f1,2 "$f"; done; true',
    'Reading SSH host keys',
  );
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
}
