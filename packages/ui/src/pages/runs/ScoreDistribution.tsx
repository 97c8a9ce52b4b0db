import { memo, useMemo } from 'react';
import { histogram, scoresByTask } from './filter.js';
import type { RunsTableRow } from './types.js';

const BINS = 10;
const WIDTH = 180;
const HEIGHT = 60;

/**
 * Small histograms of scores per task (the tasks with the most scored runs), drawn as plain SVG. Memoized: the same
 * rows (a poll that changed nothing, a keystroke elsewhere) are not binned again.
 */
export const ScoreDistribution = memo(function ScoreDistribution({
  rows,
  maxTasks = 6,
}: {
  rows: RunsTableRow[];
  maxTasks?: number;
}) {
  const tasks = useMemo(() => scoresByTask(rows).slice(0, maxTasks), [rows, maxTasks]);
  if (tasks.length === 0) return <p className="hint">No scored runs yet: score distributions appear here.</p>;
  return (
    <div className="plots">
      {tasks.map(({ taskId, scores }) => {
        const min = Math.min(0, ...scores);
        const max = Math.max(1, ...scores);
        const counts = histogram(scores, BINS, min, max);
        const top = Math.max(...counts);
        const barWidth = WIDTH / BINS;
        const mean = scores.reduce((sum, s) => sum + s, 0) / scores.length;
        return (
          <figure key={taskId} className="plot panel" style={{ margin: 0 }}>
            <svg
              width={WIDTH}
              height={HEIGHT + 14}
              role="img"
              aria-label={`Score distribution of ${taskId}: ${scores.length} runs, mean ${mean.toFixed(2)}`}
            >
              {counts.map((count, bin) => {
                const h = top === 0 ? 0 : (count / top) * HEIGHT;
                return (
                  <rect
                    // biome-ignore lint/suspicious/noArrayIndexKey: bins are positional
                    key={bin}
                    x={bin * barWidth + 1}
                    y={HEIGHT - h}
                    width={barWidth - 2}
                    height={h}
                    fill="#2457c5"
                  >
                    <title>{`${(min + (bin * (max - min)) / BINS).toFixed(2)}–${(min + ((bin + 1) * (max - min)) / BINS).toFixed(2)}: ${count}`}</title>
                  </rect>
                );
              })}
              <line x1={0} x2={WIDTH} y1={HEIGHT} y2={HEIGHT} stroke="#999" />
              <text x={0} y={HEIGHT + 12} fontSize={10} fill="#5b6475">
                {min}
              </text>
              <text x={WIDTH} y={HEIGHT + 12} fontSize={10} fill="#5b6475" textAnchor="end">
                {max}
              </text>
            </svg>
            <figcaption>
              {taskId} · {scores.length} runs · mean {mean.toFixed(2)}
            </figcaption>
          </figure>
        );
      })}
    </div>
  );
});
