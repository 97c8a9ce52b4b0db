import type { ReactNode } from 'react';
import { Navigate, useLocation } from 'react-router';
import { getAccessToken, signInPath } from '../api/client.js';
import { useAuthConfig } from '../pages/login/auth-config.js';

/**
 * Sends a visitor without a token to the sign-in page, coming back to the same URL afterwards; on a read-only server
 * (VIVARIA_IS_READ_ONLY) everyone may look without signing in.
 */
export function RequireSignIn({ children }: { children: ReactNode }) {
  const location = useLocation();
  const signedIn = getAccessToken() !== null;
  const config = useAuthConfig();
  if (signedIn || config.data?.readOnly) return children;
  // Unknown yet: wait for the server rather than bounce a read-only visitor to a sign-in page.
  if (config.isPending) return <main className="page">Loading…</main>;
  return <Navigate to={signInPath(location.pathname + location.search)} replace />;
}
