import { QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter } from 'react-router';
import { App } from './App.js';
import { getAccessToken } from './api/client.js';
import { createQueryClient } from './api/query.js';
import { RUNS_TABLE_PATH } from './pages/RunsPage.js';
import { takeEarlyOrFetch } from './pages/runs/early-fetch.js';
import './styles.css';

const queryClient = createQueryClient();
// Opening the runs page: ask for the runs now, while React mounts, rather than after.
if (location.pathname === '/runs' && getAccessToken() !== null) {
  // index.html has usually asked already: take its response over.
  void queryClient.prefetchQuery({ queryKey: [RUNS_TABLE_PATH], queryFn: () => takeEarlyOrFetch(RUNS_TABLE_PATH) });
}

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root element');
createRoot(root).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <App />
      </BrowserRouter>
    </QueryClientProvider>
  </StrictMode>,
);
