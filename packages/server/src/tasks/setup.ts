/**
 * The steps of preparing a task sandbox that agent runs (runs/engine.ts) and task environments share: build the task
 * image, read the task's setup data from a throwaway network-less sandbox, pick network and resources.
 */

import type { TaskSetupData } from '@terrarium/shared';
import type { NetworkPolicy, ProgressListener, SandboxBackend, SandboxResources } from '../sandbox/types.js';
import { TaskDriver } from './driver.js';
import type { TaskFamily } from './family.js';
import { taskImageSpec } from './image.js';

export interface BuildTaskImageOptions {
  backend: SandboxBackend;
  family: TaskFamily;
  baseImage: string;
  buildSecrets: Record<string, string>;
  pythonDir: string;
  /** TASK_OPERATION_TIMEOUT_MINUTES bounds TaskFamily.install() like every other task operation. */
  timeoutMs?: number | undefined;
  onProgress?: ProgressListener;
}

/** Builds (or finds) the family's task image; `cached` says whether it existed already. */
export async function buildTaskImage(options: BuildTaskImageOptions): Promise<{ image: string; cached: boolean }> {
  const spec = taskImageSpec({
    family: options.family,
    baseImage: options.baseImage,
    buildSecrets: options.buildSecrets,
    pythonDir: options.pythonDir,
  });
  if (options.timeoutMs !== undefined) spec.timeoutMs = options.timeoutMs;
  const cached = await options.backend.imageExists(spec.tag);
  const image = await options.backend.buildImage(spec, options.onProgress);
  return { image, cached };
}

export interface ReadSetupDataOptions {
  backend: SandboxBackend;
  image: string;
  family: TaskFamily;
  /** '' picks the first task get_tasks() lists. */
  taskName: string;
  /** Labels of the probe sandbox; `terrarium.purpose: task-setup-data` is added so the reaper removes leftovers. */
  labels?: Record<string, string>;
  timeoutMs?: number | undefined;
}

/** Setup data comes from a throwaway, network-less sandbox, because permissions decide the real one's network. */
export async function readTaskSetupData(options: ReadSetupDataOptions): Promise<TaskSetupData & { taskName: string }> {
  const { backend, image, family } = options;
  const probe = await backend.create({
    image,
    name: `setup-${family.name}`,
    network: { kind: 'none' },
    labels: { ...options.labels, 'terrarium.purpose': 'task-setup-data' },
  });
  try {
    const driverFor = (taskName: string) =>
      new TaskDriver({ sandbox: probe, familyName: family.name, taskName, env: {}, timeoutMs: options.timeoutMs });
    const taskName = options.taskName || (await driverFor('').getTasks())[0];
    if (!taskName) throw new Error(`Task family ${family.name} defines no tasks (get_tasks returned none).`);
    const data = await driverFor(taskName).getSetupData();
    return { ...data, taskName };
  } finally {
    await probe.destroy();
  }
}

/** `full_internet` permission: unrestricted network; otherwise only the server's hooks endpoint. */
export function networkForPermissions(permissions: readonly string[]): NetworkPolicy {
  return permissions.includes('full_internet') ? { kind: 'full' } : { kind: 'hooks-only' };
}

/** The task's resources from its manifest, else the server's defaults (AGENT_CPU_COUNT, AGENT_RAM_GB, …). */
export function resourcesForTask(
  family: TaskFamily,
  taskName: string,
  defaults: { cpus?: number | undefined; memoryGb?: number | undefined; storageGb?: number | undefined },
): SandboxResources {
  const fromManifest = family.manifest?.tasks?.[taskName]?.resources;
  const cpus = fromManifest?.cpus ?? defaults.cpus;
  const memoryGb = fromManifest?.memory_gb ?? defaults.memoryGb;
  const storageGb = fromManifest?.storage_gb ?? defaults.storageGb;
  return {
    ...(cpus !== undefined && { cpus }),
    ...(memoryGb !== undefined && { memoryBytes: Math.round(memoryGb * 1024 ** 3) }),
    ...(storageGb !== undefined && { diskBytes: Math.round(storageGb * 1024 ** 3) }),
  };
}
