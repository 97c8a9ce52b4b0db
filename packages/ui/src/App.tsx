import { type ComponentType, lazy, type ReactNode, Suspense } from 'react';
import { Navigate, Route, Routes } from 'react-router';
import { Layout } from './components/Layout.js';
import { RequireSignIn } from './components/RequireSignIn.js';
import { LoginPage } from './pages/LoginPage.js';
import { LoginCallbackPage } from './pages/login/LoginCallbackPage.js';
import { RunsPage } from './pages/RunsPage.js';

/** A page in its own chunk, so the runs page (the first one most people open) does not wait for its code. */
function lazyPage<M>(load: () => Promise<M>, pick: (module: M) => ComponentType) {
  return lazy(() => load().then((module) => ({ default: pick(module) })));
}
const RunPage = lazyPage(
  () => import('./pages/run/RunPage.js'),
  (m) => m.RunPage,
);
const TaskEnvironmentsPage = lazyPage(
  () => import('./pages/TaskEnvironmentsPage.js'),
  (m) => m.TaskEnvironmentsPage,
);
const PlaygroundPage = lazyPage(
  () => import('./pages/PlaygroundPage.js'),
  (m) => m.PlaygroundPage,
);

function Loading({ what, children }: { what: string; children: ReactNode }) {
  return <Suspense fallback={<main className="page">Loading the {what}…</main>}>{children}</Suspense>;
}

/** The routes: every page but sign-in needs a token. */
export function App() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route path="/" element={<Navigate to="/runs" replace />} />
        <Route path="/login" element={<LoginPage />} />
        <Route path="/login/callback" element={<LoginCallbackPage />} />
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
              <Loading what="run page">
                <RunPage />
              </Loading>
            </RequireSignIn>
          }
        />
        <Route
          path="/task-environments"
          element={
            <RequireSignIn>
              <Loading what="task environments">
                <TaskEnvironmentsPage />
              </Loading>
            </RequireSignIn>
          }
        />
        <Route
          path="/playground"
          element={
            <RequireSignIn>
              <Loading what="playground">
                <PlaygroundPage />
              </Loading>
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
