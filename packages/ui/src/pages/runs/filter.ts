import type { RunsTableRow } from './types.js';

/** The runs page's filter, kept in the URL (?q=…&status=…) so a filtered view is a shareable link. */
export interface RunsFilter {
  /** Words that must all appear in the task, agent, batch, status or id (case-insensitive); `#42` is run 42 exactly. */
  text: string;
  /** One status, or '' for all. */
  status: string;
}

export function matchesFilter(row: RunsTableRow, filter: RunsFilter): boolean {
  if (filter.status && row.status !== filter.status) return false;
  const words = filter.text.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const haystack = `${row.id} ${row.taskId} ${row.agentName ?? ''} ${row.batchName ?? ''} ${row.status}`.toLowerCase();
  // `#42` names one run exactly; other words match anywhere.
  return words.every((word) => (/^#\d+$/.test(word) ? word === `#${row.id}` : haystack.includes(word)));
}

/** The rows the filter keeps; with no filter, the same array (so what is memoized on it stays valid). */
export function filterRuns(rows: RunsTableRow[], filter: RunsFilter): RunsTableRow[] {
  if (!filter.status && !filter.text.trim()) return rows;
  return rows.filter((row) => matchesFilter(row, filter));
}

/** Scores per task (runs without a score left out), tasks with the most scored runs first. */
export function scoresByTask(rows: readonly RunsTableRow[]): { taskId: string; scores: number[] }[] {
  const byTask = new Map<string, number[]>();
  for (const row of rows) {
    if (row.score === null) continue;
    const scores = byTask.get(row.taskId) ?? [];
    scores.push(row.score);
    byTask.set(row.taskId, scores);
  }
  return [...byTask]
    .map(([taskId, scores]) => ({ taskId, scores }))
    .sort((a, b) => b.scores.length - a.scores.length || a.taskId.localeCompare(b.taskId));
}

/** Counts of values in `bins` equal-width bins over [min, max] (max inclusive in the last bin). */
export function histogram(values: readonly number[], bins: number, min: number, max: number): number[] {
  const counts = new Array<number>(bins).fill(0);
  const width = (max - min) / bins || 1;
  for (const value of values) {
    const bin = Math.min(bins - 1, Math.max(0, Math.floor((value - min) / width)));
    counts[bin] = (counts[bin] ?? 0) + 1;
  }
  return counts;
}
