import fastifySwagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { z } from 'zod';
import { agentTokenMatches, runIdOfAgentToken } from '../auth/agent-tokens.js';
import {
  type AuthenticatedUser,
  authenticateStaticUser,
  bearerToken,
  type StaticUserAuth,
} from '../auth/user-tokens.js';
import { pyhooksLlmHandlers } from '../llm/pyhooks.js';
import type { LlmService } from '../llm/service.js';
import type { QueryService } from '../query/service.js';
import type { BranchService } from '../runs/branches.js';
import type { HooksService } from '../runs/hooks-service.js';
import type { RunRepository } from '../runs/repository.js';
import type { RunService } from '../runs/service.js';
import type { TaskEnvironmentService } from '../tasks/environments/index.js';
import { HttpError, installErrorHandler } from './errors.js';
import { branchRoutes } from './routes/branches.js';
import { hookRoutes, humanInputRoutes } from './routes/hooks.js';
import { llmRoutes } from './routes/llm.js';
import { pyhooksCompatRoutes } from './routes/pyhooks-compat.js';
import { queryRoutes } from './routes/query.js';
import { type RunPageOptions, runPageRoutes } from './routes/run-page.js';
import { runRoutes } from './routes/runs.js';
import { taskEnvironmentRoutes } from './routes/task-environments.js';
import { registerUiRoutes } from './routes/ui.js';
import { adminConsoleRoutes } from './routes/v1/console.js';
import { type V1Dependencies, v1Routes } from './routes/v1/index.js';

declare module 'fastify' {
  interface FastifyRequest {
    user?: AuthenticatedUser;
    agent?: { runId: number };
  }
}

export interface AppDependencies {
  log: Logger;
  userAuth: StaticUserAuth;
  runs: RunService;
  /** A run's branches and scores; absent in tests that do not need them. */
  branches?: BranchService;
  hooks: HooksService;
  repo: RunRepository;
  /** The LLM middleman; without it the provider endpoints are absent and pyhooks' LLM routes say so. */
  llm?: LlmService;
  version: string;
  /** The microVM manager (TERRARIUM_VMM): its `/v1` API and the `/admin` console; absent when disabled. */
  vmm?: V1Dependencies;
  /** The runs page's run table and read-only SQL queries; absent in tests that do not need them. */
  query?: QueryService;
  /** Directory of the built web UI served at `/` (default packages/ui/dist); false serves no UI. */
  uiDir?: string | false;
  /** Task environments for task authors; absent in tests that do not need them. */
  taskEnvironments?: TaskEnvironmentService;
  /** The web UI's run page routes (comments, tags, live trace, summary); absent in tests that do not need them. */
  runPage?: RunPageOptions;
}

/** Builds the HTTP application: routes stay thin, every piece of work is a service call. */
export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: deps.log as FastifyBaseLogger, bodyLimit: 10 * 1024 * 1024 });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installErrorHandler(app);
  await app.register(fastifySwagger, {
    openapi: { info: { title: 'Terrarium API', version: deps.version } },
    transform: jsonSchemaTransform,
  });
  const typed = app.withTypeProvider<ZodTypeProvider>();

  typed.get(
    '/api/health',
    {
      schema: {
        response: { 200: z.object({ ok: z.literal(true), service: z.literal('terrarium'), version: z.string() }) },
      },
    },
    async () => ({ ok: true as const, service: 'terrarium' as const, version: deps.version }),
  );
  typed.get('/api/openapi.json', async () => app.swagger());

  await app.register(
    async (scope) => {
      scope.addHook('onRequest', async (request) => {
        const token = bearerToken(request.headers);
        if (!token) throw new HttpError(401, 'Missing credentials: send "Authorization: Bearer <ACCESS_TOKEN>".');
        if (runIdOfAgentToken(token) !== undefined) {
          throw new HttpError(403, 'Agent tokens may only call the hooks API.');
        }
        const user = authenticateStaticUser(token, deps.userAuth);
        if (!user)
          throw new HttpError(401, 'Invalid access token. `terrarium config` shows where the server keeps its token.');
        request.user = user;
      });
      await scope.register(runRoutes(deps.runs));
      if (deps.branches) await scope.register(branchRoutes(deps.branches));
      if (deps.taskEnvironments) await scope.register(taskEnvironmentRoutes(deps.taskEnvironments));
      await scope.register(humanInputRoutes(deps.hooks));
      if (deps.query) await scope.register(queryRoutes(deps.query));
      if (deps.runPage) {
        await scope.register(
          runPageRoutes({
            ...deps.runPage,
            runs: deps.runs,
            repo: deps.repo,
            hooks: deps.hooks,
            ...(deps.llm && { middleman: deps.llm.middleman }),
          }),
        );
      }
    },
    { prefix: '/api' },
  );

  await app.register(
    async (scope) => {
      scope.addHook('onRequest', async (request) => {
        const token = bearerToken(request.headers);
        if (!token) throw new HttpError(401, 'Missing agent token: send "Authorization: Bearer $AGENT_TOKEN".');
        const runId = runIdOfAgentToken(token);
        const run = runId === undefined ? undefined : await deps.repo.getRun(runId);
        if (!run?.agentTokenHash || !agentTokenMatches(token, run.agentTokenHash)) {
          throw new HttpError(401, 'Invalid agent token.');
        }
        request.agent = { runId: run.id };
      });
      await scope.register(hookRoutes(deps.hooks));
    },
    { prefix: '/hooks' },
  );
  if (deps.llm) {
    await app.register(llmRoutes({ llm: deps.llm, repo: deps.repo }), { prefix: '/llm' });
    // Run-scoped base URLs: a token used on another run's URL is refused with 403.
    await app.register(llmRoutes({ llm: deps.llm, repo: deps.repo }), {
      prefix: '/llm/runs/:runId/branches/:agentBranchNumber',
    });
  }
  await app.register(
    pyhooksCompatRoutes({ hooks: deps.hooks, repo: deps.repo, ...(deps.llm && { llm: pyhooksLlmHandlers(deps.llm) }) }),
  );
  if (deps.vmm) {
    await app.register(v1Routes(deps.vmm), { prefix: '/v1' });
    await app.register(adminConsoleRoutes(), { prefix: '/admin' });
  }
  // Last: the web UI answers every GET no API route claimed (its router handles /runs, /runs/42…).
  if (deps.uiDir !== false) await registerUiRoutes(app, deps.uiDir === undefined ? {} : { uiDir: deps.uiDir });

  return app;
}
