import {
  AgentStateView,
  BranchView,
  ForkBranchRequest,
  IntermediateScoreView,
  ManualScoreRequest,
  ManualScoreView,
} from '@terrarium/shared';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { BranchService } from '../../runs/branches.js';
import { RunIdParams, refuseInvalid } from './runs.js';

const BranchParams = RunIdParams.extend({ agentBranchNumber: z.coerce.number().int().nonnegative() });

/** The user API for a run's branches (list, agent states, fork) and scores (manual, intermediate). */
export function branchRoutes(branches: BranchService): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/runs/:runId/branches',
      { schema: { params: RunIdParams, response: { 200: z.array(BranchView) } } },
      async (request) => branches.listBranches(request.params.runId),
    );
    app.post(
      '/runs/:runId/branches',
      {
        schema: {
          params: RunIdParams,
          body: ForkBranchRequest,
          response: { 201: z.object({ agentBranchNumber: z.number().int() }) },
        },
      },
      async (request, reply) => {
        const created = await refuseInvalid(() => branches.fork(request.params.runId, request.body));
        return reply.status(201).send(created);
      },
    );
    app.get(
      '/runs/:runId/agent-state',
      {
        schema: {
          params: RunIdParams,
          querystring: z.object({
            traceEntryId: z.coerce
              .number({ error: 'traceEntryId must be a trace entry id (a number)' })
              .int()
              .positive(),
          }),
          response: { 200: AgentStateView },
        },
      },
      async (request) => branches.agentState(request.params.runId, request.query.traceEntryId),
    );
    app.post(
      '/runs/:runId/branches/:agentBranchNumber/manual-score',
      { schema: { params: BranchParams, body: ManualScoreRequest, response: { 201: ManualScoreView } } },
      async (request, reply) => {
        const { runId, agentBranchNumber } = request.params;
        const score = await branches.manualScore(runId, agentBranchNumber, request.body, request.user!.id);
        return reply.status(201).send(score);
      },
    );
    app.get(
      '/runs/:runId/manual-scores',
      { schema: { params: RunIdParams, response: { 200: z.array(ManualScoreView) } } },
      async (request) => branches.listManualScores(request.params.runId),
    );
    app.get(
      '/runs/:runId/intermediate-scores',
      { schema: { params: RunIdParams, response: { 200: z.array(IntermediateScoreView) } } },
      async (request) => branches.intermediateScores(request.params.runId),
    );
  };
}
