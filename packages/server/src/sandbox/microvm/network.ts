/**
 * Host-side networking of microVMs: a Linux bridge the backend owns (with the VMs' gateway address), one tap
 * device per VM attached to it, and per-VM egress rules in nftables keyed by the tap.
 *
 * Rules live in two tables named after the bridge (`trm_<bridge>`), so several backends (or test runs) with
 * their own bridges never touch each other's rules:
 *  - `bridge trm_<bridge>`: every frame a VM sends enters the bridge through its tap. The `prerouting` chain
 *    jumps, through the `taps` verdict map, to the VM's chain `vm_<id>`, which pins the VM to its MAC and IP
 *    addresses (no spoofing), lets ARP and IPv6 neighbour discovery through, and applies the VM's policy to
 *    the destination address: allow-listed addresses and CIDRs accepted, everything else dropped. The rules
 *    exist before the tap does, so a tap never passes a frame unfiltered. (This kernel has no `meta ibrname`,
 *    and a catch-all drop for unknown taps would also hit other backends' taps: taps are matched by name.)
 *  - `inet trm_<bridge>`: the bridge family cannot tell the host's own addresses apart (no `fib` there), so
 *    VMs with outbound internet ("full") are additionally limited on the host's `input` hook: from such a VM
 *    only DNS to the gateway reaches the host itself. A `nat` chain masquerades the subnet's routed traffic.
 *  Routed traffic also has to pass Docker's iptables FORWARD chain (policy DROP on Docker hosts): the bridge
 *  gets an accept rule there (iptables, since that chain belongs to iptables-nft).
 */
import { spawn } from 'node:child_process';
import { isIPv4, isIPv6 } from 'node:net';
import type { NetworkPolicy } from '../types.js';
import { SandboxError } from '../types.js';

/** The bridge the backend owns and its subnet(s). */
export interface BridgeConfig {
  /** Interface name of the bridge (≤ 15 characters), e.g. `trbr0`. */
  name: string;
  /** Gateway address with the subnet's prefix length, e.g. `10.213.0.1/24`: given to the bridge. */
  ipv4: string;
  /** Optional IPv6 gateway address with prefix length, e.g. `fd74:726d::1/64`. */
  ipv6?: string;
  /** Name servers given to the guests (DNS_SERVER_IP); default the gateway. */
  dns?: string[];
  /** Masquerade routed traffic of the subnet (needed for "full" VMs to reach the internet). Default true. */
  masquerade?: boolean;
}

/** Where one VM sits on the bridge: the caller (the manager's database) allocates the addresses. */
export interface MicrovmNetworkAttachment {
  /** The VM's IPv4 address inside the bridge's subnet, without prefix, e.g. `10.213.0.5`. */
  ipv4: string;
  /** The VM's IPv6 address inside the bridge's IPv6 subnet (only with `BridgeConfig.ipv6`). */
  ipv6?: string;
  /** MAC address of the VM's NIC; default derived from the IPv4 address (`02:74:` + its four bytes). */
  mac?: string;
}

/** Everything needed to plumb one VM: its tap, addresses and policy. Stored in the VM's state. */
export interface VmNetwork {
  tap: string;
  mac: string;
  ipv4: string;
  ipv6?: string;
  policy: NetworkPolicy;
}

export const TAP_PREFIX = 'tr';
const TAP_PATTERN = /^tr([0-9a-f]{12})$/;

export function tapName(vmId: string): string {
  return `${TAP_PREFIX}${vmId}`;
}

export function macFromIpv4(ipv4: string): string {
  return ['02', '74', ...ipv4.split('.').map((part) => Number(part).toString(16).padStart(2, '0'))].join(':');
}

// ---- addresses ----

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

function intToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** Parses `a.b.c.d/len` into the gateway, the network, the prefix length and the usable host range. */
export function parseIpv4Cidr(cidr: string): {
  address: string;
  prefix: number;
  network: string;
  first: number;
  last: number;
} {
  const [address = '', prefixText = ''] = cidr.split('/');
  const prefix = Number(prefixText);
  if (!isIPv4(address) || !Number.isInteger(prefix) || prefix < 8 || prefix > 30) {
    throw new SandboxError(
      `bridge address "${cidr}" is not an IPv4 address with a prefix length 8-30 (e.g. 10.213.0.1/24)`,
    );
  }
  const size = 2 ** (32 - prefix);
  const base = Math.floor(ipv4ToInt(address) / size) * size;
  return { address, prefix, network: `${intToIpv4(base)}/${prefix}`, first: base + 1, last: base + size - 2 };
}

export function ipv4InSubnet(ip: string, cidr: string): boolean {
  const { first, last } = parseIpv4Cidr(cidr);
  const value = ipv4ToInt(ip);
  return isIPv4(ip) && value >= first && value <= last;
}

/** The lowest free address of the subnet (not the gateway, not in `used`). */
export function allocateIpv4(cidr: string, used: Iterable<string>): string | undefined {
  const { address, first, last } = parseIpv4Cidr(cidr);
  const taken = new Set(used);
  taken.add(address);
  for (let value = first; value <= last; value++) {
    const candidate = intToIpv4(value);
    if (!taken.has(candidate)) return candidate;
  }
  return undefined;
}

/** Splits allow-list entries (IPv4/IPv6 addresses or CIDRs) by family; throws on anything else. */
export function splitAllowList(entries: string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const entry of entries) {
    const [address = '', prefix, extra] = entry.trim().split('/');
    const prefixOk = (max: number) =>
      prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) >= 0 && Number(prefix) <= max);
    if (extra === undefined && isIPv4(address) && prefixOk(32)) v4.push(entry.trim());
    else if (extra === undefined && isIPv6(address) && prefixOk(128)) v6.push(entry.trim());
    else {
      throw new SandboxError(
        `allow-list entry "${entry}" is not an IPv4/IPv6 address or CIDR (expected e.g. 10.0.0.5, 10.0.0.0/8, fd00::/8)`,
      );
    }
  }
  return { v4, v6 };
}

// ---- commands ----

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCommand(cmd: string, args: string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: err.message }));
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

async function must(cmd: string, args: string[], input?: string): Promise<string> {
  const result = await runCommand(cmd, args, input);
  if (result.code !== 0) {
    throw new SandboxError(`${cmd} ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  }
  return result.stdout;
}

const nft = (script: string) => must('nft', ['-f', '-'], script);

// ---- the bridge ----

function tableName(bridge: string): string {
  return `trm_${bridge.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/** Owns one bridge: creates it, plumbs VMs into it, and finds what is left over. */
export class BridgeNetwork {
  readonly table: string;
  readonly gateway4: string;
  readonly gateway6?: string;
  readonly subnet4: string;
  private ready: Promise<void> | undefined;

  constructor(readonly config: BridgeConfig) {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(config.name) || TAP_PATTERN.test(config.name)) {
      throw new SandboxError(`bridge name "${config.name}" must be 1-15 characters [A-Za-z0-9_.-] and not tr<12 hex>`);
    }
    const v4 = parseIpv4Cidr(config.ipv4);
    this.gateway4 = v4.address;
    this.subnet4 = v4.network;
    if (config.ipv6) {
      const [address = ''] = config.ipv6.split('/');
      if (!isIPv6(address) || !/\/\d+$/.test(config.ipv6)) {
        throw new SandboxError(`bridge IPv6 address "${config.ipv6}" must be an IPv6 address with prefix (fd74::1/64)`);
      }
      this.gateway6 = address;
    }
    this.table = tableName(config.name);
  }

  get dns(): string[] {
    return this.config.dns?.length ? this.config.dns : [this.gateway4];
  }

  /** Creates the bridge, its addresses and the base tables (idempotent; once per process). */
  ensure(): Promise<void> {
    this.ready ??= this.setUp().catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  private async setUp(): Promise<void> {
    const { name } = this.config;
    if ((await runCommand('ip', ['link', 'show', 'dev', name])).code !== 0) {
      const added = await runCommand('ip', ['link', 'add', 'name', name, 'type', 'bridge']);
      // Another process may have created it at the same moment.
      if (added.code !== 0 && !/exists/i.test(added.stderr)) {
        throw new SandboxError(
          `cannot create the VM bridge ${name}: ${added.stderr.trim()} (needs root / CAP_NET_ADMIN)`,
        );
      }
    }
    await must('ip', ['addr', 'replace', this.config.ipv4, 'dev', name]);
    if (this.config.ipv6) await must('ip', ['-6', 'addr', 'replace', this.config.ipv6, 'dev', name, 'nodad']);
    await must('ip', ['link', 'set', 'dev', name, 'up']);
    const t = this.table;
    // `add` is idempotent for tables, chains, maps and sets; the base rules are re-created with the chains
    // flushed, so a second start-up never duplicates them (per-VM chains and map elements are kept).
    await nft(`
add table bridge ${t}
add map bridge ${t} taps { type ifname : verdict; }
add chain bridge ${t} prerouting { type filter hook prerouting priority -200; policy accept; }
flush chain bridge ${t} prerouting
add rule bridge ${t} prerouting iifname vmap @taps
add table inet ${t}
add map inet ${t} full4 { type ipv4_addr : verdict; }
add chain inet ${t} input { type filter hook input priority -10; policy accept; }
flush chain inet ${t} input
add rule inet ${t} input iifname "${name}" ip saddr vmap @full4
add chain inet ${t} postrouting { type nat hook postrouting priority 110; policy accept; }
flush chain inet ${t} postrouting
${this.config.masquerade === false ? '' : `add rule inet ${t} postrouting ip saddr ${this.subnet4} oifname != "${name}" masquerade`}
`);
    await this.allowForwarding();
  }

  /** Docker hosts drop routed traffic in iptables' FORWARD chain: let the bridge's traffic through it. */
  private async allowForwarding(): Promise<void> {
    const { name } = this.config;
    const rules = [
      ['-i', name, '-j', 'ACCEPT'],
      ['-o', name, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
    ];
    for (const rule of rules) {
      const check = await runCommand('iptables', ['-w', '-C', 'FORWARD', ...rule]);
      if (check.code === 127) return; // no iptables here: nothing else filters FORWARD either
      if (check.code !== 0) await runCommand('iptables', ['-w', '-I', 'FORWARD', ...rule]);
    }
  }

  /** The rules of one VM's chain, for its policy. */
  private vmRules(vm: VmNetwork, chain: string): string[] {
    const t = this.table;
    const rule = (text: string) => `add rule bridge ${t} ${chain} ${text}`;
    const own6 = ['fe80::/10', '::', ...(vm.ipv6 ? [vm.ipv6] : [])].join(', ');
    const rules = [
      rule(`ether saddr != ${vm.mac} drop`),
      rule(`ether type arp arp saddr ip != ${vm.ipv4} drop`),
      rule('ether type arp accept'),
      rule(`ether type ip ip saddr != ${vm.ipv4} drop`),
      rule(`ether type ip6 ip6 saddr != { ${own6} } drop`),
      rule('icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept'),
    ];
    const { policy } = vm;
    if (policy.kind === 'full') {
      // Anywhere but the other VMs of the bridge (the host itself is limited on the inet input hook).
      rules.push(rule(`ip daddr ${this.subnet4} ip daddr != ${this.gateway4} drop`));
      rules.push(rule('accept'));
    } else if (policy.kind === 'hooks-only') {
      // The host's services on the gateway (the Terrarium server is reached there).
      rules.push(rule(`ip daddr ${this.gateway4} accept`));
      if (this.gateway6) rules.push(rule(`ip6 daddr ${this.gateway6} accept`));
    } else if (policy.kind === 'allow-list') {
      const { v4, v6 } = splitAllowList(policy.allow);
      if (v4.length) rules.push(rule(`ip daddr { ${v4.join(', ')} } accept`));
      if (v6.length) rules.push(rule(`ip6 daddr { ${v6.join(', ')} } accept`));
    }
    rules.push(rule('drop'));
    return rules;
  }

  /**
   * Creates the VM's tap (attached to the bridge, up) and its rules, rules first: the tap never passes a frame
   * unfiltered. Idempotent: re-applying replaces the VM's rules.
   */
  async attach(vmId: string, vm: VmNetwork): Promise<void> {
    await this.ensure();
    if (!ipv4InSubnet(vm.ipv4, this.config.ipv4) || vm.ipv4 === this.gateway4) {
      throw new SandboxError(`VM address ${vm.ipv4} is not a host address of the bridge subnet ${this.subnet4}`);
    }
    if (vm.ipv6 && (!this.config.ipv6 || !isIPv6(vm.ipv6))) {
      throw new SandboxError(`VM IPv6 address ${vm.ipv6} needs a bridge with an IPv6 subnet (and a valid address)`);
    }
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(vm.mac)) throw new SandboxError(`bad MAC address ${vm.mac}`);
    await this.detachRules(vmId);
    const t = this.table;
    const chain = `vm_${vmId}`;
    const script = [
      `add chain bridge ${t} ${chain}`,
      ...this.vmRules(vm, chain),
      `add element bridge ${t} taps { "${vm.tap}" : jump ${chain} }`,
    ];
    if (vm.policy.kind === 'full') {
      const input = `in_${vmId}`;
      script.push(
        `add chain inet ${t} ${input}`,
        ...this.dns
          .filter((server) => server === this.gateway4)
          .flatMap((server) => [
            `add rule inet ${t} ${input} ip daddr ${server} udp dport 53 accept`,
            `add rule inet ${t} ${input} ip daddr ${server} tcp dport 53 accept`,
          ]),
        `add rule inet ${t} ${input} drop`,
        `add element inet ${t} full4 { ${vm.ipv4} : jump ${input} }`,
      );
    }
    await nft(`${script.join('\n')}\n`);
    if ((await runCommand('ip', ['link', 'show', 'dev', vm.tap])).code !== 0) {
      await must('ip', ['tuntap', 'add', 'dev', vm.tap, 'mode', 'tap']);
    }
    await must('ip', ['link', 'set', 'dev', vm.tap, 'master', this.config.name]);
    await must('ip', ['link', 'set', 'dev', vm.tap, 'up']);
  }

  /** Removes the VM's rules (map entries first, then chains). Missing pieces are fine. */
  private async detachRules(vmId: string): Promise<void> {
    const t = this.table;
    const tap = tapName(vmId);
    await runCommand('nft', ['delete', 'element', 'bridge', t, 'taps', `{ "${tap}" }`]);
    await runCommand('nft', ['delete', 'chain', 'bridge', t, `vm_${vmId}`]);
    for (const ip of await this.fullAddressesOf(vmId)) {
      await runCommand('nft', ['delete', 'element', 'inet', t, 'full4', `{ ${ip} }`]);
    }
    await runCommand('nft', ['delete', 'chain', 'inet', t, `in_${vmId}`]);
  }

  /** Entries of the `full4` map that jump to this VM's input chain. */
  private async fullAddressesOf(vmId: string): Promise<string[]> {
    return (await this.fullMap()).filter((entry) => entry.vmId === vmId).map((entry) => entry.ip);
  }

  private async fullMap(): Promise<{ ip: string; vmId: string }[]> {
    const listed = await runCommand('nft', ['-j', 'list', 'map', 'inet', this.table, 'full4']);
    if (listed.code !== 0) return [];
    const entries: { ip: string; vmId: string }[] = [];
    try {
      const parsed = JSON.parse(listed.stdout) as { nftables: { map?: { elem?: unknown[] } }[] };
      for (const item of parsed.nftables) {
        for (const elem of item.map?.elem ?? []) {
          const [ip, verdict] = elem as [string, { jump?: { target?: string } }];
          const target = verdict?.jump?.target ?? '';
          const match = /^in_([0-9a-f]{12})$/.exec(target);
          if (match?.[1] && typeof ip === 'string') entries.push({ ip, vmId: match[1] });
        }
      }
    } catch {
      // unparseable: nothing to clean
    }
    return entries;
  }

  /** Deletes the VM's tap and rules (idempotent). */
  async detach(vmId: string): Promise<void> {
    const tap = tapName(vmId);
    await runCommand('ip', ['link', 'delete', 'dev', tap]);
    await this.detachRules(vmId);
  }

  /** VM ids that have a tap on this bridge or rules in this bridge's tables. */
  async listPlumbedVmIds(): Promise<string[]> {
    const ids = new Set<string>();
    const links = await runCommand('ip', ['-j', 'link', 'show', 'master', this.config.name]);
    if (links.code === 0 && links.stdout.trim()) {
      for (const link of JSON.parse(links.stdout) as { ifname: string }[]) {
        const match = TAP_PATTERN.exec(link.ifname);
        if (match?.[1]) ids.add(match[1]);
      }
    }
    for (const family of ['bridge', 'inet']) {
      const chains = await runCommand('nft', ['-j', 'list', 'table', family, this.table]);
      if (chains.code !== 0) continue;
      const parsed = JSON.parse(chains.stdout) as { nftables: { chain?: { name: string } }[] };
      for (const item of parsed.nftables) {
        const match = /^(?:vm|in)_([0-9a-f]{12})$/.exec(item.chain?.name ?? '');
        if (match?.[1]) ids.add(match[1]);
      }
    }
    return [...ids];
  }

  /** Removes the bridge, its VMs' taps, its tables and its FORWARD rules (tests; taking the backend away). */
  async remove(): Promise<void> {
    const { name } = this.config;
    // Taps outlive their bridge (they would be left standing alone): delete ours first.
    for (const id of await this.listPlumbedVmIds()) await runCommand('ip', ['link', 'delete', 'dev', tapName(id)]);
    await runCommand('nft', ['delete', 'table', 'bridge', this.table]);
    await runCommand('nft', ['delete', 'table', 'inet', this.table]);
    await runCommand('iptables', ['-w', '-D', 'FORWARD', '-i', name, '-j', 'ACCEPT']);
    await runCommand('iptables', [
      '-w',
      '-D',
      'FORWARD',
      '-o',
      name,
      '-m',
      'conntrack',
      '--ctstate',
      'RELATED,ESTABLISHED',
      '-j',
      'ACCEPT',
    ]);
    await runCommand('ip', ['link', 'delete', 'dev', name]);
    this.ready = undefined;
  }
}

/** The guest-side configuration of a VM's NIC (the agent's `network` request). */
export function guestNetworkParams(bridge: BridgeNetwork, vm: VmNetwork) {
  const prefix4 = parseIpv4Cidr(bridge.config.ipv4).prefix;
  const prefix6 = bridge.config.ipv6?.split('/')[1];
  return {
    mac: vm.mac,
    ipv4: `${vm.ipv4}/${prefix4}`,
    gateway4: bridge.gateway4,
    ipv6: vm.ipv6 && prefix6 ? `${vm.ipv6}/${prefix6}` : undefined,
    gateway6: vm.ipv6 ? bridge.gateway6 : undefined,
    dns: bridge.dns,
  };
}
