import type { RunSummaryView, TraceEntryView } from '@terrarium/shared';
import type { Middleman } from '../../llm/middleman.js';

/** Characters of trace the prompt may hold; a longer trace keeps its start and its end (where the outcome is). */
const MAX_TRACE_CHARS = 60_000;
const MAX_ENTRY_CHARS = 2_000;

const SYSTEM_PROMPT =
  'You summarize the trace of an AI agent working on a task. Say what the agent tried, what worked, what failed, ' +
  'where it asked for help, and how it ended (submission and score). Be concise: a short paragraph, then bullets.';

function entryLine(entry: TraceEntryView): string {
  const text = JSON.stringify(entry.content) ?? '';
  const clipped = text.length > MAX_ENTRY_CHARS ? `${text.slice(0, MAX_ENTRY_CHARS)}… (clipped)` : text;
  return `[${entry.index}] ${entry.kind}: ${clipped}`;
}

/** The trace as prompt text, shortened in the middle when too long. */
export function traceAsPrompt(entries: TraceEntryView[]): { text: string; entries: number } {
  const lines = entries.map(entryLine);
  const total = lines.reduce((sum, line) => sum + line.length + 1, 0);
  if (total <= MAX_TRACE_CHARS) return { text: lines.join('\n'), entries: lines.length };
  const head: string[] = [];
  const tail: string[] = [];
  let budget = MAX_TRACE_CHARS / 2;
  for (const line of lines) {
    if (budget - line.length < 0) break;
    head.push(line);
    budget -= line.length + 1;
  }
  budget = MAX_TRACE_CHARS / 2;
  for (let i = lines.length - 1; i >= head.length; i--) {
    const line = lines[i]!;
    if (budget - line.length < 0) break;
    tail.unshift(line);
    budget -= line.length + 1;
  }
  const skipped = lines.length - head.length - tail.length;
  return {
    text: [...head, `… (${skipped} entries left out) …`, ...tail].join('\n'),
    entries: head.length + tail.length,
  };
}

/**
 * Asks RUN_SUMMARY_GENERATION_MODEL for a summary of a run. The call goes to the middleman directly, not through
 * LlmService.generate: it is the person's request, so it is neither recorded in the agent's trace nor charged to
 * the agent's usage limits.
 */
export async function summarizeRun(
  middleman: Middleman,
  model: string,
  run: { id: number; taskId: string; agentName: string; status: string; score: number | null },
  entries: TraceEntryView[],
  signal?: AbortSignal,
): Promise<RunSummaryView> {
  const trace = traceAsPrompt(entries);
  const result = await middleman.generate(
    {
      model,
      messages: [
        { role: 'system', content: SYSTEM_PROMPT },
        {
          role: 'user',
          content:
            `Run ${run.id}: task ${run.taskId}, agent ${run.agentName}, status ${run.status}, ` +
            `score ${run.score ?? 'none'}.\nTrace (${entries.length} entries):\n${trace.text}`,
        },
      ],
      maxTokens: 1024,
    },
    { runId: run.id, agentBranchNumber: 0, ...(signal && { signal }) },
  );
  const summary = result.outputs[0]?.completion ?? '';
  return { model: result.model, summary, entriesSummarized: trace.entries };
}
