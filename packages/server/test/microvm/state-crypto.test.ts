/**
 * Secrets at rest, the pieces: env sealing (AES-256-GCM bound to the VM id), key derivation, and how QEMU is told
 * to read an encrypted memory file back (the key never on a command line).
 */
import { describe, expect, it } from 'vitest';
import { qemuArgs } from '../../src/sandbox/microvm/qemu.js';
import {
  deriveMemoryKey,
  deriveStateKey,
  openEnv,
  StateKeyError,
  sealEnv,
} from '../../src/sandbox/microvm/state-crypto.js';

const key = deriveStateKey('k'.repeat(44));

describe('sealed env', () => {
  it('round-trips, with a fresh IV each time and no value in clear', () => {
    const env = { API_TOKEN: 'tok-123456', EMPTY: '' };
    const a = sealEnv(key, 'aaaaaaaaaaaa', env);
    const b = sealEnv(key, 'aaaaaaaaaaaa', env);
    expect(a.iv).not.toBe(b.iv);
    expect(a.data).not.toBe(b.data);
    expect(JSON.stringify(a)).not.toContain('tok-123456');
    expect(openEnv(key, 'aaaaaaaaaaaa', a)).toEqual(env);
  });

  it('refuses another key, another VM id, altered data, and a malformed record', () => {
    const sealed = sealEnv(key, 'aaaaaaaaaaaa', { A: '1' });
    expect(() => openEnv(deriveStateKey('z'.repeat(44)), 'aaaaaaaaaaaa', sealed)).toThrow(/sealed with another key/);
    // Bound to the VM: a state.json copied to another VM's directory does not open there.
    expect(() => openEnv(key, 'bbbbbbbbbbbb', sealed)).toThrow(StateKeyError);
    const data = Buffer.from(sealed.data, 'base64');
    data[0] = (data[0] ?? 0) ^ 1;
    expect(() => openEnv(key, 'aaaaaaaaaaaa', { ...sealed, data: data.toString('base64') })).toThrow(StateKeyError);
    expect(() => openEnv(key, 'aaaaaaaaaaaa', { alg: 'rot13' })).toThrow(/malformed/);
  });

  it('derives distinct 32-byte keys for env and memory, deterministically; short secrets are refused', () => {
    expect(deriveStateKey('k'.repeat(44))).toEqual(key);
    expect(key).toHaveLength(32);
    expect(deriveMemoryKey(key)).toHaveLength(32);
    expect(deriveMemoryKey(key).equals(key)).toBe(false);
    expect(() => deriveStateKey('short')).toThrow(/at least 32 characters/);
  });
});

describe('QEMU restore of an encrypted memory file', () => {
  it('pipes the file through the decryption command; the key is not on the command line', () => {
    const image = {
      name: 'i',
      dir: '/i',
      kernel: '/i/vmlinuz',
      initramfs: '/i/initramfs.img',
      rootfs: '/i/rootfs.ext4',
    };
    const base = {
      accel: 'tcg' as const,
      image,
      cpus: 1,
      memoryMb: 512,
      rootfs: '/vm/rootfs.ext4',
      agentSocket: '/vm/agent.sock',
      qmpSocket: '/vm/qmp.sock',
      consoleLog: '/vm/console.log',
      pidFile: '/vm/qemu.pid',
      incomingFile: "/vm/suspend/it's.bin",
    };
    const plain = qemuArgs(base);
    expect(plain.slice(plain.indexOf('-incoming'))).toEqual(['-incoming', `exec:cat '/vm/suspend/it'\\''s.bin'`]);
    const filter = 'openssl enc -d -aes-256-ctr -pbkdf2 -iter 1 -pass env:TERRARIUM_MEMORY_KEY';
    const encrypted = qemuArgs({ ...base, incomingFilter: filter });
    expect(encrypted.slice(encrypted.indexOf('-incoming'))).toEqual([
      '-incoming',
      `exec:${filter} -in '/vm/suspend/it'\\''s.bin'`,
    ]);
    expect(encrypted.join(' ')).not.toMatch(/[0-9a-f]{64}/);
  });
});
