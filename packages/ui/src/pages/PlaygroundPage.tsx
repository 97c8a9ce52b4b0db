/** Playground (issue 5): not built yet; the page says so rather than pretending. */
export function PlaygroundPage() {
  return (
    <main className="page">
      <h1>Playground</h1>
      <p className="hint">The generation playground is not built yet.</p>
    </main>
  );
}
