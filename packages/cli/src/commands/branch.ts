import { readFile } from 'node:fs/promises';
import type { BranchView, UsageLimits } from '@terrarium/shared';
import { connect } from '../connection.js';

export interface ForkOptions {
  fromEntry: number;
  parent?: number;
  stateFile?: string;
  maxTokens?: number;
  maxActions?: number;
  maxSeconds?: number;
  maxCost?: number;
  serverUrl?: string;
}

/** `terrarium branch fork <run-id> --from-entry <id>`: a new branch from the state saved at (or given for) an entry. */
export async function branchForkCommand(runId: number, options: ForkOptions): Promise<number> {
  let agentState: unknown;
  if (options.stateFile) {
    const text = await readFile(options.stateFile, 'utf8').catch((error: Error) => {
      throw new Error(`Cannot read the state file ${options.stateFile}: ${error.message}`);
    });
    try {
      agentState = JSON.parse(text);
    } catch (error) {
      throw new Error(`The state file ${options.stateFile} is not JSON: ${(error as Error).message}`);
    }
  }
  const usageLimits: UsageLimits = {
    ...(options.maxTokens !== undefined && { tokens: options.maxTokens }),
    ...(options.maxActions !== undefined && { actions: options.maxActions }),
    ...(options.maxSeconds !== undefined && { totalSeconds: options.maxSeconds }),
    ...(options.maxCost !== undefined && { cost: options.maxCost }),
  };
  const connection = await connect({ serverUrl: options.serverUrl });
  try {
    const created = await connection.client.request<{ agentBranchNumber: number }>(
      'POST',
      `/api/runs/${runId}/branches`,
      {
        parentAgentBranchNumber: options.parent ?? 0,
        traceEntryId: options.fromEntry,
        ...(agentState !== undefined && { agentState }),
        ...(Object.keys(usageLimits).length > 0 && { usageLimits }),
      },
    );
    process.stdout.write(
      `Branch ${created.agentBranchNumber} of run ${runId} started from trace entry ${options.fromEntry}` +
        `${options.stateFile ? ` with the state in ${options.stateFile}` : ' with the state saved there'}.\n` +
        `Follow it with: terrarium branch list ${runId}\n`,
    );
    return 0;
  } finally {
    await connection.close();
  }
}

/** `terrarium branch list <run-id>`: every branch of the run, its parent, status, score and usage. */
export async function branchListCommand(runId: number, options: { json?: boolean; serverUrl?: string }) {
  const connection = await connect({ serverUrl: options.serverUrl });
  try {
    const branches = await connection.client.request<BranchView[]>('GET', `/api/runs/${runId}/branches`);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(branches, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`${formatBranches(branches)}\n`);
    return 0;
  } finally {
    await connection.close();
  }
}

export function formatBranches(branches: BranchView[]): string {
  const header = ['BRANCH', 'PARENT', 'FROM ENTRY', 'STATUS', 'SCORE', 'ACTIONS', 'TOKENS', 'SECONDS'];
  const rows = branches.map((b) => [
    String(b.agentBranchNumber),
    b.parentAgentBranchNumber === null ? '—' : String(b.parentAgentBranchNumber),
    b.parentTraceEntryId === null ? '—' : String(b.parentTraceEntryId),
    b.status,
    b.score === null ? '—' : String(b.score),
    b.usage ? `${b.usage.actions}/${b.usageLimits.actions}` : '—',
    b.usage ? `${b.usage.tokens}/${b.usageLimits.tokens}` : '—',
    b.usage ? `${b.usage.totalSeconds}` : '—',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
