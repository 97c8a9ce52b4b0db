import { connect } from '../connection.js';
import { describeState, formatBatchesTable } from '../format.js';

/** `terrarium kill <id>`: ends the run at once, whatever state it is in. */
export async function killCommand(runId: number, options: { serverUrl?: string }): Promise<number> {
  const connection = await connect({ serverUrl: options.serverUrl });
  try {
    const run = await connection.client.killRun(runId);
    process.stdout.write(
      run.status === 'killed'
        ? `Run ${run.id} killed.\n`
        : `Run ${run.id} is ${describeState(run)}${run.status === 'running' || run.status === 'setting-up' ? ' (another server process owns it and will kill it)' : ''}.\n`,
    );
    return 0;
  } finally {
    await connection.close();
  }
}

/** `terrarium unkill <id>`: puts a run killed before it had a sandbox back in the queue. */
export async function unkillCommand(runId: number, options: { serverUrl?: string }): Promise<number> {
  const connection = await connect({ serverUrl: options.serverUrl });
  try {
    const run = await connection.client.unkillRun(runId);
    process.stdout.write(`Run ${run.id} is ${describeState(run)} again.\n`);
    return 0;
  } finally {
    await connection.close();
  }
}

/** `terrarium batches`: every run batch with its limit and how many of its runs are active and queued. */
export async function batchesCommand(options: { json?: boolean; serverUrl?: string }): Promise<number> {
  const connection = await connect({ serverUrl: options.serverUrl });
  try {
    const batches = await connection.client.listBatches();
    process.stdout.write(options.json ? `${JSON.stringify(batches, null, 2)}\n` : `${formatBatchesTable(batches)}\n`);
    return 0;
  } finally {
    await connection.close();
  }
}

/** `terrarium batch set-limit <name> <n|none>`: 0 holds the batch; raising the limit releases queued runs at once. */
export async function batchSetLimitCommand(
  name: string,
  limit: number | null,
  options: { serverUrl?: string },
): Promise<number> {
  const connection = await connect({ serverUrl: options.serverUrl });
  try {
    const batch = await connection.client.setBatchLimit(name, limit);
    process.stdout.write(`${formatBatchesTable([batch])}\n`);
    return 0;
  } finally {
    await connection.close();
  }
}
