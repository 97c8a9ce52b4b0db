import { AgentOutputContent, type AgentOutputView } from '@terrarium/shared';
import { NotFoundError } from '../errors.js';
import type { RunRepository } from '../repository.js';
import type { TraceReader } from './trace-reader.js';

/** Keeps the last this-many characters of each stream: enough to read, small enough to send on every refresh. */
export const AGENT_OUTPUT_MAX_CHARS = 1_000_000;
/** Entries read (newest first); each holds at most 16 KiB, so this covers the kept characters of both streams. */
const MAX_ENTRIES = 2 * Math.ceil(AGENT_OUTPUT_MAX_CHARS / 16_384) + 2_000;

/**
 * The agent process's stdout and stderr on one branch. The engine streams them into the trace as `agent-output`
 * entries (batched each second); here they are joined back into the two streams, newest text kept when long.
 */
export async function agentOutput(
  repo: RunRepository,
  reader: TraceReader,
  runId: number,
  agentBranchNumber: number,
): Promise<AgentOutputView> {
  const branch = await repo.getBranch(runId, agentBranchNumber);
  if (!branch) throw new NotFoundError(`Run ${runId} has no branch ${agentBranchNumber}.`);
  const entries = (await reader.newestOfKind(runId, agentBranchNumber, 'agent-output', MAX_ENTRIES)).reverse();
  const out = { stdout: '', stderr: '' };
  for (const entry of entries) {
    const parsed = AgentOutputContent.safeParse(entry.content);
    if (parsed.success) out[parsed.data.stream] += parsed.data.text;
  }
  const tail = (text: string) => (text.length > AGENT_OUTPUT_MAX_CHARS ? text.slice(-AGENT_OUTPUT_MAX_CHARS) : text);
  return {
    agentBranchNumber,
    stdout: tail(out.stdout),
    stderr: tail(out.stderr),
    exitCode: branch.agentCommandResult?.exitCode ?? null,
    finished: branch.agentCommandResult !== null,
  };
}
