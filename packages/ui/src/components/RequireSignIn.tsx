import type { ReactNode } from 'react';
import { Navigate, useLocation } from 'react-router';
import { getAccessToken } from '../api/client.js';

/** Sends a visitor without a token to the sign-in page, coming back to the same URL afterwards. */
export function RequireSignIn({ children }: { children: ReactNode }) {
  const location = useLocation();
  if (getAccessToken() === null) {
    return <Navigate to={`/login?next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  }
  return children;
}
