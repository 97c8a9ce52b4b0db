import type { TraceEntryView } from '@terrarium/shared';

/** A branch as the branches API (GET /api/runs/:id/branches) describes it. */
export interface BranchInfo {
  agentBranchNumber: number;
  parentAgentBranchNumber: number | null;
  parentTraceEntryId: number | null;
  status?: string;
  score?: number | null;
  [key: string]: unknown;
}

/**
 * The entries a branch shows: its own, preceded by its ancestors' entries up to the point each fork was made (a
 * forked branch continues from its parent's trace entry). Entries come sorted by id; the result keeps that order.
 */
export function entriesForBranch(
  entries: readonly TraceEntryView[],
  branches: readonly BranchInfo[],
  agentBranchNumber: number,
): TraceEntryView[] {
  // branch number → the highest entry id of that branch to include (Infinity: all of it).
  const include = new Map<number, number>([[agentBranchNumber, Number.POSITIVE_INFINITY]]);
  const byNumber = new Map(branches.map((b) => [b.agentBranchNumber, b]));
  let current = byNumber.get(agentBranchNumber);
  const seen = new Set<number>([agentBranchNumber]);
  while (current && current.parentAgentBranchNumber !== null && !seen.has(current.parentAgentBranchNumber)) {
    const parent = current.parentAgentBranchNumber;
    seen.add(parent);
    include.set(parent, current.parentTraceEntryId ?? Number.POSITIVE_INFINITY);
    current = byNumber.get(parent);
  }
  return entries.filter((entry) => {
    const upTo = include.get(entry.agentBranchNumber);
    return upTo !== undefined && entry.id <= upTo;
  });
}

export interface TraceRow {
  entry: TraceEntryView;
  /** Nesting depth in frames. */
  depth: number;
  /** For a frame-start: how many entries the frame holds (until its frame-end, or so far). */
  frameSize?: number;
}

/**
 * Rows to show: entries with their frame depth, skipping the insides of collapsed frames (their frame-start stays,
 * so it can be expanded again). A frame-end names its frame (content.frameId) or closes the innermost one.
 */
export function traceRows(entries: readonly TraceEntryView[], collapsed: ReadonlySet<number>): TraceRow[] {
  const rows: TraceRow[] = [];
  const stack: { id: number; row: TraceRow | null }[] = [];
  // Depth of the outermost collapsed frame we are inside, or -1.
  let hiddenFrom = -1;
  for (const entry of entries) {
    const hidden = hiddenFrom >= 0;
    if (entry.kind === 'frame-end') {
      const frameId = (entry.content as { frameId?: number | null } | null)?.frameId;
      let at = stack.length - 1;
      if (typeof frameId === 'number') {
        const found = stack.findLastIndex((f) => f.id === frameId);
        if (found >= 0) at = found;
      }
      for (const frame of stack.slice(0, at)) if (frame.row) frame.row.frameSize! += 1;
      if (at >= 0) stack.splice(at);
      if (hiddenFrom >= 0 && stack.length <= hiddenFrom) {
        hiddenFrom = -1;
        continue; // the collapsed frame's own end stays hidden with its insides
      }
      if (!hidden) rows.push({ entry, depth: stack.length });
      continue;
    }
    for (const frame of stack) if (frame.row) frame.row.frameSize! += 1;
    let row: TraceRow | null = null;
    if (!hidden) {
      row = { entry, depth: stack.length };
      rows.push(row);
    }
    if (entry.kind === 'frame-start') {
      if (row) row.frameSize = 0;
      stack.push({ id: entry.id, row });
      if (!hidden && collapsed.has(entry.id)) hiddenFrom = stack.length - 1;
    }
  }
  return rows;
}

export interface GenerationSummary {
  model: string;
  inputTokens: number;
  outputTokens: number;
  cost: number | null;
  durationMs: number | null;
  prompt: string;
  completions: string[];
  error: string | null;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (typeof part === 'string' ? part : ((part as { text?: string }).text ?? JSON.stringify(part))))
      .join('');
  }
  return content === undefined ? '' : JSON.stringify(content);
}

/** Reads a generation entry's content (see the middleman's GenerationTraceContent) defensively. */
export function generationSummary(content: unknown): GenerationSummary {
  const c = (content ?? {}) as Record<string, unknown>;
  const usage = (c.usage ?? {}) as Record<string, unknown>;
  const request = (c.request ?? {}) as Record<string, unknown>;
  const completion = (c.completion ?? {}) as Record<string, unknown>;
  let prompt = '';
  if (Array.isArray(request.messages)) {
    prompt = (request.messages as { role?: string; content?: unknown }[])
      .map((m) => `${m.role ?? '?'}: ${textOf(m.content)}`)
      .join('\n\n');
  } else if (typeof request.prompt === 'string') prompt = request.prompt;
  else if (request.messages === undefined && Object.keys(request).length > 0) prompt = JSON.stringify(request, null, 2);
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return {
    model: typeof c.model === 'string' ? c.model : '?',
    inputTokens: num(usage.inputTokens),
    outputTokens: num(usage.outputTokens),
    cost: typeof usage.cost === 'number' ? usage.cost : null,
    durationMs: typeof c.durationMs === 'number' ? c.durationMs : null,
    prompt,
    completions: Array.isArray(completion.completions) ? completion.completions.map((x) => textOf(x)) : [],
    error: typeof c.error === 'string' ? c.error : null,
  };
}

/** One short line that says what an entry is, for the collapsed row. */
export function entrySummary(entry: TraceEntryView): string {
  const c = (entry.content ?? {}) as Record<string, unknown>;
  const clip = (s: string) => (s.length > 200 ? `${s.slice(0, 200)}…` : s).replaceAll('\n', ' ⏎ ');
  switch (entry.kind) {
    case 'log':
      return clip(Array.isArray(c.content) ? c.content.map((x) => textOf(x)).join(' ') : textOf(c.content));
    case 'action':
      return clip(JSON.stringify(c.action ?? c));
    case 'observation':
      return clip(JSON.stringify(c.observation ?? c));
    case 'submission':
      return clip(`submitted ${JSON.stringify(c.value)}`);
    case 'error':
      return clip(`${String(c.from ?? 'error')}: ${textOf(c.detail)}`);
    case 'score':
    case 'intermediate-score':
      return clip(
        `score ${c.score === null || c.score === undefined ? 'none' : String(c.score)}${c.message ? ` — ${textOf(c.message)}` : ''}`,
      );
    case 'agent-output':
      return clip(`${String(c.stream)}: ${textOf(c.text)}`);
    case 'generation': {
      const g = generationSummary(c);
      const cost = g.cost === null ? 'cost unknown' : `$${g.cost.toFixed(4)}`;
      return clip(
        `${g.model} · ${g.inputTokens}+${g.outputTokens} tokens · ${cost}${g.error ? ` · failed: ${g.error}` : ''}`,
      );
    }
    case 'frame-start':
      return clip(`frame ${c.name ? JSON.stringify(c.name) : `#${entry.id}`}`);
    case 'frame-end':
      return 'end of frame';
    case 'pause':
    case 'unpause':
      return `${entry.kind} (${String(c.reason ?? '')})`;
    case 'input-request':
      return clip(
        `asks: ${textOf(c.description)}${c.input !== null && c.input !== undefined ? ` → ${textOf(c.input)}` : ''}`,
      );
    case 'input-response':
      return clip(c.input !== undefined ? `answered: ${textOf(c.input)}` : `chose option ${String(c.choice)}`);
    case 'rating-request':
      return clip(
        `rate ${Array.isArray(c.options) ? c.options.length : '?'} options${c.description ? `: ${textOf(c.description)}` : ''}`,
      );
    case 'save-state':
      return `saved agent state #${String(c.stateId)}`;
    default:
      return clip(JSON.stringify(c));
  }
}

export interface UsagePoint {
  /** ms since the first point. */
  t: number;
  tokens: number;
  cost: number;
}

/** Cumulative tokens and (known) cost over time from generation and burn-tokens entries. */
export function usageSeries(entries: readonly TraceEntryView[]): UsagePoint[] {
  const points: UsagePoint[] = [];
  let tokens = 0;
  let cost = 0;
  let start: number | undefined;
  for (const entry of entries) {
    let added = false;
    if (entry.kind === 'generation') {
      const g = generationSummary(entry.content);
      tokens += g.inputTokens + g.outputTokens;
      cost += g.cost ?? 0;
      added = true;
    } else if (entry.kind === 'burn-tokens') {
      const c = (entry.content ?? {}) as Record<string, unknown>;
      const n = (v: unknown) => (typeof v === 'number' ? v : 0);
      tokens += n(c.promptTokens) + n(c.completionTokens);
      added = true;
    }
    if (!added) continue;
    const time = Date.parse(entry.calledAt);
    start ??= time;
    points.push({ t: time - start, tokens, cost });
  }
  return points;
}

/** Parses `#entry-123` into 123. */
export function entryIdFromHash(hash: string): number | null {
  const match = /^#entry-(\d+)$/.exec(hash);
  return match ? Number(match[1]) : null;
}
