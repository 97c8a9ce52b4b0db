// biome-ignore-all lint/a11y/useSemanticElements: virtualized rows are absolutely positioned divs, which <table> layout cannot hold; the ARIA table roles keep them a table to assistive technology
// biome-ignore-all lint/a11y/useFocusableInteractive: rows and headers are not interactive; their links and buttons are, and take focus
import { useVirtualizer } from '@tanstack/react-virtual';
import { type ReactNode, useMemo, useRef, useState } from 'react';
import { Link } from 'react-router';
import { type RunsSort, type SortableColumn, sortRuns } from './sort.js';
import { FINISHED_STATUSES, type RunsTableRow } from './types.js';

const ROW_HEIGHT = 30;
const GRID_COLUMNS = '80px 150px minmax(160px, 2fr) minmax(120px, 1fr) minmax(100px, 1fr) 70px 90px 80px 170px 60px';

export interface RunsTableProps {
  rows: RunsTableRow[];
  /** Kills a run (absent: no kill buttons, e.g. read-only mode). */
  onKill?: ((runId: number) => void) | undefined;
  /** Most pixels the table takes before it scrolls. */
  height?: number;
}

const number = new Intl.NumberFormat('en');

interface Column {
  /** The sort key, or null for a column that does not sort. */
  key: SortableColumn | null;
  header: string;
  cell: (row: RunsTableRow, onKill: RunsTableProps['onKill']) => ReactNode;
}

/**
 * The columns, built once for the module: each cell renders straight from the row, and only for the rows in view.
 * (A general table library would build row models for all 10,000 runs on every render; the first paint is faster
 * without them, see bench/ui-runs-page.ts.)
 */
const COLUMNS: readonly Column[] = [
  { key: 'id', header: 'Run', cell: (row) => <Link to={`/runs/${row.id}`}>#{row.id}</Link> },
  {
    key: 'status',
    header: 'Status',
    cell: (row) => <span className={`status status-${row.status}`}>{row.status}</span>,
  },
  { key: 'taskId', header: 'Task', cell: (row) => row.taskId },
  { key: 'agentName', header: 'Agent', cell: (row) => row.agentName ?? '—' },
  { key: 'batchName', header: 'Batch', cell: (row) => row.batchName ?? '—' },
  {
    key: 'score',
    header: 'Score',
    cell: (row) => (row.score === null ? '—' : Number(row.score.toFixed(3)).toString()),
  },
  { key: 'tokens', header: 'Tokens', cell: (row) => number.format(row.tokens) },
  { key: 'cost', header: 'Cost', cell: (row) => `$${row.cost.toFixed(2)}` },
  { key: 'createdAt', header: 'Created', cell: (row) => new Date(row.createdAt).toLocaleString() },
  {
    key: null,
    header: '',
    cell: (row, onKill) =>
      onKill && !FINISHED_STATUSES.has(row.status) ? (
        <button type="button" className="danger" aria-label={`Kill run ${row.id}`} onClick={() => onKill(row.id)}>
          Kill
        </button>
      ) : null,
  },
];

/** Text columns sort A→Z first; numbers and times sort largest (newest) first. */
const TEXT_COLUMNS = new Set<SortableColumn>(['status', 'taskId', 'agentName', 'batchName']);

/** The runs, sortable by any column; only the rows in view are in the DOM, so 10,000 runs render at once. */
export function RunsTable({ rows, onKill, height: maxHeight = 520 }: RunsTableProps) {
  // Short lists take only the room they need; long ones scroll inside the table.
  const height = Math.min(maxHeight, (rows.length + 1) * ROW_HEIGHT + 40);
  const [sort, setSort] = useState<RunsSort>({ column: 'id', desc: true });
  const sorted = useMemo(() => sortRuns(rows, sort), [rows, sort]);
  const scrollRef = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: sorted.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
    initialRect: { width: 1200, height },
  });

  function toggle(column: SortableColumn) {
    setSort((previous) =>
      previous.column === column ? { column, desc: !previous.desc } : { column, desc: !TEXT_COLUMNS.has(column) },
    );
  }

  return (
    <div className="grid" role="table" aria-label="Runs" aria-rowcount={sorted.length + 1}>
      <div className="grid-scroll" ref={scrollRef} style={{ height }}>
        <div className="grid-header" role="row" style={{ gridTemplateColumns: GRID_COLUMNS }}>
          {COLUMNS.map((column, i) => {
            const { key } = column;
            const direction = key !== null && sort.column === key ? (sort.desc ? 'descending' : 'ascending') : 'none';
            return (
              // biome-ignore lint/suspicious/noArrayIndexKey: the columns are a fixed list
              <div key={i} role="columnheader" aria-sort={direction}>
                {key === null ? (
                  column.header
                ) : (
                  <button type="button" onClick={() => toggle(key)}>
                    {column.header}
                    {direction === 'ascending' ? ' ▲' : direction === 'descending' ? ' ▼' : ''}
                  </button>
                )}
              </div>
            );
          })}
        </div>
        <div style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
          {virtualizer.getVirtualItems().map((item) => {
            const row = sorted[item.index];
            if (!row) return null;
            return (
              <div
                key={row.id}
                className="grid-row"
                role="row"
                aria-rowindex={item.index + 2}
                data-run-id={row.id}
                style={{
                  gridTemplateColumns: GRID_COLUMNS,
                  position: 'absolute',
                  top: 0,
                  left: 0,
                  right: 0,
                  height: ROW_HEIGHT,
                  transform: `translateY(${item.start}px)`,
                }}
              >
                {COLUMNS.map((column, i) => (
                  // biome-ignore lint/suspicious/noArrayIndexKey: the columns are a fixed list
                  <div key={i} role="cell">
                    {column.cell(row, onKill)}
                  </div>
                ))}
              </div>
            );
          })}
        </div>
        {sorted.length === 0 && (
          <p className="hint" style={{ padding: 8 }}>
            No runs match.
          </p>
        )}
      </div>
    </div>
  );
}
