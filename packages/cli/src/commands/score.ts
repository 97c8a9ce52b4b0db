import type { IntermediateScoreView, ManualScoreView } from '@terrarium/shared';
import { connect } from '../connection.js';

/** `terrarium score <run-id> <score>`: a person's score for a branch that ended in manual scoring. */
export async function scoreCommand(
  runId: number,
  score: number,
  options: { branch?: number; notes?: string; seconds?: number; serverUrl?: string },
): Promise<number> {
  const branch = options.branch ?? 0;
  const connection = await connect({ serverUrl: options.serverUrl });
  try {
    const stored = await connection.client.request<ManualScoreView>(
      'POST',
      `/api/runs/${runId}/branches/${branch}/manual-score`,
      {
        score,
        ...(options.notes !== undefined && { notes: options.notes }),
        ...(options.seconds !== undefined && { secondsToScore: options.seconds }),
      },
    );
    process.stdout.write(`Run ${runId}, branch ${branch}: scored ${stored.score} by ${stored.userId}.\n`);
    return 0;
  } finally {
    await connection.close();
  }
}

/** `terrarium scores <run-id>`: the run's intermediate scores and manual scores, every branch. */
export async function scoresCommand(runId: number, options: { json?: boolean; serverUrl?: string }): Promise<number> {
  const connection = await connect({ serverUrl: options.serverUrl });
  try {
    const [intermediate, manual] = await Promise.all([
      connection.client.request<IntermediateScoreView[]>('GET', `/api/runs/${runId}/intermediate-scores`),
      connection.client.request<ManualScoreView[]>('GET', `/api/runs/${runId}/manual-scores`),
    ]);
    if (options.json) {
      process.stdout.write(`${JSON.stringify({ intermediate, manual }, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`Intermediate scores (${intermediate.length}):\n`);
    for (const s of intermediate) {
      const value = s.invalid ? 'invalid' : s.score === null ? '—' : String(s.score);
      const message = Object.keys(s.message).length > 0 ? `  ${JSON.stringify(s.message)}` : '';
      process.stdout.write(`  branch ${s.agentBranchNumber}  ${s.elapsedSeconds.toFixed(1)} s  ${value}${message}\n`);
    }
    process.stdout.write(`Manual scores (${manual.length}):\n`);
    for (const s of manual) {
      process.stdout.write(
        `  branch ${s.agentBranchNumber}  ${s.score}  by ${s.userId} at ${s.createdAt}${s.notes ? `  ${s.notes}` : ''}\n`,
      );
    }
    return 0;
  } finally {
    await connection.close();
  }
}
