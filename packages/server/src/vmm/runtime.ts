/**
 * Builds the microVM manager from the configuration (TERRARIUM_VMM=true): the QEMU engine, the manager, the API-key
 * store, admin sessions and the reconciler, which runs once before the API opens and then on a timer.
 */
import type { Logger } from 'pino';
import { AdminSessions } from '../auth/admin-sessions.js';
import { ApiKeyStore } from '../auth/api-keys.js';
import { type Config, requireConfigValue } from '../config/index.js';
import type { Database } from '../db/client.js';
import { QemuMicrovmBackend } from '../sandbox/microvm/backend.js';
import { microvmOptionsFromConfig } from '../sandbox/microvm/config.js';
import { VmManager } from './manager.js';
import { DEFAULT_RATE_LIMITS, RateLimiter, type RateLimits } from './rate-limit.js';
import { type HostNetworkJanitor, Reconciler } from './reconciler.js';
import { type WebhookOptions, Webhooks } from './webhooks.js';

export interface VmmRuntime {
  manager: VmManager;
  reconciler: Reconciler;
  apiKeys: ApiKeyStore;
  sessions: AdminSessions;
  configApiKey: string;
  rateLimiter: RateLimiter;
  webhooks: Webhooks;
  close(): Promise<void>;
}

export interface VmmRuntimeOptions {
  /** How often the reconciler runs after start-up; default 30 s. */
  reconcileIntervalMs?: number;
  rateLimits?: RateLimits;
  network?: HostNetworkJanitor;
  webhooks?: WebhookOptions;
}

export async function startVmm(
  config: Config,
  db: Database,
  log: Logger,
  options: VmmRuntimeOptions = {},
): Promise<VmmRuntime> {
  const configApiKey = requireConfigValue(config, 'API_KEY', 'the microVM manager is enabled (TERRARIUM_VMM=true)');
  const backend = new QemuMicrovmBackend({
    // STORAGE_ROOT, IMAGES_DIR, ROOTFS_CLONE_MODE, VSOCK_*, the bridge (TERRARIUM_VM_BRIDGE/SUBNET, DNS_SERVER_IP).
    ...microvmOptionsFromConfig(config),
    accel: 'auto',
    // The VM gets exactly the memory asked for (memMib ≥ 128 is checked by the API).
    defaultMemoryMb: 128,
    memoryOverheadMb: 0,
    maxCpu: config.MAX_CPU,
    maxMemMb: config.MAX_MEM_MB,
    maxAllowIps: config.MAX_ALLOW_IPS,
    namePrefix: 'vmm',
    // The manager restores warm templates itself, only for the SNAPSHOT_TEMPLATE_* shape.
    templates: false,
  });
  await backend.ping();
  const manager = new VmManager({
    db,
    backend,
    storageRoot: config.STORAGE_ROOT,
    imagesDir: config.IMAGES_DIR,
    limits: {
      maxVms: config.MAX_VMS,
      maxCpu: config.MAX_CPU,
      maxMemMb: config.MAX_MEM_MB,
      maxAllowIps: config.MAX_ALLOW_IPS,
      maxExecTimeoutMs: config.MAX_EXEC_TIMEOUT_MS,
      maxRunTsTimeoutMs: config.MAX_RUNTS_TIMEOUT_MS,
    },
    builtInImage:
      config.KERNEL_PATH && config.BASE_ROOTFS_PATH
        ? { kernel: config.KERNEL_PATH, rootfs: config.BASE_ROOTFS_PATH }
        : undefined,
    snapshots: {
      enabled: config.ENABLE_SNAPSHOTS,
      templateCpu: config.SNAPSHOT_TEMPLATE_CPU,
      templateMemMb: config.SNAPSHOT_TEMPLATE_MEM_MB,
    },
    pool: {
      size: config.TERRARIUM_VMM_WARM_POOL_SIZE,
      vcpus: config.TERRARIUM_VMM_WARM_POOL_CPU,
      memMib: config.TERRARIUM_VMM_WARM_POOL_MEM_MB,
    },
    // Addresses are allocated in the database from the engine's bridge subnet (the gateway is its first address).
    subnet: config.TERRARIUM_VM_SUBNET,
    log,
  });
  await manager.init();
  const reconciler = new Reconciler({
    manager,
    storageRoot: config.STORAGE_ROOT,
    imagesDir: config.IMAGES_DIR,
    log,
    network: options.network ?? backend.hostNetworkJanitor(),
  });
  const report = await reconciler.reconcile();
  log.info(report, 'microVM reconciler: start-up pass done');
  reconciler.start(options.reconcileIntervalMs ?? 30_000);
  // After the start-up pass: pool VMs a previous process left are adopted (or were removed) before filling.
  manager.pool.start();
  const sessions = new AdminSessions(
    db,
    config.ADMIN_EMAIL && config.ADMIN_PASSWORD
      ? { email: config.ADMIN_EMAIL, password: config.ADMIN_PASSWORD }
      : undefined,
    config.TERRARIUM_VMM_ADMIN_SESSION_TTL_SECONDS * 1000,
  );
  const webhooks = new Webhooks(db, manager.store, log, options.webhooks);
  return {
    manager,
    webhooks,
    reconciler,
    apiKeys: new ApiKeyStore(db),
    sessions,
    configApiKey,
    rateLimiter: new RateLimiter({ ...DEFAULT_RATE_LIMITS, ...options.rateLimits }),
    async close() {
      // VMs keep running: the next manager adopts them (the reconciler checks them at its start-up). Their
      // guest-agent connections are closed, as the end of the process would (a QEMU socket takes one client).
      await manager.pool.stop();
      await reconciler.stop();
      await webhooks.close();
      for (const row of await manager.store.listVms().catch(() => [])) {
        if (row.backendId) backend.client(row.backendId).close();
      }
    },
  };
}
