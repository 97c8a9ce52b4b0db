/** The Task Standard driver: load a task family, build its image, call its TaskFamily methods. */
export type { IntermediateScoreResult, Manifest, ScoreLogEntry, TaskSetupData, VMSpec } from '@terrarium/shared';
export {
  decodeIntermediateScore,
  decodeNumber,
  decodeScore,
  describeValue,
  type IntermediateScoreOutcome,
  interpretExecResult,
  type OperationContext,
  type OperationOptions,
  parseTaskhelperOutput,
  RESULT_SEPARATOR,
  type ScoreResult,
  TaskDriver,
  type TaskDriverOptions,
  type TaskhelperOutput,
  type TaskOperation,
  TaskOperationError,
  type TaskOperationErrorKind,
  tailOf,
  toPythonJson,
} from './driver.js';
export {
  defaultTaskhelperPath,
  hashDirectory,
  type LoadTaskFamilyOptions,
  listFamilyFiles,
  loadTaskFamily,
  MANIFEST_FILE,
  parseManifest,
  readTaskhelper,
  type TaskFamily,
  TaskFamilyLoadError,
} from './family.js';
export {
  type EnvSource,
  imageNameComponent,
  MissingEnvironmentVariablesError,
  parseDotenv,
  readTaskSecrets,
  resolveRequiredEnv,
  TASK_IMAGE_PATHS,
  type TaskImageSpecOptions,
  taskImageSpec,
} from './image.js';
export {
  type BuildTaskImageOptions,
  buildTaskImage,
  networkForPermissions,
  type ReadSetupDataOptions,
  readTaskSetupData,
  resourcesForTask,
} from './setup.js';
