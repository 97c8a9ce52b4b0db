import type { ManualScoreView } from '@terrarium/shared';
import { useId, useState } from 'react';
import { ErrorBanner } from '../../components/ErrorBanner.js';
import { useManualScores, useRunAction } from './api.js';

/**
 * Scoring by hand, for a branch that ended in manual scoring (the task's score returned None): the scores people gave
 * so far (the latest is the branch's score) and, unless read-only, a form for another one. Hidden on branches that
 * do not wait for a person's score, where the server would refuse one.
 */
export function ManualScoring({
  runId,
  branch,
  awaitsManualScore,
  readOnly,
}: {
  runId: number;
  branch: number;
  awaitsManualScore: boolean;
  readOnly: boolean;
}) {
  const scores = useManualScores(runId);
  const given = (scores.data ?? []).filter((s) => s.agentBranchNumber === branch);
  if (!awaitsManualScore && given.length === 0) return null;
  return (
    <section className="panel manual-scoring stack" aria-label="Manual scoring">
      <h2>Manual scoring</h2>
      {given.length === 0 ? (
        <p className="hint">The task leaves this branch to a person to score.</p>
      ) : (
        <ManualScoreList scores={given} />
      )}
      <ErrorBanner error={scores.error} title="Manual scores unavailable" />
      {awaitsManualScore && !readOnly && <ManualScoreForm runId={runId} branch={branch} />}
    </section>
  );
}

function ManualScoreList({ scores }: { scores: ManualScoreView[] }) {
  return (
    <ol className="manual-scores" aria-label="Scores given">
      {scores.map((s) => (
        <li key={s.id}>
          <strong className="mono">{s.score}</strong> by {s.userId}, {new Date(s.createdAt).toLocaleString()}
          {s.notes && <span className="hint"> — {s.notes}</span>}
        </li>
      ))}
    </ol>
  );
}

function ManualScoreForm({ runId, branch }: { runId: number; branch: number }) {
  const scoreId = useId();
  const notesId = useId();
  const [score, setScore] = useState('');
  const [notes, setNotes] = useState('');
  // Time spent scoring, from when the form was first shown.
  const [shownAt] = useState(() => Date.now());
  const save = useRunAction(runId);
  return (
    <form
      className="row"
      aria-label="Manual score"
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate(
          {
            path: `/api/runs/${runId}/branches/${branch}/manual-score`,
            json: {
              score: Number(score),
              secondsToScore: Math.round((Date.now() - shownAt) / 1000),
              ...(notes.trim() && { notes: notes.trim() }),
            },
          },
          {
            onSuccess: () => {
              setScore('');
              setNotes('');
            },
          },
        );
      }}
    >
      <label htmlFor={scoreId}>Score</label>
      <input
        id={scoreId}
        type="number"
        step="any"
        value={score}
        onChange={(e) => setScore(e.target.value)}
        size={6}
        required
      />
      <label htmlFor={notesId}>Notes</label>
      <input id={notesId} value={notes} onChange={(e) => setNotes(e.target.value)} size={30} />
      <button type="submit" className="primary" disabled={score.trim() === '' || save.isPending}>
        Save score
      </button>
      <ErrorBanner error={save.error} title="The score was not saved" />
    </form>
  );
}
