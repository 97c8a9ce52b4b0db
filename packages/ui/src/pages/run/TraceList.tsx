import { useVirtualizer } from '@tanstack/react-virtual';
import type { TraceEntryComment, TraceEntryTag, TraceEntryView } from '@terrarium/shared';
import { memo, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { EntryAnnotations, EntryBody } from './EntryDetails.js';
import { entrySummary, type TraceRow, traceRows } from './trace-model.js';

export interface TraceListProps {
  runId: number;
  entries: TraceEntryView[];
  commentsByEntry: Map<number, TraceEntryComment[]>;
  tagsByEntry: Map<number, TraceEntryTag[]>;
  readOnly: boolean;
  /** Entry to scroll to and highlight (from the URL's #entry-<id>). */
  highlightId: number | null;
  /** Keep the newest entry in view as entries arrive. */
  follow: boolean;
  onFork?: (entry: TraceEntryView) => void;
}

const ROW_HEIGHT = 30;

/**
 * The trace, virtualized (only the rows in view are in the DOM, so 100,000 entries scroll like 100). Rows are one line;
 * opening one shows its body, comments and tags (rows are measured, so open rows take the height they need). Frames
 * collapse from their frame-start row. Keyboard: ↑/↓ (or k/j) move between rows, Enter/Space opens one.
 */
export function TraceList(props: TraceListProps) {
  const { entries, highlightId, follow } = props;
  const [collapsed, setCollapsed] = useState<ReadonlySet<number>>(new Set());
  const [open, setOpen] = useState<ReadonlySet<number>>(() => new Set(highlightId === null ? [] : [highlightId]));
  const rows = useMemo(() => traceRows(entries, collapsed), [entries, collapsed]);
  const scrollRef = useRef<HTMLElement>(null);
  const getItemKey = useCallback((index: number) => rows[index]?.entry.id ?? index, [rows]);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
    getItemKey,
  });

  const toggle = useCallback((set: 'open' | 'collapsed', id: number) => {
    const update = (prev: ReadonlySet<number>) => {
      const next = new Set(prev);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    };
    if (set === 'open') setOpen(update);
    else setCollapsed(update);
  }, []);

  // Deep link: scroll to the entry once it has arrived, and open it.
  const scrolledTo = useRef<number | null>(null);
  useEffect(() => {
    if (highlightId === null || scrolledTo.current === highlightId) return;
    const index = rows.findIndex((row) => row.entry.id === highlightId);
    if (index < 0) return;
    scrolledTo.current = highlightId;
    setOpen((prev) => new Set(prev).add(highlightId));
    virtualizer.scrollToIndex(index, { align: 'center' });
  }, [highlightId, rows, virtualizer]);

  useEffect(() => {
    if (follow && rows.length > 0) virtualizer.scrollToIndex(rows.length - 1, { align: 'end' });
  }, [follow, rows.length, virtualizer]);

  const focusRow = (index: number) => {
    const clamped = Math.max(0, Math.min(rows.length - 1, index));
    virtualizer.scrollToIndex(clamped, { align: 'auto' });
    requestAnimationFrame(() => {
      scrollRef.current?.querySelector<HTMLElement>(`[data-row-index="${clamped}"] .entry-toggle`)?.focus();
    });
  };

  const onKeyDown = (event: React.KeyboardEvent<HTMLElement>) => {
    const target = event.target as HTMLElement;
    const rowIndex = Number(target.closest<HTMLElement>('[data-row-index]')?.dataset.rowIndex ?? Number.NaN);
    if (!target.classList.contains('entry-toggle') || Number.isNaN(rowIndex)) return;
    if (event.key === 'ArrowDown' || event.key === 'j') {
      event.preventDefault();
      focusRow(rowIndex + 1);
    } else if (event.key === 'ArrowUp' || event.key === 'k') {
      event.preventDefault();
      focusRow(rowIndex - 1);
    } else if (event.key === 'Home') {
      event.preventDefault();
      focusRow(0);
    } else if (event.key === 'End') {
      event.preventDefault();
      focusRow(rows.length - 1);
    }
  };

  return (
    <section
      className="trace-scroll"
      ref={scrollRef}
      onKeyDown={onKeyDown}
      data-testid="trace-scroll"
      aria-label="Trace"
    >
      {rows.length === 0 && <p className="hint trace-empty">No trace entries yet.</p>}
      <ol className="trace-list" style={{ height: virtualizer.getTotalSize() }} aria-label="Trace entries">
        {virtualizer.getVirtualItems().map((item) => {
          const row = rows[item.index]!;
          return (
            <li
              key={item.key}
              data-index={item.index}
              data-row-index={item.index}
              ref={virtualizer.measureElement}
              className="trace-item"
              style={{ transform: `translateY(${item.start}px)` }}
            >
              <EntryRow
                row={row}
                runId={props.runId}
                open={open.has(row.entry.id)}
                collapsed={collapsed.has(row.entry.id)}
                highlighted={row.entry.id === highlightId}
                comments={props.commentsByEntry.get(row.entry.id)}
                tags={props.tagsByEntry.get(row.entry.id)}
                readOnly={props.readOnly}
                onToggle={toggle}
                onFork={props.onFork}
              />
            </li>
          );
        })}
      </ol>
    </section>
  );
}

const EMPTY_COMMENTS: TraceEntryComment[] = [];
const EMPTY_TAGS: TraceEntryTag[] = [];

interface EntryRowProps {
  row: TraceRow;
  runId: number;
  open: boolean;
  collapsed: boolean;
  highlighted: boolean;
  comments: TraceEntryComment[] | undefined;
  tags: TraceEntryTag[] | undefined;
  readOnly: boolean;
  onToggle: (set: 'open' | 'collapsed', id: number) => void;
  onFork: ((entry: TraceEntryView) => void) | undefined;
}

const EntryRow = memo(function EntryRow({
  row,
  runId,
  open,
  collapsed,
  highlighted,
  comments = EMPTY_COMMENTS,
  tags = EMPTY_TAGS,
  readOnly,
  onToggle,
  onFork,
}: EntryRowProps) {
  const { entry, depth } = row;
  const time = entry.calledAt.slice(11, 19);
  return (
    <article
      id={`entry-${entry.id}`}
      className={`entry kind-${entry.kind}${highlighted ? ' highlighted' : ''}${open ? ' open' : ''}`}
      style={{ paddingLeft: 6 + depth * 16 }}
      aria-label={`Entry ${entry.index}: ${entry.kind}`}
    >
      <div className="entry-line">
        {entry.kind === 'frame-start' ? (
          <button
            type="button"
            className="frame-toggle"
            aria-expanded={!collapsed}
            aria-label={`${collapsed ? 'Expand' : 'Collapse'} frame (${row.frameSize ?? 0} entries)`}
            onClick={() => onToggle('collapsed', entry.id)}
          >
            {collapsed ? '▸' : '▾'}
          </button>
        ) : (
          <span className="frame-toggle-space" />
        )}
        <button type="button" className="entry-toggle" aria-expanded={open} onClick={() => onToggle('open', entry.id)}>
          <span className="entry-index mono">{entry.index}</span>
          <span className={`kind-badge kind-badge-${entry.kind}`}>{entry.kind}</span>
          {entry.agentBranchNumber !== 0 && <span className="branch-badge">b{entry.agentBranchNumber}</span>}
          <span className="entry-time mono">{time}</span>
          <span className="entry-summary">{entrySummary(entry)}</span>
          {collapsed && <span className="hint">({row.frameSize} hidden)</span>}
          {tags.length > 0 && <span className="count-badge">{tags.map((t) => `#${t.tag}`).join(' ')}</span>}
          {comments.length > 0 && (
            <span className="count-badge" title="comments">
              💬 {comments.length}
            </span>
          )}
        </button>
        <a className="entry-link" href={`#entry-${entry.id}`} aria-label={`Link to entry ${entry.index}`}>
          #
        </a>
      </div>
      {open && (
        <div className="entry-details">
          <EntryBody entry={entry} />
          <div className="row">
            {!readOnly && onFork && (
              <button type="button" onClick={() => onFork(entry)}>
                Fork from here
              </button>
            )}
            <span className="hint">
              id {entry.id} · {entry.calledAt}
            </span>
          </div>
          <EntryAnnotations runId={runId} entry={entry} comments={comments} tags={tags} readOnly={readOnly} />
        </div>
      )}
    </article>
  );
});
