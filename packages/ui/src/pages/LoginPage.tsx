import { type FormEvent, useState } from 'react';
import { useNavigate, useSearchParams } from 'react-router';
import { apiFetch, setAccessToken } from '../api/client.js';
import { ErrorBanner } from '../components/ErrorBanner.js';

/**
 * Sign-in with the server's static ACCESS_TOKEN (`terrarium config` shows where it is kept). The token is checked
 * against the API before it is stored.
 */
export function LoginPage() {
  const [token, setToken] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const next = params.get('next');

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setAccessToken(token.trim());
    try {
      await apiFetch('/api/runs?limit=1');
      navigate(next?.startsWith('/') ? next : '/runs', { replace: true });
    } catch (caught) {
      setAccessToken(null);
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="page narrow">
      <h1>Sign in</h1>
      <form onSubmit={submit} className="stack">
        <label htmlFor="access-token">Access token</label>
        <input
          id="access-token"
          type="password"
          autoComplete="current-password"
          value={token}
          onChange={(event) => setToken(event.target.value)}
          required
        />
        <p className="hint">
          The server's <code>ACCESS_TOKEN</code>; <code>./terrarium config</code> shows where it is kept.
        </p>
        <button type="submit" disabled={busy || token.trim() === ''}>
          Sign in
        </button>
      </form>
      <ErrorBanner error={error} title="Sign-in failed" />
    </main>
  );
}
