import { and, desc, eq, inArray, isNull } from 'drizzle-orm';
import type { Database } from '../../db/client.js';
import { type TaskEnvironmentRow, taskEnvironments, users } from '../../db/schema.js';

export type TaskEnvironmentState = 'building' | 'starting' | 'running' | 'stopped' | 'error' | 'destroyed';

export type TaskEnvironmentRecord = Omit<TaskEnvironmentRow, 'state'> & { state: TaskEnvironmentState };

const UNIQUE_VIOLATION = '23505';

/** A row with that name exists already (the API answers 409). */
export class DuplicateTaskEnvironmentError extends Error {
  override name = 'DuplicateTaskEnvironmentError';
}

/** Rows of the task_environments table; the name of an environment is its `container_name`. */
export class TaskEnvironmentRepository {
  constructor(private readonly db: Database) {}

  async insert(row: {
    name: string;
    backend: string;
    taskFamilyName: string;
    taskName: string;
    taskFamilyDir: string;
    userId: string;
  }): Promise<TaskEnvironmentRecord> {
    try {
      const [inserted] = await this.db
        .insert(taskEnvironments)
        .values({
          containerName: row.name,
          backend: row.backend,
          taskFamilyName: row.taskFamilyName,
          taskName: row.taskName,
          taskFamilyDir: row.taskFamilyDir,
          userId: row.userId,
          state: 'building',
        })
        .returning();
      return inserted as TaskEnvironmentRecord;
    } catch (error) {
      const code =
        (error as { code?: string; cause?: { code?: string } }).code ??
        (error as { cause?: { code?: string } }).cause?.code;
      if (code === UNIQUE_VIOLATION) {
        throw new DuplicateTaskEnvironmentError(`A task environment named ${JSON.stringify(row.name)} exists already.`);
      }
      throw error;
    }
  }

  async get(name: string): Promise<TaskEnvironmentRecord | undefined> {
    const [row] = await this.db.select().from(taskEnvironments).where(eq(taskEnvironments.containerName, name));
    return row as TaskEnvironmentRecord | undefined;
  }

  async list(options: { includeDestroyed?: boolean } = {}): Promise<TaskEnvironmentRecord[]> {
    const rows = await this.db
      .select()
      .from(taskEnvironments)
      .where(options.includeDestroyed ? undefined : isNull(taskEnvironments.destroyedAt))
      .orderBy(desc(taskEnvironments.id));
    return rows as TaskEnvironmentRecord[];
  }

  /** Environments a previous server process left in the middle of being built or started. */
  async interrupted(): Promise<TaskEnvironmentRecord[]> {
    const rows = await this.db
      .select()
      .from(taskEnvironments)
      .where(and(isNull(taskEnvironments.destroyedAt), inArray(taskEnvironments.state, ['building', 'starting'])));
    return rows as TaskEnvironmentRecord[];
  }

  async update(
    name: string,
    values: Partial<
      Pick<
        TaskEnvironmentRecord,
        'state' | 'errorMessage' | 'sandboxId' | 'sandboxName' | 'imageName' | 'isRunning' | 'destroyedAt' | 'taskName'
      >
    >,
  ): Promise<void> {
    await this.db.update(taskEnvironments).set(values).where(eq(taskEnvironments.containerName, name));
  }

  async ensureUser(id: string, name: string): Promise<void> {
    await this.db.insert(users).values({ id, name }).onConflictDoNothing();
  }
}
