/**
 * The database role user-written queries run as: it may read the public schema's tables and nothing else, so a
 * DELETE, UPDATE, DROP… is refused by the database itself, whatever the SQL says.
 *
 * Statements are built by the database (`format('… %I', $1)` quotes the role name as an identifier), never by
 * concatenating strings here.
 */

/** Runs one parameterised statement and gives its rows (pg and PGlite both fit). */
export type Execute = (sql: string, params?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>;

/** The NOLOGIN role on PGlite (and on PostgreSQL without PG_READONLY_USER), entered with SET LOCAL ROLE. */
export const DEFAULT_READONLY_ROLE = 'terrarium_readonly';

export async function roleExists(execute: Execute, role: string): Promise<boolean> {
  const { rows } = await execute('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  return rows.length > 0;
}

/** Whether the current user may create roles (superuser or CREATEROLE). */
export async function canCreateRoles(execute: Execute): Promise<boolean> {
  const { rows } = await execute('SELECT rolsuper OR rolcreaterole AS can FROM pg_roles WHERE rolname = current_user');
  return rows[0]?.can === true;
}

/** Runs a statement the database builds from a `format()` template and arguments (identifiers and literals quoted). */
async function executeFormatted(execute: Execute, template: string, args: string[]): Promise<void> {
  const placeholders = args.map((_, i) => `$${i + 1}::text`).join(', ');
  const { rows } = await execute(`SELECT format($${args.length + 1}::text, ${placeholders}) AS statement`, [
    ...args,
    template,
  ]);
  const statement = rows[0]?.statement;
  if (typeof statement !== 'string') throw new Error(`format() gave no statement for ${template}`);
  await execute(statement);
}

/**
 * Creates the role when missing: NOLOGIN without a password (entered with SET ROLE by the server's own user), LOGIN
 * with one. Another server creating it at the same moment is fine.
 */
export async function ensureRole(execute: Execute, role: string, password?: string): Promise<void> {
  if (await roleExists(execute, role)) return;
  try {
    if (password === undefined) await executeFormatted(execute, 'CREATE ROLE %I NOLOGIN', [role]);
    else await executeFormatted(execute, 'CREATE ROLE %I LOGIN PASSWORD %L', [role, password]);
  } catch (error) {
    // 42710 duplicate_object, 23505 unique_violation: a concurrent creation won the race.
    const code = (error as { code?: unknown }).code;
    if (code !== '42710' && code !== '23505') throw error;
  }
}

/**
 * Lets the role read every table of the public schema, today's and those later migrations create (default
 * privileges of the current user, who owns the tables). Granting only SELECT is what makes the role read-only.
 */
export async function grantReadOnly(execute: Execute, role: string): Promise<void> {
  await executeFormatted(execute, 'GRANT USAGE ON SCHEMA public TO %I', [role]);
  await executeFormatted(execute, 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', [role]);
  await executeFormatted(execute, 'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO %I', [role]);
  await withholdSecretTables(execute, role);
}

/**
 * Tables the runs page's queries may not read even though they are in the public schema: the microVM manager's
 * credentials (webhook signing secrets, API key and admin session hashes). People who may query runs are not
 * thereby the VMM's administrators.
 */
export const WITHHELD_TABLES = ['vmm_webhooks', 'vmm_api_keys', 'vmm_admin_sessions'] as const;

/** Takes SELECT on the withheld tables back from the role (those that exist; a later grant-all would give it back). */
export async function withholdSecretTables(execute: Execute, role: string): Promise<void> {
  for (const table of WITHHELD_TABLES) {
    const { rows } = await execute('SELECT to_regclass($1) IS NOT NULL AS present', [`public.${table}`]);
    if (rows[0]?.present === true) await executeFormatted(execute, 'REVOKE ALL ON public.%I FROM %I', [table, role]);
  }
}

/** Lets the current user SET ROLE to the role (needed on PostgreSQL when the server's user is not a superuser). */
export async function grantMembership(execute: Execute, role: string): Promise<void> {
  await executeFormatted(execute, 'GRANT %I TO CURRENT_USER', [role]);
}
