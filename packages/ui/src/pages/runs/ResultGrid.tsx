// biome-ignore-all lint/a11y/useSemanticElements: virtualized rows are absolutely positioned divs, which <table> layout cannot hold; the ARIA table roles keep them a table to assistive technology
// biome-ignore-all lint/a11y/useFocusableInteractive: rows and headers are not interactive; their links and buttons are, and take focus
import { useVirtualizer } from '@tanstack/react-virtual';
import { useRef } from 'react';
import type { QueryResult } from './types.js';

const ROW_HEIGHT = 26;

function cellText(value: unknown): string {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** A query's rows; only those in view are in the DOM. */
export function ResultGrid({ result }: { result: QueryResult }) {
  const scrollRef = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: result.rows.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 10,
    initialRect: { width: 1000, height: 300 },
  });
  const template = `repeat(${Math.max(1, result.columns.length)}, minmax(120px, 1fr))`;
  const height = Math.min(320, ROW_HEIGHT * (result.rows.length + 1) + 4);
  return (
    <div className="grid" role="table" aria-label="Query result" aria-rowcount={result.rows.length + 1}>
      <div className="grid-scroll query-result" ref={scrollRef} style={{ height }}>
        <div className="grid-header" role="row" style={{ gridTemplateColumns: template, minWidth: 'max-content' }}>
          {result.columns.map((column, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: columns may repeat a name
            <div key={i} role="columnheader">
              {column}
            </div>
          ))}
        </div>
        <div style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
          {virtualizer.getVirtualItems().map((item) => (
            <div
              key={item.index}
              className="grid-row mono"
              role="row"
              style={{
                gridTemplateColumns: template,
                position: 'absolute',
                top: 0,
                left: 0,
                minWidth: '100%',
                height: ROW_HEIGHT,
                transform: `translateY(${item.start}px)`,
              }}
            >
              {(result.rows[item.index] ?? []).map((value, i) => (
                // biome-ignore lint/suspicious/noArrayIndexKey: cells are positional
                <div key={i} role="cell" title={cellText(value)}>
                  {cellText(value)}
                </div>
              ))}
            </div>
          ))}
        </div>
      </div>
    </div>
  );
}
