/**
 * The microVM engine's options from Terrarium's configuration registry: storage (STORAGE_ROOT, IMAGES_DIR), root
 * file system cloning (ROOTFS_CLONE_MODE), the guest-agent transport (VSOCK_*), and the bridge the engine owns
 * (TERRARIUM_VM_BRIDGE, TERRARIUM_VM_SUBNET, DNS_SERVER_IP). The manager adds its own (limits, templates).
 */
import type { Config } from '../../config/index.js';
import type { AgentTransportOptions } from './agent-client.js';
import type { QemuMicrovmBackendOptions } from './backend.js';
import { type BridgeConfig, parseIpv4Cidr } from './network.js';

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

/** Everything of QemuMicrovmBackendOptions that comes from the registry. */
export function microvmOptionsFromConfig(
  config: Config,
): Pick<QemuMicrovmBackendOptions, 'storageRoot' | 'imagesDir' | 'rootfsCloneMode' | 'transport' | 'bridge'> {
  return {
    storageRoot: config.STORAGE_ROOT,
    imagesDir: config.IMAGES_DIR,
    rootfsCloneMode: config.ROOTFS_CLONE_MODE,
    transport: transportFromConfig(config),
    bridge: bridgeFromConfig(config),
  };
}
