import type { TraceEntryView } from '@terrarium/shared';
import { describe, expect, it } from 'vitest';
import { SseParser } from '../../src/pages/run/sse.js';
import {
  entriesForBranch,
  entryIdFromHash,
  entrySummary,
  generationSummary,
  traceRows,
  usageSeries,
} from '../../src/pages/run/trace-model.js';

let nextId = 1;
function entry(
  kind: TraceEntryView['kind'],
  content: unknown = {},
  extra: Partial<TraceEntryView> = {},
): TraceEntryView {
  const id = nextId++;
  return {
    id,
    runId: 1,
    agentBranchNumber: 0,
    index: id,
    kind,
    content,
    calledAt: new Date(1_700_000_000_000 + id * 1000).toISOString(),
    agentTimestamp: null,
    ...extra,
  };
}

describe('traceRows', () => {
  it('nests entries in frames and hides a collapsed frame’s insides (and its end)', () => {
    const outer = entry('frame-start', { name: 'outer' });
    const a = entry('log', { content: ['a'] });
    const inner = entry('frame-start', { name: 'inner' });
    const b = entry('action', { action: { x: 1 } });
    const innerEnd = entry('frame-end', { frameId: inner.id });
    const outerEnd = entry('frame-end', { frameId: outer.id });
    const after = entry('log', { content: ['after'] });
    const all = [outer, a, inner, b, innerEnd, outerEnd, after];

    const open = traceRows(all, new Set());
    expect(open.map((r) => [r.entry.id, r.depth])).toEqual([
      [outer.id, 0],
      [a.id, 1],
      [inner.id, 1],
      [b.id, 2],
      [innerEnd.id, 1],
      [outerEnd.id, 0],
      [after.id, 0],
    ]);
    expect(open[0]!.frameSize).toBe(4);
    expect(open[2]!.frameSize).toBe(1);

    const collapsedInner = traceRows(all, new Set([inner.id]));
    expect(collapsedInner.map((r) => r.entry.id)).toEqual([outer.id, a.id, inner.id, outerEnd.id, after.id]);
    const collapsedOuter = traceRows(all, new Set([outer.id]));
    expect(collapsedOuter.map((r) => r.entry.id)).toEqual([outer.id, after.id]);
  });

  it('keeps an open frame (still running) and closes the innermost frame on a frame-end without an id', () => {
    const f = entry('frame-start', { name: null });
    const x = entry('log', { content: ['x'] });
    const end = entry('frame-end', { frameId: null });
    const open = entry('frame-start', { name: 'running' });
    const y = entry('log', { content: ['y'] });
    const rows = traceRows([f, x, end, open, y], new Set([open.id]));
    expect(rows.map((r) => r.entry.id)).toEqual([f.id, x.id, end.id, open.id]);
    expect(rows[3]!.frameSize).toBe(1);
  });

  it('lays out 100,000 entries quickly enough to redo on each live update', () => {
    const many = Array.from({ length: 100_000 }, (_, i) =>
      i % 100 === 0
        ? entry('frame-start', {})
        : i % 100 === 99
          ? entry('frame-end', {})
          : entry('log', { content: [i] }),
    );
    const started = performance.now();
    const rows = traceRows(many, new Set());
    const took = performance.now() - started;
    expect(rows).toHaveLength(100_000);
    console.log(`traceRows: 100,000 entries in ${took.toFixed(0)} ms`);
    // Generous: the machine running the tests is shared; typically tens of ms.
    expect(took).toBeLessThan(1000);
  });
});

describe('entriesForBranch', () => {
  it('shows a fork’s ancestors up to each fork point, then its own entries', () => {
    const t0 = entry('log', {}, { agentBranchNumber: 0 });
    const t1 = entry('log', {}, { agentBranchNumber: 0 });
    const t2 = entry('log', {}, { agentBranchNumber: 0 });
    const b1 = entry('log', {}, { agentBranchNumber: 1 });
    const t3 = entry('log', {}, { agentBranchNumber: 0 });
    const b2 = entry('log', {}, { agentBranchNumber: 2 });
    const branches = [
      { agentBranchNumber: 0, parentAgentBranchNumber: null, parentTraceEntryId: null },
      { agentBranchNumber: 1, parentAgentBranchNumber: 0, parentTraceEntryId: t1.id },
      { agentBranchNumber: 2, parentAgentBranchNumber: 1, parentTraceEntryId: b1.id },
    ];
    const all = [t0, t1, t2, b1, t3, b2];
    expect(entriesForBranch(all, branches, 0).map((e) => e.id)).toEqual([t0.id, t1.id, t2.id, t3.id]);
    expect(entriesForBranch(all, branches, 1).map((e) => e.id)).toEqual([t0.id, t1.id, b1.id]);
    expect(entriesForBranch(all, branches, 2).map((e) => e.id)).toEqual([t0.id, t1.id, b1.id, b2.id]);
  });
});

describe('entry summaries', () => {
  it('reads a generation entry: prompt, completion, tokens and cost', () => {
    const content = {
      api: 'middleman.generate',
      model: 'gpt-4o-mini',
      request: { messages: [{ role: 'user', content: 'hi there' }] },
      completion: { completions: ['hello'] },
      usage: { inputTokens: 2, outputTokens: 1, cost: 0.00012 },
      durationMs: 40,
    };
    expect(generationSummary(content)).toMatchObject({
      model: 'gpt-4o-mini',
      prompt: 'user: hi there',
      completions: ['hello'],
      inputTokens: 2,
      outputTokens: 1,
      cost: 0.00012,
    });
    expect(entrySummary(entry('generation', content))).toBe('gpt-4o-mini · 2+1 tokens · $0.0001');
    expect(
      entrySummary(entry('generation', { ...content, usage: { inputTokens: 1, outputTokens: 1, cost: null } })),
    ).toMatch(/cost unknown/);
  });

  it('says what each kind is in one line', () => {
    expect(entrySummary(entry('submission', { value: '42' }))).toBe('submitted "42"');
    expect(entrySummary(entry('error', { from: 'agent', detail: 'boom' }))).toBe('agent: boom');
    expect(entrySummary(entry('input-request', { description: 'Which file?', input: null }))).toBe('asks: Which file?');
    expect(entrySummary(entry('log', { content: ['multi\nline'] }))).toBe('multi ⏎ line');
  });
});

describe('usageSeries', () => {
  it('accumulates tokens and known cost over time', () => {
    const g = (i: number, o: number, cost: number | null) =>
      entry('generation', { model: 'm', usage: { inputTokens: i, outputTokens: o, cost } });
    const series = usageSeries([
      g(10, 5, 0.5),
      entry('log', {}),
      g(1, 1, null),
      entry('burn-tokens', { promptTokens: 3, completionTokens: 4 }),
    ]);
    expect(series.map((p) => [p.tokens, p.cost])).toEqual([
      [15, 0.5],
      [17, 0.5],
      [24, 0.5],
    ]);
    expect(series[0]!.t).toBe(0);
    expect(series[1]!.t).toBe(2000);
  });
});

describe('SseParser', () => {
  it('parses events split across chunks, skipping comments', () => {
    const parser = new SseParser();
    expect(parser.push('retry: 1000\n\n: ping\n\nid: 7\nevent: entries\nda')).toEqual([]);
    expect(parser.push('ta: [1,2]\n\nevent: status\ndata: {"status":"running"}\n\n')).toEqual([
      { event: 'entries', data: '[1,2]', id: '7' },
      { event: 'status', data: '{"status":"running"}', id: null },
    ]);
  });
});

it('reads entry ids from #entry-<id> links', () => {
  expect(entryIdFromHash('#entry-42')).toBe(42);
  expect(entryIdFromHash('#entry-x')).toBeNull();
  expect(entryIdFromHash('')).toBeNull();
});
