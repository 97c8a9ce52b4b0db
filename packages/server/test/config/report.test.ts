import { describe, expect, it } from 'vitest';
import {
  describeConfig,
  formatConfigTable,
  getConfigMetadata,
  loadConfig,
  maskSecret,
  unimplementedVariablesInUse,
  VARIABLES,
} from '../../src/config/index.js';
import { fakeSystem, noDisk, useTempDirs } from './helpers.js';

const tempDir = useTempDirs();

describe('maskSecret', () => {
  it('shows at most the last four characters of long secrets and nothing of short ones', () => {
    expect(maskSecret('abcdefghijklmnopqrstuvwxyz')).toBe('••••wxyz');
    expect(maskSecret('short-secret')).toBe('(set)');
  });
});

describe('describeConfig / formatConfigTable', () => {
  it('lists every variable with its value, source and status', () => {
    const dataDir = tempDir();
    const config = loadConfig(
      { TERRARIUM_DATA_DIR: dataDir, PORT: '5000', SENTRY_DSN: 'https://t.example/' },
      {
        system: fakeSystem,
      },
    );
    const rows = describeConfig(config);
    expect(rows.map((row) => row.name)).toEqual(VARIABLES.map((definition) => definition.name));
    const byName = new Map(rows.map((row) => [row.name, row]));
    expect(byName.get('PORT')).toMatchObject({ value: '5000', source: 'env', status: 'implemented' });
    expect(byName.get('MACHINE_NAME')).toMatchObject({ value: 'build-box_01.local', source: 'default' });
    expect(byName.get('PGHOST')).toMatchObject({ value: '', source: 'unset' });
    expect(byName.get('SENTRY_DSN')).toMatchObject({ source: 'env', status: 'not-yet-implemented' });
    expect(byName.get('ID_TOKEN')).toMatchObject({ source: 'generated', secret: true });
    expect(byName.get('ID_TOKEN')!.value).toMatch(/^••••.{4}$/);

    const table = formatConfigTable(rows);
    expect(table).toMatch(/^ {2}VARIABLE +VALUE +SOURCE +STATUS$/m);
    expect(table).toMatch(/^API and UI$/m);
    expect(table).toMatch(/^ {2}PORT +5000 +env$/m);
    expect(table).toMatch(/^ {2}SENTRY_DSN +https:\/\/t\.example\/ +env +not yet implemented$/m);
    expect(formatConfigTable(rows, { hideUnset: true })).not.toMatch(/\bPGHOST\b/);
  });

  it('renders lists, regexes and tags in the syntax they were given in', () => {
    const config = loadConfig(
      { NON_INTERVENTION_FULL_INTERNET_MODELS: 'gpt-4o.*,claude-.*', AUX_VM_EXTRA_TAGS: 'a=1,b=2' },
      noDisk,
    );
    const byName = new Map(describeConfig(config).map((row) => [row.name, row]));
    expect(byName.get('NON_INTERVENTION_FULL_INTERNET_MODELS')!.value).toBe('gpt-4o.*,claude-.*');
    expect(byName.get('AUX_VM_EXTRA_TAGS')!.value).toBe('a=1,b=2');
  });

  it('never prints a secret', () => {
    const env: NodeJS.ProcessEnv = {};
    const secrets: string[] = [];
    for (const definition of VARIABLES.filter((d) => d.secret)) {
      // Valid values that are unmistakable in the output.
      const value =
        definition.name === 'DATABASE_URL'
          ? 'postgres://user:SuperSecretPassw0rd@db/x'
          : definition.name.endsWith('_DATA')
            ? 'U3VwZXJTZWNyZXRLZXlEYXRhMTIzNDU2Nzg5MA=='
            : `SuperSecret-${definition.name}-0123456789`;
      env[definition.name] = value;
      secrets.push(value);
    }
    // The partners the rules between variables ask for.
    Object.assign(env, {
      PGHOST: 'db.internal',
      PG_READONLY_USER: 'reader',
      TASK_AWS_REGION: 'us-west-2',
      TASK_AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
      VIVARIA_AWS_ACCESS_KEY_ID_FOR_EKS: 'AKIAIOSFODNN7EXAMPLE',
      VIVARIA_K8S_CLUSTER_CLIENT_CERTIFICATE_DATA: 'Q0VSVA==',
      VIVARIA_K8S_GPU_CLUSTER_CLIENT_CERTIFICATE_DATA: 'Q0VSVA==',
    });
    const config = loadConfig(env, noDisk);
    const rows = describeConfig(config);
    const output = [
      JSON.stringify(rows),
      formatConfigTable(rows),
      formatConfigTable(rows, { maxValueWidth: 500 }),
    ].join('\n');
    for (const secret of secrets) {
      expect(output).not.toContain(secret);
      expect(output).not.toContain(secret.slice(0, 12));
    }
    expect(output).not.toContain('SuperSecret');
    for (const row of rows.filter((r) => r.secret)) expect(row.value).toMatch(/^(••••.{4}|\(set\))$/);
    const unimplemented = unimplementedVariablesInUse(config, env);
    expect(JSON.stringify(unimplemented)).not.toContain('SuperSecret');
  });

  it('falls back gracefully for configs without metadata', () => {
    const config = { ...loadConfig({}, noDisk) };
    expect(getConfigMetadata(config)).toBeUndefined();
    const row = describeConfig(config).find((r) => r.name === 'PORT')!;
    expect(row.source).toBe('env');
  });
});

describe('unimplementedVariablesInUse', () => {
  it('reports the not-yet-implemented variables the user set, and only those', () => {
    const env = {
      SLACK_TOKEN: 'xoxb-123',
      VIVARIA_MIDDLEMAN_TYPE: 'builtin', // implemented
      SENTRY_ENVIRONMENT: 'staging',
      PORT: '4002', // implemented
      AGENT_RAM_GB: '8', // implemented
      UI_URL: '', // empty = unset
    };
    const config = loadConfig(env, noDisk);
    const found = unimplementedVariablesInUse(config, env);
    expect(found.map((v) => v.name).sort()).toEqual(['SENTRY_ENVIRONMENT', 'SLACK_TOKEN']);
    for (const v of found) {
      expect(v.message).toMatch(new RegExp(`^${v.name} is set: accepted but not yet implemented`));
      expect(v.message).not.toContain('xoxb-123');
    }
    expect(unimplementedVariablesInUse(loadConfig({}, noDisk), {})).toEqual([]);
  });
});
