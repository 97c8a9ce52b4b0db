import { TraceEntryView } from '@terrarium/shared';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  BatchView,
  CreateQueuedRunRequest,
  InvalidRunRequestError,
  type RunService,
  RunView,
  UpdateUsageLimitsRequest,
} from '../../runs/service.js';
import { HttpError } from '../errors.js';

/** Runs `fn`, answering 400 with its message when it refuses the request as invalid. */
export async function refuseInvalid<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof InvalidRunRequestError) throw new HttpError(400, error.message);
    throw error;
  }
}

export const RunIdParams = z.object({ runId: z.coerce.number().int().positive() });
const BatchParams = z.object({ name: z.string().min(1).max(255) });

/** The user API for runs and run batches. Authentication is enforced by the enclosing scope. */
export function runRoutes(runs: RunService): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/runs',
      { schema: { body: CreateQueuedRunRequest, response: { 201: RunView } } },
      async (request, reply) => {
        const run = await refuseInvalid(() => runs.createRun(request.body, request.user!.id));
        return reply.status(201).send(run);
      },
    );
    app.get(
      '/runs',
      {
        schema: {
          querystring: z.object({ limit: z.coerce.number().int().min(1).max(10_000).default(100) }),
          response: { 200: z.array(RunView) },
        },
      },
      async (request) => runs.listRuns(request.query.limit),
    );
    app.get('/runs/:runId', { schema: { params: RunIdParams, response: { 200: RunView } } }, async (request) =>
      runs.getRun(request.params.runId),
    );
    app.post('/runs/:runId/kill', { schema: { params: RunIdParams, response: { 200: RunView } } }, async (request) =>
      runs.killRun(request.params.runId),
    );
    app.post('/runs/:runId/unkill', { schema: { params: RunIdParams, response: { 200: RunView } } }, async (request) =>
      runs.unkillRun(request.params.runId),
    );
    app.patch(
      '/runs/:runId/usage-limits',
      { schema: { params: RunIdParams, body: UpdateUsageLimitsRequest, response: { 200: RunView } } },
      async (request) => refuseInvalid(() => runs.setUsageLimits(request.params.runId, request.body)),
    );
    app.get(
      '/runs/:runId/trace',
      {
        schema: {
          params: RunIdParams,
          querystring: z.object({ afterId: z.coerce.number().int().nonnegative().optional() }),
          response: { 200: z.array(TraceEntryView) },
        },
      },
      async (request) => runs.trace(request.params.runId, request.query.afterId),
    );
    app.get('/batches', { schema: { response: { 200: z.array(BatchView) } } }, async () => runs.listBatches());
    app.get('/batches/:name', { schema: { params: BatchParams, response: { 200: BatchView } } }, async (request) =>
      runs.getBatch(request.params.name),
    );
    app.put(
      '/batches/:name',
      {
        schema: {
          params: BatchParams,
          body: z.object({
            concurrencyLimit: z
              .number()
              .int()
              .min(0)
              .nullable()
              .describe('runs of the batch allowed at once; 0 holds the batch, null removes the limit'),
          }),
          response: { 200: BatchView },
        },
      },
      async (request) => runs.setBatchLimit(request.params.name, request.body.concurrencyLimit),
    );
  };
}
