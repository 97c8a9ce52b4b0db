/** Asks before killing a run: a kill tears its sandbox down and cannot be undone from the UI. */
export const confirmKill = (runId: number) => confirm(`Kill run ${runId}? Its sandbox is torn down.`);
