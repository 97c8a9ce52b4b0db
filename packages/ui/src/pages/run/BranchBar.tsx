import type { TraceEntryView } from '@terrarium/shared';
import { useEffect, useId, useState } from 'react';
import { ApiError, apiFetch } from '../../api/client.js';
import { ErrorBanner } from '../../components/ErrorBanner.js';
import { useInvalidateRun } from './api.js';
import type { BranchInfo } from './trace-model.js';

/** Chooses the branch shown. */
export function BranchBar({
  branches,
  branch,
  onBranch,
  branchesError,
}: {
  branches: BranchInfo[];
  branch: number;
  onBranch: (n: number) => void;
  branchesError: unknown;
}) {
  const selectId = useId();
  return (
    <div className="branch-bar row panel">
      <label htmlFor={selectId}>Branch</label>
      <select id={selectId} value={branch} onChange={(e) => onBranch(Number(e.target.value))}>
        {branches.map((b) => (
          <option key={b.agentBranchNumber} value={b.agentBranchNumber}>
            {b.agentBranchNumber === 0 ? 'trunk (0)' : `branch ${b.agentBranchNumber}`}
            {b.parentAgentBranchNumber !== null
              ? ` ← ${b.parentAgentBranchNumber} @ entry ${b.parentTraceEntryId}`
              : ''}
            {b.status ? ` · ${b.status}` : ''}
            {b.score !== null && b.score !== undefined ? ` · score ${b.score}` : ''}
          </option>
        ))}
      </select>
      {branchesError !== null && branchesError !== undefined && (
        <span className="hint">
          Branches unavailable: {branchesError instanceof Error ? branchesError.message : ''}
        </span>
      )}
    </div>
  );
}

/**
 * Fork from an entry: loads the agent state saved at or before it, lets the person edit it as JSON, and starts a
 * new branch from there.
 */
export function ForkDialog({
  runId,
  branch,
  entry,
  onClose,
  onForked,
}: {
  runId: number;
  branch: number;
  entry: TraceEntryView;
  onClose: () => void;
  onForked: (agentBranchNumber: number) => void;
}) {
  const stateId = useId();
  const [text, setText] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const invalidate = useInvalidateRun(runId);
  useEffect(() => {
    let cancelled = false;
    apiFetch<{ traceEntryId: number; state: unknown }>(`/api/runs/${runId}/agent-state?traceEntryId=${entry.id}`)
      .then((saved) => !cancelled && setText(JSON.stringify(saved.state, null, 2)))
      .catch((e: unknown) => {
        if (cancelled) return;
        // No saved state at or before this entry: fork without one.
        if (e instanceof ApiError && e.status === 404) setText('');
        else setError(e);
      });
    return () => {
      cancelled = true;
    };
  }, [runId, entry.id]);
  let parseError: string | null = null;
  if (text !== null && text.trim() !== '') {
    try {
      JSON.parse(text);
    } catch (e) {
      parseError = e instanceof Error ? e.message : String(e);
    }
  }
  return (
    <div className="dialog-backdrop">
      <div role="dialog" aria-modal="true" aria-labelledby={`${stateId}-title`} className="dialog panel">
        <h2 id={`${stateId}-title`}>
          Fork branch {branch} at entry {entry.index}
        </h2>
        {text === null && !error && <p className="hint">Loading the saved agent state…</p>}
        {text !== null && (
          <>
            <label htmlFor={stateId}>Agent state (JSON; empty for none)</label>
            <textarea
              id={stateId}
              className="mono state-editor"
              rows={14}
              value={text}
              onChange={(e) => setText(e.target.value)}
              spellCheck={false}
              aria-invalid={parseError !== null}
            />
            {parseError && <p className="entry-error">Not valid JSON: {parseError}</p>}
          </>
        )}
        <ErrorBanner error={error} />
        <div className="row">
          <button
            type="button"
            className="primary"
            disabled={text === null || parseError !== null || busy}
            onClick={async () => {
              setBusy(true);
              setError(null);
              try {
                const created = await apiFetch<{ agentBranchNumber: number }>(`/api/runs/${runId}/branches`, {
                  method: 'POST',
                  json: {
                    parentAgentBranchNumber: branch,
                    traceEntryId: entry.id,
                    ...(text && text.trim() !== '' && { agentState: JSON.parse(text) }),
                  },
                });
                await invalidate();
                onForked(created.agentBranchNumber);
              } catch (e) {
                setError(e);
              } finally {
                setBusy(false);
              }
            }}
          >
            {busy ? 'Forking…' : 'Start branch'}
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </div>
    </div>
  );
}
