import { useEffect, useRef, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { useAuthConfig } from './auth-config.js';
import { completeSignIn, describeSignInError } from './oidc.js';

/** Where the OpenID provider sends the browser back (`/login/callback?code=…&state=…`). */
export function LoginCallbackPage() {
  const config = useAuthConfig();
  const navigate = useNavigate();
  const [error, setError] = useState<string | null>(null);
  // The code is single-use: StrictMode's second effect run must not spend it again.
  const started = useRef(false);

  useEffect(() => {
    const oidc = config.data?.oidc;
    if (!oidc || started.current) return;
    started.current = true;
    completeSignIn(oidc, new URL(location.href)).then(
      (next) => navigate(next, { replace: true }),
      (caught: unknown) => setError(describeSignInError(caught)),
    );
  }, [config.data, navigate]);

  const problem =
    error ??
    (config.error ? config.error.message : null) ??
    (config.data && !config.data.oidc ? 'This server does not use an OpenID provider for sign-in.' : null);
  return (
    <main className="page narrow">
      <h1>Signing in…</h1>
      {problem ? (
        <div role="alert" className="error-banner">
          <p>Sign-in failed: {problem}</p>
          <Link to="/login">Try again</Link>
        </div>
      ) : (
        <p className="hint">Finishing sign-in with your identity provider.</p>
      )}
    </main>
  );
}
