/** The sign-in variables' rules: http:// issuers only on loopback and never in production, and unused M2M creds warn. */
import { describe, expect, it } from 'vitest';
import { ConfigError, getConfigMetadata, loadConfig } from '../../src/config/index.js';
import { fakeSystem, noDisk, productionEnv } from '../config/helpers.js';

const OIDC = {
  USE_AUTH0: 'true',
  ID_TOKEN_AUDIENCE: 'terrarium-ui',
  ACCESS_TOKEN_AUDIENCE: 'https://terrarium.example.com/api',
};

function errorOf(env: NodeJS.ProcessEnv, options = noDisk): string {
  try {
    loadConfig(env, options);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('loadConfig did not throw');
}

describe('ISSUER and JWKS_URI', () => {
  it('accept https://, and http:// on a loopback host outside production', () => {
    for (const host of ['127.0.0.1:4444', 'localhost:4444', '[::1]:4444']) {
      const config = loadConfig(
        { ...OIDC, ISSUER: `http://${host}/`, JWKS_URI: `http://${host}/.well-known/jwks.json` },
        noDisk,
      );
      expect(config.ISSUER).toBe(`http://${host}/`);
    }
    expect(
      loadConfig(
        { ...OIDC, ISSUER: 'https://t.auth0.com/', JWKS_URI: 'https://t.auth0.com/.well-known/jwks.json' },
        noDisk,
      ).JWKS_URI,
    ).toBe('https://t.auth0.com/.well-known/jwks.json');
  });

  it('refuse http:// on any other host, naming what is expected', () => {
    const message = errorOf({ ...OIDC, ISSUER: 'http://idp.example.com/', JWKS_URI: 'https://idp.example.com/jwks' });
    expect(message).toMatch(/ISSUER/);
    expect(message).toMatch(/scheme 'http'/);
    expect(message).toMatch(/http:\/\/ on 127\.0\.0\.1, ::1 or localhost/);
  });

  it('refuse http:// even on loopback in production', () => {
    const message = errorOf(
      {
        ...productionEnv(),
        ...OIDC,
        ISSUER: 'http://127.0.0.1:4444/',
        JWKS_URI: 'http://127.0.0.1:4444/.well-known/jwks.json',
      },
      { system: fakeSystem },
    );
    expect(message).toMatch(/ISSUER.*only outside production/);
    expect(message).toMatch(/JWKS_URI.*only outside production/);
  });
});

describe('the machine-to-machine application variables', () => {
  it('warn when set without USE_AUTH0=true, since nothing uses them then', () => {
    const config = loadConfig(
      { VIVARIA_AUTH0_CLIENT_ID_FOR_AGENT_APPLICATION: 'ci', VIVARIA_AUTH0_CLIENT_SECRET_FOR_AGENT_APPLICATION: 's' },
      noDisk,
    );
    expect(getConfigMetadata(config)!.warnings.join('\n')).toMatch(
      /VIVARIA_AUTH0_CLIENT_ID_FOR_AGENT_APPLICATION and VIVARIA_AUTH0_CLIENT_SECRET_FOR_AGENT_APPLICATION are set but USE_AUTH0 is not true/,
    );
  });
});
