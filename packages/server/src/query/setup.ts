import pg from 'pg';
import type { Logger } from 'pino';
import { type DatabaseHandle, type PostgresDatabaseOptions, postgresConnectionConfig } from '../db/client.js';
import {
  canCreateRoles,
  DEFAULT_READONLY_ROLE,
  type Execute,
  ensureRole,
  grantMembership,
  grantReadOnly,
  roleExists,
} from './readonly-role.js';
import { PgliteQueryRunner, PostgresQueryRunner, type QueryRunner } from './runner.js';

export interface ReadOnlyUserConfig {
  /** PG_READONLY_USER / PG_READONLY_PASSWORD. */
  user?: string | undefined;
  password?: string | undefined;
}

/** What start-up found: a runner, or why there is none (the query endpoint then answers with that reason). */
export type QueryRunnerSetup = { runner: QueryRunner; warnings: string[] } | { runner: undefined; reason: string };

/**
 * Prepares the read-only path for user-written queries at server start-up (after migrations):
 * - PGlite: creates the NOLOGIN role `terrarium_readonly` with SELECT grants (the embedded user is a superuser).
 * - PostgreSQL with PG_READONLY_USER: creates that login role when the server's user may (CREATEROLE), grants it
 *   SELECT on the tables (the server's user owns them), and connects a small pool as it.
 * - PostgreSQL without it: the same NOLOGIN role entered with SET LOCAL ROLE, if the server's user can create it.
 */
export async function setUpQueryRunner(
  database: DatabaseHandle,
  options: { readOnly: ReadOnlyUserConfig; databaseOptions?: PostgresDatabaseOptions; log?: Logger },
): Promise<QueryRunnerSetup> {
  if (database.kind === 'pglite') {
    const execute: Execute = (sql, params) => database.pglite.query<Record<string, unknown>>(sql, params);
    await ensureRole(execute, DEFAULT_READONLY_ROLE);
    await grantReadOnly(execute, DEFAULT_READONLY_ROLE);
    return { runner: new PgliteQueryRunner(database.pglite, DEFAULT_READONLY_ROLE), warnings: [] };
  }
  const execute: Execute = (sql, params) => database.pool.query<Record<string, unknown>>(sql, params);
  const warnings: string[] = [];
  const { user, password } = options.readOnly;
  if (user) {
    if (!(await roleExists(execute, user))) {
      if (!(await canCreateRoles(execute))) {
        return {
          runner: undefined,
          reason:
            `The read-only database user ${user} (PG_READONLY_USER) does not exist and the server's database user ` +
            'may not create it. Create it (CREATE ROLE … LOGIN PASSWORD …) as an administrator; docs/ui.md shows how.',
        };
      }
      await ensureRole(execute, user, password ?? '');
    }
    try {
      await grantReadOnly(execute, user);
    } catch (error) {
      warnings.push(
        `Granting SELECT to ${user} failed (${(error as Error).message}); queries see only what it was granted.`,
      );
    }
    if (!options.databaseOptions) throw new Error('setUpQueryRunner needs the PostgreSQL connection options');
    const pool = new pg.Pool({
      ...postgresConnectionConfig({ ...options.databaseOptions, user, password: password ?? '' }),
      application_name: 'terrarium-readonly-query',
      max: 2,
    });
    pool.on('error', (error) => options.log?.warn({ err: error }, 'read-only query connection failed'));
    return { runner: new PostgresQueryRunner(pool, { ownsPool: true }), warnings };
  }
  // No read-only user configured: a NOLOGIN role entered from the server's own connections.
  try {
    if (!(await roleExists(execute, DEFAULT_READONLY_ROLE))) {
      if (!(await canCreateRoles(execute))) {
        return {
          runner: undefined,
          reason:
            'Queries on PostgreSQL need a read-only database user: set PG_READONLY_USER and PG_READONLY_PASSWORD ' +
            '(docs/ui.md shows how to create it).',
        };
      }
      await ensureRole(execute, DEFAULT_READONLY_ROLE);
      await grantMembership(execute, DEFAULT_READONLY_ROLE);
    }
    await grantReadOnly(execute, DEFAULT_READONLY_ROLE);
  } catch (error) {
    return {
      runner: undefined,
      reason: `Setting up the read-only role ${DEFAULT_READONLY_ROLE} failed: ${(error as Error).message}. Set PG_READONLY_USER and PG_READONLY_PASSWORD instead.`,
    };
  }
  return {
    runner: new PostgresQueryRunner(database.pool, { role: DEFAULT_READONLY_ROLE, ownsPool: false }),
    warnings,
  };
}
