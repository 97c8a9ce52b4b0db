/** The microVM engine's configuration: registry validation of its variables and the options built from them. */
import { describe, expect, it } from 'vitest';
import { ConfigError, getConfigMetadata, loadConfig } from '../../src/config/index.js';
import { bridgeFromConfig, firecrackerFromConfig, microvmOptionsFromConfig } from '../../src/sandbox/microvm/config.js';
import { deriveStateKey } from '../../src/sandbox/microvm/state-crypto.js';
import { noDisk } from '../config/helpers.js';

function loadError(env: NodeJS.ProcessEnv): string {
  try {
    loadConfig(env, noDisk);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('loadConfig did not throw');
}

describe('microVM engine configuration', () => {
  it('defaults: trbr0 on 10.213.0.0/16 (gateway 10.213.0.1), auto clone mode, the documented transport', () => {
    const options = microvmOptionsFromConfig(loadConfig({}, noDisk));
    expect(options.bridge).toEqual({ name: 'trbr0', ipv4: '10.213.0.1/16', dns: undefined });
    expect(options.storageRoot).toBe('/var/lib/run-dat-sheesh');
    expect(options.imagesDir).toBe('/var/lib/run-dat-sheesh/images');
    expect(options.rootfsCloneMode).toBe('auto');
    expect(options.transport).toEqual({
      retryAttempts: 30,
      retryDelayMs: 100,
      timeoutMs: 15_000,
      healthTimeoutMs: 15_000,
      binaryTimeoutMs: 30_000,
      maxJsonResponseBytes: 2_000_000,
      maxBinaryResponseBytes: 50_000_000,
    });
  });

  it('takes the bridge, subnet, DNS server, storage and clone mode from the environment', () => {
    const config = loadConfig(
      {
        TERRARIUM_VM_BRIDGE: 'vmbr7',
        TERRARIUM_VM_SUBNET: '192.168.77.128/25',
        DNS_SERVER_IP: '1.1.1.1',
        STORAGE_ROOT: '/srv/vms',
        ROOTFS_CLONE_MODE: 'reflink',
        VSOCK_TIMEOUT_MS: '1234',
      },
      noDisk,
    );
    const options = microvmOptionsFromConfig(config);
    expect(bridgeFromConfig(config)).toEqual({ name: 'vmbr7', ipv4: '192.168.77.129/25', dns: ['1.1.1.1'] });
    expect(options.storageRoot).toBe('/srv/vms');
    expect(options.imagesDir).toBe('/srv/vms/images');
    expect(options.rootfsCloneMode).toBe('reflink');
    expect(options.transport?.timeoutMs).toBe(1234);
  });

  it('refuses bad values, naming the variable and what is expected', () => {
    expect(loadError({ TERRARIUM_VM_SUBNET: '10.213.0.0' })).toMatch(/TERRARIUM_VM_SUBNET.*CIDR/s);
    expect(loadError({ TERRARIUM_VM_SUBNET: '10.213.0.0/31' })).toMatch(/TERRARIUM_VM_SUBNET.*8-30/s);
    expect(loadError({ TERRARIUM_VM_SUBNET: '300.1.0.0/16' })).toMatch(/TERRARIUM_VM_SUBNET/);
    expect(loadError({ TERRARIUM_VM_BRIDGE: 'a-bridge-name-too-long' })).toMatch(/TERRARIUM_VM_BRIDGE.*1-15/s);
    expect(loadError({ TERRARIUM_VM_BRIDGE: 'tr0123456789ab' })).toMatch(/TERRARIUM_VM_BRIDGE/);
    expect(loadError({ ROOTFS_CLONE_MODE: 'hardlink' })).toMatch(/ROOTFS_CLONE_MODE.*reflink/s);
    expect(loadError({ DNS_SERVER_IP: 'dns.example' })).toMatch(/DNS_SERVER_IP/);
    expect(loadError({ VSOCK_TIMEOUT_MS: '0' })).toMatch(/VSOCK_TIMEOUT_MS/);
    expect(loadError({ VSOCK_RETRY_ATTEMPTS: 'many' })).toMatch(/VSOCK_RETRY_ATTEMPTS/);
  });

  it('hypervisor, Firecracker, jailer and vsock: defaults, and the options built from them', () => {
    const defaults = microvmOptionsFromConfig(loadConfig({}, noDisk));
    expect(defaults.hypervisor).toBe('auto');
    expect(defaults.agentVsockPort).toBe(8080);
    expect(defaults.firecracker?.firecrackerBin).toBe('/usr/local/bin/firecracker');
    // Loaded without secrets: no key (the engine then uses one per process).
    expect(defaults.stateKey).toBeUndefined();

    const config = loadConfig(
      {
        TERRARIUM_MICROVM_HYPERVISOR: 'firecracker',
        FIRECRACKER_BIN: '/opt/fc/firecracker',
        JAILER_BIN: '/opt/fc/jailer',
        JAILER_CHROOT_BASE_DIR: '/srv/jail',
        JAILER_UID: '4000',
        JAILER_GID: '4001',
        AGENT_VSOCK_PORT: '52',
        ACCESS_TOKEN_SECRET_KEY: 'q5Jb0m3Vf8yYh1v2Zx9nRk4TtW6sLcA7PeQd0uGiHoE=',
      },
      noDisk,
    );
    const options = microvmOptionsFromConfig(config);
    expect(options.hypervisor).toBe('firecracker');
    expect(options.agentVsockPort).toBe(52);
    expect(options.stateKey).toEqual(deriveStateKey('q5Jb0m3Vf8yYh1v2Zx9nRk4TtW6sLcA7PeQd0uGiHoE='));
    expect(options.stateKey).toHaveLength(32);
    // Jailed only where the jailer is installed.
    expect(firecrackerFromConfig(config, () => true)).toEqual({
      firecrackerBin: '/opt/fc/firecracker',
      jailer: { bin: '/opt/fc/jailer', chrootBaseDir: '/srv/jail', uid: 4000, gid: 4001 },
    });
    expect(firecrackerFromConfig(config, () => false)).toEqual({ firecrackerBin: '/opt/fc/firecracker' });
  });

  it('refuses bad hypervisor, Firecracker and jailer settings, naming the variable and what is expected', () => {
    expect(loadError({ TERRARIUM_MICROVM_HYPERVISOR: 'vmware' })).toMatch(/TERRARIUM_MICROVM_HYPERVISOR.*firecracker/s);
    expect(loadError({ JAILER_CHROOT_BASE_DIR: 'jail' })).toMatch(/JAILER_CHROOT_BASE_DIR.*absolute/s);
    expect(loadError({ JAILER_BIN: '/opt/fc/jailer' })).toMatch(/FIRECRACKER_BIN.*required because JAILER_BIN is set/s);
    expect(loadError({ FIRECRACKER_BIN: '/opt/fc/firecracker', JAILER_BIN: '/opt/fc/firecracker' })).toMatch(
      /JAILER_BIN.*same file as FIRECRACKER_BIN/s,
    );
    expect(loadError({ JAILER_UID: '0' })).toMatch(/JAILER_UID.*root/s);
    expect(loadError({ JAILER_GID: '0' })).toMatch(/JAILER_GID.*root/s);
    expect(loadError({ JAILER_UID: '-1' })).toMatch(/JAILER_UID/);
    expect(loadError({ AGENT_VSOCK_PORT: '0' })).toMatch(/AGENT_VSOCK_PORT/);
    expect(loadError({ AGENT_VSOCK_PORT: 'eighty' })).toMatch(/AGENT_VSOCK_PORT/);
  });

  it('warns that Firecracker settings are ignored with TERRARIUM_MICROVM_HYPERVISOR=qemu', () => {
    const config = loadConfig(
      { TERRARIUM_MICROVM_HYPERVISOR: 'qemu', FIRECRACKER_BIN: '/opt/fc/firecracker', JAILER_UID: '4000' },
      noDisk,
    );
    expect(getConfigMetadata(config)!.warnings.join('\n')).toMatch(
      /TERRARIUM_MICROVM_HYPERVISOR=qemu: FIRECRACKER_BIN, JAILER_UID are ignored/,
    );
  });
});
