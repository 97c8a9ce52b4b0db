import { NavLink, Outlet, useNavigate } from 'react-router';
import { getAccessToken, getIdToken, setAccessToken, signedInName } from '../api/client.js';
import { useAuthConfig } from '../pages/login/auth-config.js';
import { signOutAtProvider } from '../pages/login/oidc.js';
import { ErrorBoundary } from './ErrorBoundary.js';

const LINKS = [
  { to: '/runs', label: 'Runs' },
  { to: '/task-environments', label: 'Task environments' },
  { to: '/playground', label: 'Playground' },
];

/** The frame of every page: the navigation bar, then the page inside an error boundary. */
export function Layout() {
  const navigate = useNavigate();
  const signedIn = getAccessToken() !== null;
  const authConfig = useAuthConfig().data;
  const readOnly = authConfig?.readOnly === true;
  const name = signedIn ? signedInName() : null;
  return (
    <>
      <header className="nav">
        <NavLink to="/runs" className="brand">
          Terrarium
        </NavLink>
        <nav aria-label="Main">
          {LINKS.map((link) => (
            <NavLink key={link.to} to={link.to}>
              {link.label}
            </NavLink>
          ))}
        </nav>
        <span className="spacer" />
        {readOnly ? (
          <span
            className="status"
            style={{ background: '#fde68a', color: '#1f2937', fontWeight: 600 }}
            title="VIVARIA_IS_READ_ONLY: everything is visible, nothing can be changed"
          >
            Read-only
          </span>
        ) : signedIn ? (
          <>
            {name && <span className="hint">{name}</span>}
            <button
              type="button"
              className="link-button"
              onClick={async () => {
                const idToken = getIdToken();
                setAccessToken(null);
                if (authConfig?.oidc && (await signOutAtProvider(authConfig.oidc, idToken))) return;
                navigate('/login');
              }}
            >
              Sign out
            </button>
          </>
        ) : (
          <NavLink to="/login">Sign in</NavLink>
        )}
      </header>
      <ErrorBoundary>
        <Outlet />
      </ErrorBoundary>
    </>
  );
}
