import { ConflictError } from '../errors.js';

/** The branch has ended (submitted, fatal error, killed): it accepts no more hook calls. HTTP 409. */
export class BranchEndedError extends ConflictError {
  override name = 'BranchEndedError';
}

/** The branch stayed paused for longer than a hook call may wait. HTTP 503: the client retries. */
export class BranchPausedError extends Error {
  override name = 'BranchPausedError';
}

/**
 * The agent hung up while its call was held for a pause, so the call was dropped without being recorded: its client
 * will send it again. Nobody reads the response (HTTP 499).
 */
export class CallerGoneError extends Error {
  override name = 'CallerGoneError';
}

/** A hook call that is well-formed but not acceptable (e.g. a choice outside the options). HTTP 400. */
export class InvalidHookCallError extends Error {
  override name = 'InvalidHookCallError';
}

/** The run has no live sandbox to run task code in (not started yet, or torn down). HTTP 409. */
export class NoLiveSandboxError extends ConflictError {
  override name = 'NoLiveSandboxError';
}

/** A usage limit of the run was reached: the call is refused and the branch has ended (usage-limits). HTTP 409. */
export class UsageLimitsReachedError extends BranchEndedError {
  override name = 'UsageLimitsReachedError';
}

/**
 * A model-backed hook (checkActionSafety, model-rated options) could not get an answer from any model. HTTP 502:
 * the fault is upstream, and the agent may retry.
 */
export class ModelUnavailableError extends Error {
  override name = 'ModelUnavailableError';
}
