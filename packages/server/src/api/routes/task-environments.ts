import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  ExecRequest,
  ExecView,
  GrantSshRequest,
  InvalidTaskEnvironmentRequestError,
  ScoreRequest,
  ScoreView,
  SshAccessView,
  StartTaskEnvironmentRequest,
  type TaskEnvironmentService,
  TaskEnvironmentView,
  TaskOperationError,
  TestRequest,
  TestView,
} from '../../tasks/environments/index.js';
import { HttpError } from '../errors.js';

/** 400 for invalid requests; 422 when task code failed (the message carries its traceback and output). */
async function mapped<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof InvalidTaskEnvironmentRequestError) throw new HttpError(400, error.message);
    if (error instanceof TaskOperationError) throw new HttpError(422, error.message);
    throw error;
  }
}

const NameParams = z.object({ name: z.string().min(1).max(255) });

/**
 * The user API for task environments (a task's sandbox without an agent, for task authors). Setting one up takes a
 * while: POST answers 202 with the environment in state `building`; poll GET /task-environments/:name for its state
 * and progress lines. Authentication is enforced by the enclosing scope.
 */
export function taskEnvironmentRoutes(environments: TaskEnvironmentService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/task-environments',
      { schema: { body: StartTaskEnvironmentRequest, response: { 202: TaskEnvironmentView } } },
      async (request, reply) => {
        const view = await mapped(() => environments.start(request.body, request.user!.id));
        return reply.status(202).send(view);
      },
    );
    app.get(
      '/task-environments',
      {
        schema: {
          querystring: z.object({ all: z.enum(['true', 'false']).default('false').describe('include destroyed ones') }),
          response: { 200: z.array(TaskEnvironmentView) },
        },
      },
      async (request) => environments.list({ includeDestroyed: request.query.all === 'true' }),
    );
    app.get(
      '/task-environments/:name',
      { schema: { params: NameParams, response: { 200: TaskEnvironmentView } } },
      async (request) => environments.get(request.params.name, request.user!.id),
    );
    app.post(
      '/task-environments/:name/stop',
      { schema: { params: NameParams, response: { 200: TaskEnvironmentView } } },
      async (request) => mapped(() => environments.stop(request.params.name, request.user!.id)),
    );
    app.post(
      '/task-environments/:name/start',
      { schema: { params: NameParams, response: { 200: TaskEnvironmentView } } },
      async (request) => mapped(() => environments.resume(request.params.name, request.user!.id)),
    );
    app.post(
      '/task-environments/:name/restart',
      { schema: { params: NameParams, response: { 200: TaskEnvironmentView } } },
      async (request) => mapped(() => environments.restart(request.params.name, request.user!.id)),
    );
    app.delete(
      '/task-environments/:name',
      { schema: { params: NameParams, response: { 200: TaskEnvironmentView } } },
      async (request) => mapped(() => environments.destroy(request.params.name, request.user!.id)),
    );
    app.post(
      '/task-environments/:name/score',
      { schema: { params: NameParams, body: ScoreRequest, response: { 200: ScoreView } } },
      async (request) =>
        mapped(() => environments.score(request.params.name, request.body.submission, request.user!.id)),
    );
    app.post(
      '/task-environments/:name/exec',
      { schema: { params: NameParams, body: ExecRequest, response: { 200: ExecView } } },
      async (request) => mapped(() => environments.exec(request.params.name, request.body, request.user!.id)),
    );
    app.post(
      '/task-environments/:name/test',
      { schema: { params: NameParams, body: TestRequest, response: { 200: TestView } } },
      async (request) => mapped(() => environments.test(request.params.name, request.body, request.user!.id)),
    );
    app.post(
      '/task-environments/:name/ssh-keys',
      { schema: { params: NameParams, body: GrantSshRequest, response: { 200: SshAccessView } } },
      async (request) => mapped(() => environments.grantSsh(request.params.name, request.body, request.user!.id)),
    );
    app.get(
      '/task-environments/:name/ssh',
      {
        schema: {
          params: NameParams,
          querystring: z.object({ user: z.enum(['agent', 'root']).default('agent') }),
          response: { 200: SshAccessView },
        },
      },
      async (request) => mapped(() => environments.sshInfo(request.params.name, request.query.user, request.user!.id)),
    );
  };
}
