import type { AuthConfigView } from '@terrarium/shared';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { apiFetch, setAccessToken } from '../api/client.js';
import { ErrorBanner } from '../components/ErrorBanner.js';
import { useAuthConfig } from './login/auth-config.js';
import { beginSignIn, describeSignInError } from './login/oidc.js';

/**
 * Sign-in, the way the server says (`/api/auth-config`): with its OpenID Connect provider (USE_AUTH0=true), with its
 * static ACCESS_TOKEN, or not at all on a read-only server.
 */
export function LoginPage() {
  const config = useAuthConfig();
  const [params] = useSearchParams();
  const requested = params.get('next');
  const next = requested?.startsWith('/') && !requested.startsWith('//') ? requested : '/runs';
  const expired = params.get('reason') === 'expired';

  return (
    <main className="page narrow">
      <h1>Sign in</h1>
      {expired && <p className="hint">Your sign-in has expired or is no longer valid; please sign in again.</p>}
      {config.isPending ? (
        <p className="hint">Asking the server how to sign in…</p>
      ) : config.error ? (
        <ErrorBanner error={config.error} title="The server did not say how to sign in" />
      ) : config.data.readOnly ? (
        <p>
          This Terrarium is read-only: no sign-in is needed, and nothing can be changed. <Link to={next}>Continue</Link>
        </p>
      ) : config.data.oidc ? (
        <OidcSignIn oidc={config.data.oidc} next={next} />
      ) : (
        <StaticTokenSignIn next={next} />
      )}
    </main>
  );
}

function OidcSignIn({ oidc, next }: { oidc: NonNullable<AuthConfigView['oidc']>; next: string }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const provider = new URL(oidc.issuer).host;
  return (
    <div className="stack">
      <button
        type="button"
        disabled={busy}
        onClick={() => {
          setBusy(true);
          setError(null);
          beginSignIn(oidc, next).catch((caught: unknown) => {
            setBusy(false);
            setError(describeSignInError(caught));
          });
        }}
      >
        Sign in with {provider}
      </button>
      <p className="hint">You sign in on your organisation's identity provider ({oidc.issuer}) and come back here.</p>
      {error && (
        <div role="alert" className="error-banner">
          Sign-in failed: {error}
        </div>
      )}
    </div>
  );
}

/** The server's static ACCESS_TOKEN (`terrarium config` shows where it is kept), checked before it is stored. */
function StaticTokenSignIn({ next }: { next: string }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const navigate = useNavigate();

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setAccessToken(token.trim());
    try {
      await apiFetch('/api/runs?limit=1');
      navigate(next, { replace: true });
    } catch (caught) {
      setAccessToken(null);
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
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
    </>
  );
}
