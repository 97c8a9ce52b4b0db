/**
 * Secret values at rest: a VM's env (the manager's secret env vars) is kept in the VM's state.json only sealed
 * with AES-256-GCM, bound to the VM's id (additional data), so no file under STORAGE_ROOT holds a value in clear.
 * The key is derived (HKDF-SHA256, its own label) from the server's ACCESS_TOKEN_SECRET_KEY, which lives in the
 * environment or in TERRARIUM_DATA_DIR/secrets.json — never under STORAGE_ROOT.
 *
 * Why sealed rather than not stored: the manager's database keeps only the names of secret env vars, and a VM
 * that is stopped (or a manager that restarted) still needs the values on its next exec, so the engine must keep
 * them somewhere that survives a restart.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { z } from 'zod';

export const sealedEnvSchema = z.object({
  alg: z.literal('aes-256-gcm'),
  iv: z.string().regex(/^[A-Za-z0-9+/=]+$/),
  tag: z.string().regex(/^[A-Za-z0-9+/=]+$/),
  data: z.string().regex(/^[A-Za-z0-9+/=]*$/),
});
export type SealedEnv = z.infer<typeof sealedEnvSchema>;

const envSchema = z.record(z.string(), z.string());

export class StateKeyError extends Error {
  override name = 'StateKeyError';
}

/** The 32-byte state key from a server secret (any length ≥ 32 characters). */
export function deriveStateKey(secret: string): Buffer {
  if (secret.length < 32) throw new StateKeyError('the state key needs a secret of at least 32 characters');
  return Buffer.from(hkdfSync('sha256', secret, 'terrarium', 'terrarium microvm state env v1', 32));
}

/** The key QEMU's suspended and snapshotted memory is encrypted with (its own HKDF label from the state key). */
export function deriveMemoryKey(stateKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', stateKey, 'terrarium', 'terrarium microvm memory v1', 32));
}

export function sealEnv(key: Buffer, vmId: string, env: Record<string, string>): SealedEnv {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(vmId, 'utf8'));
  const data = Buffer.concat([cipher.update(JSON.stringify(env), 'utf8'), cipher.final()]);
  return {
    alg: 'aes-256-gcm',
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    data: data.toString('base64'),
  };
}

/** Opens a sealed env; throws StateKeyError when the key (or the VM id) does not match or the data was altered. */
export function openEnv(key: Buffer, vmId: string, sealed: unknown): Record<string, string> {
  const parsed = sealedEnvSchema.safeParse(sealed);
  if (!parsed.success) throw new StateKeyError(`the sealed env is malformed: ${parsed.error.message}`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(parsed.data.iv, 'base64'));
    decipher.setAAD(Buffer.from(vmId, 'utf8'));
    decipher.setAuthTag(Buffer.from(parsed.data.tag, 'base64'));
    const text = Buffer.concat([decipher.update(Buffer.from(parsed.data.data, 'base64')), decipher.final()]);
    return envSchema.parse(JSON.parse(text.toString('utf8')));
  } catch {
    throw new StateKeyError(
      `the env of VM ${vmId} cannot be decrypted: it was sealed with another key (did ACCESS_TOKEN_SECRET_KEY change?)`,
    );
  }
}
