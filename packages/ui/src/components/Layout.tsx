import { NavLink, Outlet, useNavigate } from 'react-router';
import { getAccessToken, setAccessToken } from '../api/client.js';
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
        {signedIn ? (
          <button
            type="button"
            className="link-button"
            onClick={() => {
              setAccessToken(null);
              navigate('/login');
            }}
          >
            Sign out
          </button>
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
