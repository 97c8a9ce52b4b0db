/**
 * The microVM engine's options from Terrarium's configuration registry: storage (STORAGE_ROOT, IMAGES_DIR), root
 * file system cloning (ROOTFS_CLONE_MODE), the guest-agent transport (VSOCK_*, AGENT_VSOCK_PORT), the bridge the
 * engine owns (TERRARIUM_VM_BRIDGE, TERRARIUM_VM_SUBNET, DNS_SERVER_IP), the hypervisor
 * (TERRARIUM_MICROVM_HYPERVISOR, FIRECRACKER_BIN, JAILER_*), and the key sealing VM env values at rest (derived
 * from ACCESS_TOKEN_SECRET_KEY). The manager adds its own (limits, templates).
 */
import { accessSync, constants } from 'node:fs';
import type { Config } from '../../config/index.js';
import type { AgentTransportOptions } from './agent-client.js';
import type { QemuMicrovmBackendOptions } from './backend.js';
import type { FirecrackerOptions } from './firecracker.js';
import { type BridgeConfig, parseIpv4Cidr } from './network.js';
import { deriveStateKey } from './state-crypto.js';

/** The guest-agent transport tuning. It applies to whatever transport the hypervisor offers (virtio-serial here). */
export function transportFromConfig(config: Config): Required<AgentTransportOptions> {
  return {
    retryAttempts: config.VSOCK_RETRY_ATTEMPTS,
    retryDelayMs: config.VSOCK_RETRY_DELAY_MS,
    timeoutMs: config.VSOCK_TIMEOUT_MS,
    healthTimeoutMs: config.VSOCK_HEALTH_TIMEOUT_MS,
    binaryTimeoutMs: config.VSOCK_BINARY_TIMEOUT_MS,
    maxJsonResponseBytes: config.VSOCK_MAX_JSON_RESPONSE_BYTES,
    maxBinaryResponseBytes: config.VSOCK_MAX_BINARY_RESPONSE_BYTES,
  };
}

/** The bridge: its name, and the subnet's first host address as the gateway (with the subnet's prefix). */
export function bridgeFromConfig(config: Config): BridgeConfig {
  const [network = '', prefix = ''] = config.TERRARIUM_VM_SUBNET.split('/');
  const first = network.split('.').map(Number);
  // The gateway is the first host address: parseIpv4Cidr masks the network address, so +1 on the last octet of
  // the masked base is always inside the subnet.
  const base = parseIpv4Cidr(`${first.join('.')}/${prefix}`)
    .network.split('/')[0]!
    .split('.')
    .map(Number);
  base[3] = (base[3] ?? 0) + 1;
  return {
    name: config.TERRARIUM_VM_BRIDGE,
    ipv4: `${base.join('.')}/${prefix}`,
    dns: config.DNS_SERVER_IP ? [config.DNS_SERVER_IP] : undefined,
  };
}

/**
 * FIRECRACKER_BIN, and the jailer when JAILER_BIN is an executable file (running jailed is the production posture;
 * the registry's defaults are where Firecracker's release puts both binaries). `exists` is for tests.
 */
export function firecrackerFromConfig(
  config: Config,
  exists: (path: string) => boolean = executableSync,
): FirecrackerOptions {
  return {
    firecrackerBin: config.FIRECRACKER_BIN,
    ...(exists(config.JAILER_BIN)
      ? {
          jailer: {
            bin: config.JAILER_BIN,
            chrootBaseDir: config.JAILER_CHROOT_BASE_DIR,
            uid: config.JAILER_UID,
            gid: config.JAILER_GID,
          },
        }
      : {}),
  };
}

function executableSync(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Everything of QemuMicrovmBackendOptions that comes from the registry. */
export function microvmOptionsFromConfig(
  config: Config,
): Pick<
  QemuMicrovmBackendOptions,
  | 'storageRoot'
  | 'imagesDir'
  | 'rootfsCloneMode'
  | 'transport'
  | 'bridge'
  | 'hypervisor'
  | 'firecracker'
  | 'agentVsockPort'
  | 'stateKey'
> {
  return {
    storageRoot: config.STORAGE_ROOT,
    imagesDir: config.IMAGES_DIR,
    rootfsCloneMode: config.ROOTFS_CLONE_MODE,
    transport: transportFromConfig(config),
    bridge: bridgeFromConfig(config),
    hypervisor: config.TERRARIUM_MICROVM_HYPERVISOR,
    firecracker: firecrackerFromConfig(config),
    agentVsockPort: config.AGENT_VSOCK_PORT,
    // Unset only when loaded without generated secrets (tests): the engine then uses a per-process key.
    stateKey: config.ACCESS_TOKEN_SECRET_KEY ? deriveStateKey(config.ACCESS_TOKEN_SECRET_KEY) : undefined,
  };
}
