import { Link } from 'react-router';
import { ApiError } from '../api/client.js';

/** Shows an error as a readable sentence, with a way out when the cause is a missing or wrong sign-in. */
export function ErrorBanner({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  const unauthenticated = error instanceof ApiError && error.isUnauthenticated;
  return (
    <div role="alert" className="error-banner">
      {title && <strong>{title}: </strong>}
      <span className="error-message">{message}</span>
      {unauthenticated && (
        <>
          {' '}
          <Link to={`/login?next=${encodeURIComponent(location.pathname + location.search)}`}>Sign in</Link>
        </>
      )}
    </div>
  );
}
