import { type HookUsageResponse, isTerminalRunStatus, type RunStatus, type RunView } from '@terrarium/shared';
import { useState } from 'react';
import { ErrorBanner } from '../../components/ErrorBanner.js';
import { confirmKill } from '../../lib/confirm-kill.js';
import { type IntermediateScore, useRunAction, useSummary } from './api.js';

function Meter({
  label,
  used,
  limit,
  format,
}: {
  label: string;
  used: number;
  limit: number;
  format: (n: number) => string;
}) {
  const ratio = limit > 0 ? used / limit : 0;
  return (
    <div className={`meter${ratio >= 0.9 ? ' meter-high' : ''}`}>
      <span className="meter-label">{label}</span>
      <progress max={limit} value={Math.min(used, limit)} aria-label={`${label} used`} />
      <span className="mono">
        {format(used)} / {format(limit)}
      </span>
    </div>
  );
}

/**
 * Pauses that end by themselves (a person's answer, a rating, the scorer finishing): the server refuses a person's
 * unpause of these, so the header does not offer one.
 */
const PAUSES_THAT_END_BY_THEMSELVES = new Set(['human-input', 'human-rating', 'scoring']);

/** Whether a person may end this pause with Unpause. */
export const personCanUnpause = (reason: string | null) => !PAUSES_THAT_END_BY_THEMSELVES.has(reason ?? '');

/** Why the branch is paused, in words (reasons: PauseReason in packages/shared/src/hooks.ts). */
export function pauseLabel(reason: string | null): string {
  switch (reason) {
    case 'user':
      return 'paused by a person';
    case 'pause-hook':
      return 'paused by the agent';
    case 'pyhooks-retry':
      return 'paused (agent retrying)';
    case 'human-input':
      return 'paused (waiting for human input)';
    case 'human-rating':
      return 'paused (waiting for a rating)';
    case 'scoring':
      return 'paused (scoring)';
    case 'checkpoint':
      return 'paused (checkpoint reached)';
    // Rows from before the 'user' reason: a person's pause was recorded as 'legacy'.
    case 'legacy':
      return 'paused (legacy)';
    default:
      return `paused (${reason ?? 'unknown reason'})`;
  }
}

/** Status, task, agent, usage against limits, scores and the run's actions. */
export function RunHeader({
  run,
  branch,
  usage,
  intermediateScores,
  branchScore,
  readOnly,
  summaryModel,
}: {
  run: RunView;
  branch: number;
  usage: HookUsageResponse | undefined;
  intermediateScores: IntermediateScore[];
  branchScore: number | null | undefined;
  readOnly: boolean;
  summaryModel: string | null;
}) {
  const action = useRunAction(run.id);
  const summary = useSummary(run.id);
  const [showSummary, setShowSummary] = useState(false);
  const ended = isTerminalRunStatus(run.status as RunStatus);
  const paused = usage?.isPaused ?? false;
  const score = branch === 0 ? run.score : branchScore;
  return (
    <header className="run-header panel">
      <div className="row">
        <h1>
          Run {run.id} <span className={`status status-${run.status}`}>{run.status}</span>
          {paused && (
            <span className="status status-paused" title={`Pause reason: ${usage?.pausedReason ?? 'unknown'}`}>
              {pauseLabel(usage?.pausedReason ?? null)}
            </span>
          )}
        </h1>
        <span className="spacer" />
        {!readOnly && (
          <div className="row" role="toolbar" aria-label="Run actions">
            {!ended &&
              (paused ? (
                personCanUnpause(usage?.pausedReason ?? null) && (
                  <button
                    type="button"
                    onClick={() => action.mutate({ path: `/api/runs/${run.id}/branches/${branch}/unpause` })}
                  >
                    Unpause
                  </button>
                )
              ) : (
                <button
                  type="button"
                  onClick={() => action.mutate({ path: `/api/runs/${run.id}/branches/${branch}/pause` })}
                >
                  Pause
                </button>
              ))}
            {!ended && (
              <button
                type="button"
                className="danger"
                onClick={() => {
                  if (confirmKill(run.id)) action.mutate({ path: `/api/runs/${run.id}/kill` });
                }}
              >
                Kill
              </button>
            )}
            {summaryModel && (
              <button
                type="button"
                onClick={() => {
                  setShowSummary(true);
                  summary.mutate();
                }}
                disabled={summary.isPending}
                title={`Summarize the trace with ${summaryModel}`}
              >
                {summary.isPending ? 'Summarizing…' : 'Summary'}
              </button>
            )}
          </div>
        )}
      </div>
      <dl className="facts">
        <dt>Task</dt>
        <dd className="mono">{run.taskId}</dd>
        <dt>Agent</dt>
        <dd className="mono">{run.agentName}</dd>
        <dt>Created</dt>
        <dd>{new Date(run.createdAt).toLocaleString()}</dd>
        <dt>Score</dt>
        <dd data-testid="final-score">{score === null || score === undefined ? '—' : score}</dd>
        {run.submission !== null && branch === 0 && (
          <>
            <dt>Submission</dt>
            <dd className="mono">{run.submission}</dd>
          </>
        )}
        {intermediateScores.length > 0 && (
          <>
            <dt>Intermediate scores</dt>
            <dd>{intermediateScores.map((s) => (s.score === null ? '—' : String(s.score))).join(', ')}</dd>
          </>
        )}
      </dl>
      {run.errorMessage && (
        <p className="entry-error" role="status">
          {run.errorStep ? `${run.errorStep}: ` : ''}
          {run.errorMessage}
        </p>
      )}
      {usage && (
        <section className="meters" aria-label="Usage against limits">
          <Meter
            label="Tokens"
            used={usage.tokens}
            limit={usage.usageLimits.tokens}
            format={(n) => n.toLocaleString()}
          />
          <Meter
            label="Actions"
            used={usage.actions}
            limit={usage.usageLimits.actions}
            format={(n) => n.toLocaleString()}
          />
          <Meter
            label="Time"
            used={usage.totalSeconds}
            limit={usage.usageLimits.totalSeconds}
            format={(n) => `${n}s`}
          />
          <Meter label="Cost" used={usage.cost} limit={usage.usageLimits.cost} format={(n) => `$${n.toFixed(2)}`} />
        </section>
      )}
      <ErrorBanner error={action.error} />
      {showSummary && (
        <section className="summary" aria-label="Summary">
          <ErrorBanner error={summary.error} title="Summary failed" />
          {summary.data && (
            <>
              <p className="hint">
                Summary by {summary.data.model} of {summary.data.entriesSummarized} entries
              </p>
              <p className="summary-text">{summary.data.summary}</p>
            </>
          )}
        </section>
      )}
    </header>
  );
}
