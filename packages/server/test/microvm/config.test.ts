/** The microVM engine's configuration: registry validation of its variables and the options built from them. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { bridgeFromConfig, microvmOptionsFromConfig } from '../../src/sandbox/microvm/config.js';
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
});
