/** Request schemas of the `/v1` API (zod): every outside input is checked here, with messages naming what is expected. */
import { isIP } from 'node:net';
import { z } from 'zod';
import { MIN_MEM_MIB } from '../../../vmm/manager.js';

/** An IPv4/IPv6 address or CIDR, e.g. "192.0.2.7", "10.0.0.0/8", "2001:db8::/32". */
export function isAddressOrCidr(value: string): boolean {
  const [address, prefix, ...rest] = value.split('/');
  if (rest.length > 0 || !address) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name ([A-Za-z_][A-Za-z0-9_]*)');
const envMap = z.record(envName, z.string().max(1_000_000));

export const vmIdParams = z.object({ id: z.string().regex(/^vm_[0-9a-f]{12}$/, 'a VM id such as vm_0123456789ab') });
export const imageNameParams = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'an image name: lower-case letters, digits, "_", "." and "-"'),
});

export const createVmBody = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'a name of letters, digits, "_", "." and "-" (max 63)')
      .optional(),
    vcpus: z.number().int().min(1).optional().describe('vCPUs (≤ MAX_CPU); default 1'),
    memMib: z.number().int().min(MIN_MEM_MIB).optional().describe('memory in MiB (≤ MAX_MEM_MB); default 512'),
    diskMib: z.number().int().min(256).optional().describe('size of the writable disk in MiB'),
    image: imageNameParams.shape.name.optional().describe('image name; default: the default image'),
    allowList: z
      .array(z.string().refine(isAddressOrCidr, 'an IPv4/IPv6 address or CIDR, e.g. 192.0.2.7 or 10.0.0.0/8'))
      .default([])
      .describe('egress allow-list (≤ MAX_ALLOW_IPS entries)'),
    internet: z.boolean().default(false).describe('unrestricted outbound internet'),
    secretEnv: envMap.default({}).describe('environment for every exec; never logged or returned'),
    snapshotId: z.string().min(1).optional().describe('start from this snapshot'),
  })
  .strict();

export const execBody = z
  .object({
    cmd: z.array(z.string()).min(1, 'cmd needs at least the program').describe('argument vector; no shell'),
    stdin: z.string().optional(),
    env: envMap.optional(),
    cwd: z.string().startsWith('/', 'an absolute path').optional().describe('default /workspace'),
    user: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]{0,31}$|^\d+$/, 'a user name or numeric uid')
      .optional()
      .describe('default nobody'),
    timeoutMs: z.number().int().min(1).optional().describe('≤ MAX_EXEC_TIMEOUT_MS; default 60000'),
    maxOutputBytes: z.number().int().min(1).optional(),
    requestId: z
      .string()
      .regex(/^[A-Za-z0-9_-]{8,64}$/, '8-64 characters of [A-Za-z0-9_-]')
      .optional()
      .describe('retrying with the same id never runs the command twice'),
  })
  .strict();

export const runCodeBody = z
  .object({
    code: z.string().min(1).max(1_000_000).describe('the body of an async function; its return value is the result'),
    timeoutMs: z.number().int().min(1).optional().describe('≤ MAX_RUNTS_TIMEOUT_MS'),
    env: envMap.optional(),
    requestId: execBody.shape.requestId,
  })
  .strict();

export const filesQuery = z.object({
  path: z.string().max(4096).optional().describe('path relative to /workspace; default the workspace itself'),
});

export const logsQuery = z.object({
  kind: z.enum(['console', 'hypervisor']).default('console'),
  tail: z.coerce.number().int().min(1).max(10_000).default(200),
});

export const createKeyBody = z
  .object({
    name: z.string().min(1).max(100),
    expiresAt: z.iso.datetime({ offset: true }).optional().describe('ISO 8601; the key is refused from then on'),
    expiresInSeconds: z.number().int().min(1).optional(),
  })
  .strict();

export const loginBody = z
  .object({ email: z.string().min(1).max(320), password: z.string().min(1).max(1024) })
  .strict();

export const activityQuery = z.object({
  vmId: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const webhookBody = z
  .object({
    url: z.url({ protocol: /^https?$/, error: 'an http(s) URL' }),
    actions: z.array(z.string().min(1).max(64)).max(50).default([]).describe('activity actions to deliver; empty: all'),
  })
  .strict();

export const deliveriesQuery = z.object({
  state: z.enum(['pending', 'delivered', 'failed']).optional().describe('only deliveries in this state'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
