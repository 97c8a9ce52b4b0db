import { lazy, Suspense } from 'react';
import { Navigate, Route, Routes } from 'react-router';
import { Layout } from './components/Layout.js';
import { RequireSignIn } from './components/RequireSignIn.js';
import { LoginPage } from './pages/LoginPage.js';
import { PlaygroundPage } from './pages/PlaygroundPage.js';
import { RunsPage } from './pages/RunsPage.js';
import { TaskEnvironmentsPage } from './pages/TaskEnvironmentsPage.js';

// The run page (trace viewer) is its own chunk: the runs page does not wait for it.
const RunPage = lazy(() => import('./pages/run/RunPage.js').then((module) => ({ default: module.RunPage })));

/** The routes: every page but sign-in needs a token. */
export function App() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route path="/" element={<Navigate to="/runs" replace />} />
        <Route path="/login" element={<LoginPage />} />
        <Route
          path="/runs"
          element={
            <RequireSignIn>
              <RunsPage />
            </RequireSignIn>
          }
        />
        <Route
          path="/runs/:runId"
          element={
            <RequireSignIn>
              <Suspense fallback={<main className="page">Loading the run page…</main>}>
                <RunPage />
              </Suspense>
            </RequireSignIn>
          }
        />
        <Route
          path="/task-environments"
          element={
            <RequireSignIn>
              <TaskEnvironmentsPage />
            </RequireSignIn>
          }
        />
        <Route
          path="/playground"
          element={
            <RequireSignIn>
              <PlaygroundPage />
            </RequireSignIn>
          }
        />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}

function NotFound() {
  return (
    <main className="page">
      <h1>Page not found</h1>
      <p>
        Nothing lives at this address. <a href="/runs">Go to the runs</a>.
      </p>
    </main>
  );
}
