import {
  isTerminalRunStatus,
  type RunStatus,
  type TraceEntryComment,
  type TraceEntryTag,
  type TraceEntryView,
} from '@terrarium/shared';
import { useEffect, useMemo, useState } from 'react';
import { useParams, useSearchParams } from 'react-router';
import { ErrorBanner } from '../../components/ErrorBanner.js';
import { AgentOutput } from './AgentOutput.js';
import {
  useAgentOutput,
  useBranches,
  useComments,
  useHumanRequests,
  useIntermediateScores,
  useInvalidateRun,
  useRun,
  useTags,
  useUiConfig,
  useUsage,
} from './api.js';
import { BranchBar, ForkDialog } from './BranchBar.js';
import { HumanRequests } from './HumanRequests.js';
import { ManualScoring } from './ManualScoring.js';
import { RunHeader } from './RunHeader.js';
import { TraceList } from './TraceList.js';
import { type BranchInfo, entriesForBranch, entryIdFromHash, usageSeries } from './trace-model.js';
import { UsagePlot } from './UsagePlot.js';
import { useTraceStream } from './useTraceStream.js';
import './run-page.css';

function groupByEntry<T extends { traceEntryId: number }>(items: T[] | undefined): Map<number, T[]> {
  const map = new Map<number, T[]>();
  for (const item of items ?? []) {
    const list = map.get(item.traceEntryId);
    if (list) list.push(item);
    else map.set(item.traceEntryId, [item]);
  }
  return map;
}

/** Hash changes (#entry-<id>) made by links on the page or by the address bar. */
function useHashEntryId(): number | null {
  const [id, setId] = useState(() => entryIdFromHash(location.hash));
  useEffect(() => {
    const onHash = () => setId(entryIdFromHash(location.hash));
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  return id;
}

/** One run: its header, the live trace of the chosen branch, and what a person can do about it. */
export function RunPage() {
  const params = useParams();
  const runId = Number(params.runId);
  if (!Number.isSafeInteger(runId) || runId <= 0) {
    return (
      <main className="page">
        <ErrorBanner error={new Error(`"${params.runId}" is not a run id: run ids are positive whole numbers.`)} />
      </main>
    );
  }
  return <RunPageFor key={runId} runId={runId} />;
}

function RunPageFor({ runId }: { runId: number }) {
  const [search, setSearch] = useSearchParams();
  const branch = Number(search.get('branch') ?? '0') || 0;
  const stream = useTraceStream(runId);
  const live = stream.status === null ? true : !isTerminalRunStatus(stream.status as RunStatus);
  const run = useRun(runId, live);
  const config = useUiConfig();
  const branches = useBranches(runId, live);
  const usage = useUsage(runId, branch, live);
  const scores = useIntermediateScores(runId, live);
  const humanRequests = useHumanRequests(runId, branch, live);
  const output = useAgentOutput(runId, branch, live);
  const comments = useComments(runId);
  const tags = useTags(runId);
  const highlightId = useHashEntryId();
  const [follow, setFollow] = useState(highlightId === null);
  const [forkFrom, setForkFrom] = useState<TraceEntryView | null>(null);
  const readOnly = config.data?.readOnly ?? true;
  // Polling stops once the run has ended: fetch everything once more when the stream reports a new status, so the
  // page shows the final state (status, score, usage) rather than the last one polled.
  const invalidate = useInvalidateRun(runId);
  // biome-ignore lint/correctness/useExhaustiveDependencies: refetch exactly when the status changes
  useEffect(() => {
    if (stream.status !== null) void invalidate();
  }, [stream.status]);

  const branchList: BranchInfo[] = useMemo(() => {
    if (branches.data && branches.data.length > 0) return branches.data;
    return [{ agentBranchNumber: 0, parentAgentBranchNumber: null, parentTraceEntryId: null }];
  }, [branches.data]);
  const entries = useMemo(
    () => entriesForBranch(stream.entries, branchList, branch),
    [stream.entries, branchList, branch],
  );
  const series = useMemo(() => usageSeries(entries), [entries]);
  const commentsByEntry = useMemo(() => groupByEntry<TraceEntryComment>(comments.data), [comments.data]);
  const tagsByEntry = useMemo(() => groupByEntry<TraceEntryTag>(tags.data), [tags.data]);
  const setBranch = (n: number) =>
    setSearch((prev) => {
      const next = new URLSearchParams(prev);
      if (n === 0) next.delete('branch');
      else next.set('branch', String(n));
      return next;
    });

  if (run.error) {
    return (
      <main className="page">
        <ErrorBanner error={run.error} title={`Run ${runId}`} />
      </main>
    );
  }
  if (!run.data) {
    return (
      <main className="page">
        <p className="hint">Loading run {runId}…</p>
      </main>
    );
  }
  const branchInfo = branchList.find((b) => b.agentBranchNumber === branch);
  return (
    <main className="page run-page" aria-label={`Run ${runId}`}>
      <RunHeader
        run={run.data}
        branch={branch}
        usage={usage.data}
        intermediateScores={(scores.data ?? []).filter((s) => (s.agentBranchNumber ?? 0) === branch)}
        branchScore={branchInfo?.score}
        readOnly={readOnly}
        summaryModel={config.data?.runSummaryModel ?? null}
      />
      <BranchBar branches={branchList} branch={branch} onBranch={setBranch} branchesError={branches.error} />
      <ManualScoring
        runId={runId}
        branch={branch}
        awaitsManualScore={
          branchInfo?.status === 'manual-scoring' || (branch === 0 && run.data.status === 'manual-scoring')
        }
        readOnly={readOnly}
      />
      <HumanRequests runId={runId} branch={branch} requests={humanRequests.data ?? []} readOnly={readOnly} />
      <div className="run-columns">
        <section className="trace-panel panel" aria-label="Trace panel">
          <div className="row trace-toolbar">
            <h2>Trace</h2>
            <span className={`live-dot${stream.live ? ' on' : ''}`} aria-live="polite">
              {stream.live ? 'live' : 'offline'}
            </span>
            <span className="hint" data-testid="entry-count">
              {entries.length.toLocaleString()} entries
            </span>
            <span className="spacer" />
            <label className="row">
              <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow new
              entries
            </label>
          </div>
          <ErrorBanner error={stream.error} title="Live trace" />
          <TraceList
            runId={runId}
            entries={entries}
            commentsByEntry={commentsByEntry}
            tagsByEntry={tagsByEntry}
            readOnly={readOnly}
            highlightId={highlightId}
            follow={follow}
            onFork={setForkFrom}
          />
        </section>
        <aside className="run-side" aria-label="Run details">
          <section className="panel">
            <h2>Usage over time</h2>
            <UsagePlot points={series} />
          </section>
          <AgentOutput output={output.data} />
          <ErrorBanner error={output.error} title="Agent output" />
        </aside>
      </div>
      {forkFrom && (
        <ForkDialog
          runId={runId}
          branch={branch}
          entry={forkFrom}
          onClose={() => setForkFrom(null)}
          onForked={(n) => {
            setForkFrom(null);
            setBranch(n);
          }}
        />
      )}
    </main>
  );
}
