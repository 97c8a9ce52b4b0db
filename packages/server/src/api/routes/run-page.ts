import {
  AddCommentBody,
  AddTagBody,
  AgentOutputView,
  HookUsageResponse,
  RunSummaryView,
  TraceEntryComment,
  TraceEntryTag,
  UiConfigView,
  UserPauseResponse,
} from '@terrarium/shared';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Middleman } from '../../llm/middleman.js';
import { LlmError } from '../../llm/types.js';
import { agentOutput } from '../../runs/annotations/agent-output.js';
import type { AnnotationStore } from '../../runs/annotations/store.js';
import { summarizeRun } from '../../runs/annotations/summary.js';
import type { TraceReader } from '../../runs/annotations/trace-reader.js';
import { streamTrace, type TraceStreamOptions } from '../../runs/annotations/trace-stream.js';
import { BranchPausedError, type HooksService, InvalidHookCallError } from '../../runs/hooks-service.js';
import type { RunRepository } from '../../runs/repository.js';
import type { RunService } from '../../runs/service.js';
import { HttpError } from '../errors.js';

export interface RunPageOptions {
  annotations: AnnotationStore;
  trace: TraceReader;
  /** VIVARIA_IS_READ_ONLY: the UI hides every action and these routes refuse to change anything. */
  readOnly: boolean;
  /** RUN_SUMMARY_GENERATION_MODEL; null disables the summary. */
  runSummaryModel: string | null;
  stream?: TraceStreamOptions;
}

export interface RunPageDependencies extends RunPageOptions {
  runs: RunService;
  repo: RunRepository;
  hooks: HooksService;
  middleman?: Middleman;
}

const RunIdParams = z.object({ runId: z.coerce.number().int().positive() });
const BranchParams = RunIdParams.extend({ agentBranchNumber: z.coerce.number().int().nonnegative() });

/**
 * What the web UI's run page needs beyond the runs API (user-authenticated by the enclosing /api scope):
 *   GET    /ui-config
 *   GET    /runs/:runId/trace/stream?afterId=        server-sent events (see streamTrace)
 *   GET    /runs/:runId/comments · POST · DELETE /runs/:runId/comments/:commentId
 *   GET    /runs/:runId/tags     · POST · DELETE /runs/:runId/tags/:tagId
 *   GET    /runs/:runId/branches/:n/agent-output
 *   GET    /runs/:runId/branches/:n/usage               usage against limits, and whether the branch is paused
 *   POST   /runs/:runId/branches/:n/pause               a person pauses a branch (unpause: hooks.ts's user route)
 *   POST   /runs/:runId/summary                         RUN_SUMMARY_GENERATION_MODEL through the middleman
 */
export function runPageRoutes(deps: RunPageDependencies): FastifyPluginAsyncZod {
  return async (app) => {
    if (deps.readOnly) {
      app.addHook('preHandler', async (request) => {
        if (request.method !== 'GET' && request.method !== 'HEAD') {
          throw new HttpError(403, 'This Terrarium is read-only (VIVARIA_IS_READ_ONLY): nothing can be changed.');
        }
      });
    }

    app.get('/ui-config', { schema: { response: { 200: UiConfigView } } }, async () => ({
      readOnly: deps.readOnly,
      // A summary is an action (it spends money): none in read-only mode.
      runSummaryModel: deps.middleman && !deps.readOnly ? deps.runSummaryModel : null,
    }));

    // The UI reads this with fetch() and a ReadableStream, not EventSource: fetch can send the Authorization header,
    // so the access token never goes into a URL (URLs end up in logs, history and Referer headers).
    app.get(
      '/runs/:runId/trace/stream',
      {
        schema: {
          params: RunIdParams,
          querystring: z.object({ afterId: z.coerce.number().int().nonnegative().optional() }),
        },
      },
      async (request, reply) => {
        const { runId } = request.params;
        await deps.runs.getRun(runId); // 404 before the stream starts
        const lastEventId = Number(request.headers['last-event-id']);
        const afterId =
          Number.isSafeInteger(lastEventId) && lastEventId > 0 ? lastEventId : (request.query.afterId ?? 0);
        reply.hijack();
        const raw = reply.raw;
        raw.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache, no-transform',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        raw.flushHeaders();
        const abort = new AbortController();
        request.raw.on('close', () => abort.abort());
        raw.on('close', () => abort.abort());
        const sink = {
          write: (chunk: string) => raw.write(chunk),
          get closed() {
            return raw.destroyed || raw.writableEnded;
          },
        };
        try {
          await streamTrace(deps.repo, deps.trace, runId, afterId, sink, abort.signal, deps.stream);
        } catch (error) {
          request.log.error({ err: error, runId }, 'trace stream failed');
          if (!sink.closed) sink.write(`event: error\ndata: ${JSON.stringify({ message: String(error) })}\n\n`);
        } finally {
          if (!raw.writableEnded) raw.end();
        }
      },
    );

    // --- comments and tags ---
    app.get(
      '/runs/:runId/comments',
      { schema: { params: RunIdParams, response: { 200: z.array(TraceEntryComment) } } },
      async (request) => {
        await deps.runs.getRun(request.params.runId);
        return deps.annotations.listComments(request.params.runId);
      },
    );
    app.post(
      '/runs/:runId/comments',
      { schema: { params: RunIdParams, body: AddCommentBody, response: { 201: TraceEntryComment } } },
      async (request, reply) => {
        const { traceEntryId, content } = request.body;
        const comment = await deps.annotations.addComment(
          request.params.runId,
          traceEntryId,
          request.user?.id ?? 'unknown',
          content,
        );
        return reply.status(201).send(comment);
      },
    );
    app.delete(
      '/runs/:runId/comments/:commentId',
      { schema: { params: RunIdParams.extend({ commentId: z.coerce.number().int().positive() }) } },
      async (request, reply) => {
        await deps.annotations.deleteComment(request.params.runId, request.params.commentId);
        return reply.status(204).send();
      },
    );
    app.get(
      '/runs/:runId/tags',
      { schema: { params: RunIdParams, response: { 200: z.array(TraceEntryTag) } } },
      async (request) => {
        await deps.runs.getRun(request.params.runId);
        return deps.annotations.listTags(request.params.runId);
      },
    );
    app.post(
      '/runs/:runId/tags',
      { schema: { params: RunIdParams, body: AddTagBody, response: { 201: TraceEntryTag } } },
      async (request, reply) => {
        const { traceEntryId, tag } = request.body;
        const created = await deps.annotations.addTag(
          request.params.runId,
          traceEntryId,
          request.user?.id ?? 'unknown',
          tag,
        );
        return reply.status(201).send(created);
      },
    );
    app.delete(
      '/runs/:runId/tags/:tagId',
      { schema: { params: RunIdParams.extend({ tagId: z.coerce.number().int().positive() }) } },
      async (request, reply) => {
        await deps.annotations.deleteTag(request.params.runId, request.params.tagId);
        return reply.status(204).send();
      },
    );

    // --- the agent process ---
    app.get(
      '/runs/:runId/branches/:agentBranchNumber/agent-output',
      { schema: { params: BranchParams, response: { 200: AgentOutputView } } },
      async (request) => {
        await deps.runs.getRun(request.params.runId);
        return agentOutput(deps.repo, deps.trace, request.params.runId, request.params.agentBranchNumber);
      },
    );
    app.get(
      '/runs/:runId/branches/:agentBranchNumber/usage',
      { schema: { params: BranchParams, response: { 200: HookUsageResponse } } },
      async (request) => {
        await deps.runs.getRun(request.params.runId);
        return deps.hooks.usage({ runId: request.params.runId, agentBranchNumber: request.params.agentBranchNumber });
      },
    );
    app.post(
      '/runs/:runId/branches/:agentBranchNumber/pause',
      { schema: { params: BranchParams, response: { 200: UserPauseResponse } } },
      async (request) => {
        try {
          // 'user': a person's pause, distinct from the agent's own and from a human-input wait. It holds the
          // agent's hook calls and only a person ends it (POST …/unpause); the agent's unpause is refused.
          return await deps.hooks.pause(
            { runId: request.params.runId, agentBranchNumber: request.params.agentBranchNumber },
            'user',
          );
        } catch (error) {
          if (error instanceof BranchPausedError) throw new HttpError(409, error.message);
          if (error instanceof InvalidHookCallError) throw new HttpError(400, error.message);
          throw error;
        }
      },
    );

    // --- summary ---
    app.post(
      '/runs/:runId/summary',
      { schema: { params: RunIdParams, response: { 200: RunSummaryView } } },
      async (request) => {
        const { middleman, runSummaryModel } = deps;
        if (!middleman || !runSummaryModel) {
          throw new HttpError(
            409,
            'Run summaries are off: set RUN_SUMMARY_GENERATION_MODEL and configure an LLM provider.',
          );
        }
        const run = await deps.runs.getRun(request.params.runId);
        const entries = (await deps.runs.trace(run.id)).filter((entry) => entry.kind !== 'agent-output');
        try {
          return await summarizeRun(middleman, runSummaryModel, run, entries);
        } catch (error) {
          if (error instanceof LlmError) {
            throw new HttpError(502, `The summary model (${runSummaryModel}) failed: ${error.message}`);
          }
          throw error;
        }
      },
    );
  };
}
