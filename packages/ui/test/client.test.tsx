// @vitest-environment jsdom
import { cleanup, render, screen } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, errorFromResponse } from '../src/api/client.js';
import { ErrorBanner } from '../src/components/ErrorBanner.js';
import { ErrorBoundary } from '../src/components/ErrorBoundary.js';
import { csvField, toCsv } from '../src/lib/csv.js';

afterEach(cleanup);

function Broken(): never {
  throw new Error('cannot read the trace');
}

describe('errorFromResponse', () => {
  it("reads the server's { error: { code, message } } shape", () => {
    const error = errorFromResponse(
      401,
      'Unauthorized',
      JSON.stringify({ error: { code: 'unauthenticated', message: 'Invalid access token.' } }),
    );
    expect(error).toMatchObject({ status: 401, code: 'unauthenticated', message: 'Invalid access token.' });
    expect(error.isUnauthenticated).toBe(true);
  });

  it("reads Fastify's own { error, message } shape", () => {
    const error = errorFromResponse(
      413,
      'Payload Too Large',
      JSON.stringify({ error: 'Payload Too Large', message: 'Body is too large' }),
    );
    expect(error).toMatchObject({ status: 413, message: 'Body is too large' });
  });

  it('falls back to the status line and text for a non-JSON answer (a proxy page)', () => {
    expect(errorFromResponse(502, 'Bad Gateway', '<html>upstream down</html>').message).toBe(
      '502 Bad Gateway: <html>upstream down</html>',
    );
  });
});

describe('ErrorBanner', () => {
  it('shows the message as an alert, with a sign-in link on 401', () => {
    render(
      <MemoryRouter>
        <ErrorBanner error={new ApiError(401, 'unauthenticated', 'Invalid access token.')} title="Runs unavailable" />
      </MemoryRouter>,
    );
    expect(screen.getByRole('alert').textContent).toContain('Runs unavailable: Invalid access token.');
    expect(screen.getByRole('link', { name: 'Sign in' }).getAttribute('href')).toMatch(/^\/login\?next=/);
  });
});

describe('ErrorBoundary', () => {
  it('shows a render error as a message instead of a blank page', () => {
    const original = console.error;
    console.error = () => {};
    try {
      render(
        <MemoryRouter>
          <ErrorBoundary>
            <Broken />
          </ErrorBoundary>
        </MemoryRouter>,
      );
    } finally {
      console.error = original;
    }
    expect(screen.getByRole('alert').textContent).toContain('This page failed to render: cannot read the trace');
    expect(screen.getByRole('button', { name: 'Try again' })).toBeTruthy();
  });
});

describe('CSV', () => {
  it('quotes what needs quoting and writes JSON for objects', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField(null)).toBe('');
    expect(toCsv(['id', 'doc'], [[1, { a: [1, 2] }]])).toBe('id,doc\r\n1,"{""a"":[1,2]}"\r\n');
  });
});
