import type { RunsTableRow } from './types.js';

/** Every field of a run row sorts. */
export type SortableColumn = keyof RunsTableRow;

/** The runs table's order: one column, either way. */
export interface RunsSort {
  column: SortableColumn;
  desc: boolean;
}

/**
 * The rows in `sort` order, as a new array (the input is left alone). Runs without a value (no score, agent or
 * batch) go last whichever the direction; ties keep the newest run first. Plain `<` comparisons, not localeCompare:
 * 10,000 rows sort in a few milliseconds, and the values are ASCII names and ISO times.
 */
export function sortRuns(rows: readonly RunsTableRow[], sort: RunsSort): RunsTableRow[] {
  const { column, desc } = sort;
  const sign = desc ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = a[column];
    const y = b[column];
    if (x === y) return b.id - a.id;
    if (x === null) return 1;
    if (y === null) return -1;
    return (x < y ? -1 : 1) * sign;
  });
}
