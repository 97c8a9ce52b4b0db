import type { UsagePoint } from './trace-model.js';

const W = 300;
const H = 110;
const PAD = 28;

/** Cumulative tokens (and known cost) over time, as a small SVG: two lines on their own scales. */
export function UsagePlot({ points }: { points: UsagePoint[] }) {
  if (points.length === 0) {
    return <p className="hint">No generations yet.</p>;
  }
  const last = points.at(-1)!;
  const maxT = Math.max(last.t, 1);
  const maxTokens = Math.max(last.tokens, 1);
  const maxCost = Math.max(last.cost, 1e-9);
  const x = (t: number) => PAD + (t / maxT) * (W - 2 * PAD);
  const y = (v: number, max: number) => H - PAD + -(v / max) * (H - 2 * PAD);
  const path = (value: (p: UsagePoint) => number, max: number) =>
    [{ t: 0, tokens: 0, cost: 0 }, ...points]
      .map((p) => `${x(p.t).toFixed(1)},${y(value(p), max).toFixed(1)}`)
      .join(' ');
  return (
    <figure className="plot usage-plot">
      <svg
        viewBox={`0 0 ${W} ${H}`}
        width={W}
        height={H}
        role="img"
        aria-label={`Tokens over time: ${last.tokens} tokens, $${last.cost.toFixed(4)} over ${(maxT / 1000).toFixed(0)} s`}
      >
        <line x1={PAD} y1={H - PAD} x2={W - PAD} y2={H - PAD} stroke="#999" />
        <line x1={PAD} y1={PAD} x2={PAD} y2={H - PAD} stroke="#999" />
        <polyline fill="none" stroke="#2457c5" strokeWidth="2" points={path((p) => p.tokens, maxTokens)} />
        {last.cost > 0 && (
          <polyline
            fill="none"
            stroke="#b45309"
            strokeWidth="1.5"
            strokeDasharray="4 3"
            points={path((p) => p.cost, maxCost)}
          />
        )}
        <text x={PAD + 2} y={PAD - 6} fontSize="10" fill="#2457c5">
          {last.tokens.toLocaleString()} tokens
        </text>
        <text x={W - PAD} y={PAD - 6} fontSize="10" fill="#b45309" textAnchor="end">
          ${last.cost.toFixed(4)}
        </text>
        <text x={W - PAD} y={H - PAD + 14} fontSize="10" fill="#666" textAnchor="end">
          {(maxT / 1000).toFixed(0)} s
        </text>
      </svg>
      <figcaption>Tokens (solid) and cost (dashed) over time, {points.length} calls</figcaption>
    </figure>
  );
}
