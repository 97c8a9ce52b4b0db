// biome-ignore-all lint/a11y/useSemanticElements: virtualized rows are absolutely positioned divs, which <table> layout cannot hold; the ARIA table roles keep them a table to assistive technology
// biome-ignore-all lint/a11y/useFocusableInteractive: rows and headers are not interactive; their links and buttons are, and take focus
import {
  type ColumnDef,
  flexRender,
  getCoreRowModel,
  getSortedRowModel,
  type SortingState,
  useReactTable,
} from '@tanstack/react-table';
import { useVirtualizer } from '@tanstack/react-virtual';
import { useMemo, useRef, useState } from 'react';
import { Link } from 'react-router';
import { FINISHED_STATUSES, type RunsTableRow } from './types.js';

const ROW_HEIGHT = 30;
const GRID_COLUMNS = '80px 150px minmax(160px, 2fr) minmax(120px, 1fr) minmax(100px, 1fr) 70px 90px 80px 170px 60px';

export interface RunsTableProps {
  rows: RunsTableRow[];
  /** Kills a run (absent: no kill buttons, e.g. read-only mode). */
  onKill?: (runId: number) => void;
  /** Most pixels the table takes before it scrolls. */
  height?: number;
}

const number = new Intl.NumberFormat('en');

function columns(onKill: RunsTableProps['onKill']): ColumnDef<RunsTableRow>[] {
  return [
    {
      accessorKey: 'id',
      header: 'Run',
      cell: ({ row }) => <Link to={`/runs/${row.original.id}`}>#{row.original.id}</Link>,
    },
    {
      accessorKey: 'status',
      header: 'Status',
      cell: ({ getValue }) => {
        const status = getValue<string>();
        return <span className={`status status-${status}`}>{status}</span>;
      },
    },
    { accessorKey: 'taskId', header: 'Task' },
    { accessorKey: 'agentName', header: 'Agent', cell: ({ getValue }) => getValue<string | null>() ?? '—' },
    { accessorKey: 'batchName', header: 'Batch', cell: ({ getValue }) => getValue<string | null>() ?? '—' },
    {
      accessorKey: 'score',
      header: 'Score',
      sortUndefined: 'last',
      cell: ({ getValue }) => {
        const score = getValue<number | null>();
        return score === null ? '—' : Number(score.toFixed(3)).toString();
      },
    },
    { accessorKey: 'tokens', header: 'Tokens', cell: ({ getValue }) => number.format(getValue<number>()) },
    { accessorKey: 'cost', header: 'Cost', cell: ({ getValue }) => `$${getValue<number>().toFixed(2)}` },
    {
      accessorKey: 'createdAt',
      header: 'Created',
      cell: ({ getValue }) => new Date(getValue<string>()).toLocaleString(),
    },
    {
      id: 'actions',
      header: '',
      enableSorting: false,
      cell: ({ row }) =>
        onKill && !FINISHED_STATUSES.has(row.original.status) ? (
          <button
            type="button"
            className="danger"
            aria-label={`Kill run ${row.original.id}`}
            onClick={() => onKill(row.original.id)}
          >
            Kill
          </button>
        ) : null,
    },
  ];
}

/** The runs, sortable by any column; only the rows in view are in the DOM, so 10,000 runs render at once. */
export function RunsTable({ rows, onKill, height: maxHeight = 520 }: RunsTableProps) {
  // Short lists take only the room they need; long ones scroll inside the table.
  const height = Math.min(maxHeight, (rows.length + 1) * ROW_HEIGHT + 40);
  const [sorting, setSorting] = useState<SortingState>([{ id: 'id', desc: true }]);
  // Stable columns: new ones would make the table rebuild and re-sort every row on each render.
  const tableColumns = useMemo(() => columns(onKill), [onKill]);
  const table = useReactTable({
    data: rows,
    columns: tableColumns,
    state: { sorting },
    onSortingChange: setSorting,
    getCoreRowModel: getCoreRowModel(),
    getSortedRowModel: getSortedRowModel(),
  });
  const tableRows = table.getRowModel().rows;
  const scrollRef = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: tableRows.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
    initialRect: { width: 1200, height },
  });

  return (
    <div className="grid" role="table" aria-label="Runs" aria-rowcount={tableRows.length + 1}>
      <div className="grid-scroll" ref={scrollRef} style={{ height }}>
        {table.getHeaderGroups().map((group) => (
          <div key={group.id} className="grid-header" role="row" style={{ gridTemplateColumns: GRID_COLUMNS }}>
            {group.headers.map((header) => {
              const sorted = header.column.getIsSorted();
              return (
                <div
                  key={header.id}
                  role="columnheader"
                  aria-sort={sorted === 'asc' ? 'ascending' : sorted === 'desc' ? 'descending' : 'none'}
                >
                  {header.column.getCanSort() ? (
                    <button type="button" onClick={header.column.getToggleSortingHandler()}>
                      {flexRender(header.column.columnDef.header, header.getContext())}
                      {sorted === 'asc' ? ' ▲' : sorted === 'desc' ? ' ▼' : ''}
                    </button>
                  ) : (
                    flexRender(header.column.columnDef.header, header.getContext())
                  )}
                </div>
              );
            })}
          </div>
        ))}
        <div style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
          {virtualizer.getVirtualItems().map((item) => {
            const row = tableRows[item.index];
            if (!row) return null;
            return (
              <div
                key={row.id}
                className="grid-row"
                role="row"
                aria-rowindex={item.index + 2}
                data-run-id={row.original.id}
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
                {row.getVisibleCells().map((cell) => (
                  <div key={cell.id} role="cell">
                    {flexRender(cell.column.columnDef.cell, cell.getContext())}
                  </div>
                ))}
              </div>
            );
          })}
        </div>
        {tableRows.length === 0 && (
          <p className="hint" style={{ padding: 8 }}>
            No runs match.
          </p>
        )}
      </div>
    </div>
  );
}
