/**
 * IPv4 addresses and vsock CIDs for VMs, chosen inside a database transaction. Allocation takes a transaction-scoped
 * advisory lock (serialising manager processes that share a PostgreSQL database) and the unique indexes on
 * vmm_vms.ip / vmm_vms.cid back it up; nothing is counted in memory, so a restarted manager never reuses a live one.
 */

export interface Subnet {
  /** Network address as a 32-bit number. */
  base: number;
  prefix: number;
}

export function parseIpv4(text: string): number {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${text}`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export function parseSubnet(cidr: string): Subnet {
  const [address, bits] = cidr.split('/');
  const prefix = Number(bits);
  if (!address || !Number.isInteger(prefix) || prefix < 8 || prefix > 30)
    throw new Error(`not an IPv4 subnet: ${cidr}`);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (parseIpv4(address) & mask) >>> 0, prefix };
}

/** The gateway (the bridge's address): the first host address of the subnet. */
export function gatewayOf(subnet: Subnet): string {
  return formatIpv4(subnet.base + 1);
}

/** The lowest free VM address (from .2; .1 is the gateway, the last one broadcast), or undefined when full. */
export function lowestFreeIp(subnet: Subnet, used: Iterable<string>): string | undefined {
  const taken = new Set<number>();
  for (const ip of used) taken.add(parseIpv4(ip));
  const size = 2 ** (32 - subnet.prefix);
  for (let offset = 2; offset < size - 1; offset++) {
    const candidate = subnet.base + offset;
    if (!taken.has(candidate)) return formatIpv4(candidate);
  }
  return undefined;
}

/** vsock CIDs 0-2 are reserved (hypervisor, local, host). */
export const FIRST_CID = 3;

export function lowestFreeCid(used: Iterable<number>): number {
  const taken = new Set(used);
  let cid = FIRST_CID;
  while (taken.has(cid)) cid++;
  return cid;
}
