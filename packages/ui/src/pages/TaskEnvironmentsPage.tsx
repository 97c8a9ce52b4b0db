/** Task environments (issue 5): the server has no task-environment API yet, so the page says so plainly. */
export function TaskEnvironmentsPage() {
  return (
    <main className="page">
      <h1>Task environments</h1>
      <p className="hint">
        The server does not offer a task-environment API yet; environments are listed by{' '}
        <code>docker ps --filter label=terrarium.instance</code> on the server's machine.
      </p>
    </main>
  );
}
