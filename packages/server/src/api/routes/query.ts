import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Middleman } from '../../llm/middleman.js';
import { LlmError } from '../../llm/types.js';
import {
  GeneratedQuery,
  GenerateQueryRequest,
  generateQuery,
  NoSqlInAnswerError,
  QueryError,
  QueryRequest,
  QueryResult,
  QuerySchema,
  type QueryService,
  QueryUnavailableError,
  RunsTableQuery,
  RunsTableResponse,
} from '../../query/index.js';
import { abortOnDisconnect } from '../disconnect.js';
import { HttpError } from '../errors.js';

/** Body of a refused or failed query: the database's own message, with its SQLSTATE and position when known. */
const QueryErrorBody = z.object({
  error: z.object({
    code: z.literal('query_failed'),
    message: z.string(),
    sqlState: z.string().optional(),
    position: z.number().optional(),
  }),
});

/** RUNS_PAGE_QUERY_GENERATION_MODEL and what it needs: queries described in words, written by a model. */
export interface QueryGenerationOptions {
  /** RUNS_PAGE_QUERY_GENERATION_MODEL; undefined or null: off. */
  model?: string | null | undefined;
  middleman?: Middleman | undefined;
  /** VIVARIA_IS_READ_ONLY: a model call spends money, so none in read-only mode. */
  readOnly?: boolean | undefined;
}

/** GET /api/query/config: which runs-page query features this server has (the UI shows only those). */
const QueryConfigView = z.object({
  /** The model that writes SQL from words, or null when RUNS_PAGE_QUERY_GENERATION_MODEL is off. */
  generationModel: z.string().nullable(),
});

/**
 * The runs page's API: the run table, SQL written by people, run as the database's read-only role, and SQL written
 * by a model from words (RUNS_PAGE_QUERY_GENERATION_MODEL). Authentication is enforced by the enclosing scope.
 */
export function queryRoutes(query: QueryService, generation: QueryGenerationOptions = {}): FastifyPluginAsyncZod {
  const generationModel = generation.model && generation.middleman && !generation.readOnly ? generation.model : null;
  return async (app) => {
    app.get('/query/config', { schema: { response: { 200: QueryConfigView } } }, async () => ({ generationModel }));
    app.post(
      '/query/generate',
      { schema: { body: GenerateQueryRequest, response: { 200: GeneratedQuery } } },
      async (request, reply) => {
        if (!generationModel || !generation.middleman) {
          throw new HttpError(
            409,
            generation.readOnly
              ? 'Writing queries from words is off: this Terrarium is read-only (VIVARIA_IS_READ_ONLY).'
              : 'Writing queries from words is off: set RUNS_PAGE_QUERY_GENERATION_MODEL to a model the middleman ' +
                  'can reach (and configure its LLM provider).',
          );
        }
        // The schema the read-only role sees: the same list the editor completes, so the model names real columns.
        const schema = await unavailableAs503(() => query.schema());
        // The person left (the response closed before it was sent): stop paying for the answer.
        const signal = abortOnDisconnect(reply);
        try {
          return await generateQuery(generation.middleman, generationModel, schema, request.body.description, signal);
        } catch (error) {
          if (error instanceof LlmError || error instanceof NoSqlInAnswerError) {
            throw new HttpError(
              502,
              `The query generation model (${generationModel}, RUNS_PAGE_QUERY_GENERATION_MODEL) failed: ${error.message}`,
            );
          }
          throw error;
        }
      },
    );
    app.get(
      '/runs-table',
      { schema: { querystring: RunsTableQuery, response: { 200: RunsTableResponse } } },
      async (request, reply) => {
        const json = await query.runsTableJson(request.query.limit);
        reply.type('application/json; charset=utf-8').header('vary', 'accept-encoding');
        // 10,000 runs are ~1 MB of JSON and ~8 times less gzipped (level 1: a few ms, in libuv's thread pool, not on
        // the event loop). Worth it beyond loopback; only this route is this big, so no global compression plugin.
        if (json.length > GZIP_MIN_BYTES && acceptsGzip(request.headers['accept-encoding'])) {
          const body = await gzipAsync(json, { level: 1 });
          return reply.header('content-encoding', 'gzip').send(body as unknown as RunsTableResponse);
        }
        // The database built the JSON text: Fastify sends a string body with a JSON content type as is (the schema
        // above documents it), so 10,000 rows are not parsed and serialised again.
        return reply.send(json as unknown as RunsTableResponse);
      },
    );
    app.get('/query/schema', { schema: { response: { 200: QuerySchema } } }, async () =>
      unavailableAs503(() => query.schema()),
    );
    app.post(
      '/query',
      { schema: { body: QueryRequest, response: { 200: QueryResult, 400: QueryErrorBody } } },
      async (request, reply) => {
        try {
          return await unavailableAs503(() => query.run(request.body.sql));
        } catch (error) {
          if (!(error instanceof QueryError)) throw error;
          // 400: the query is what is wrong (refused, invalid, timed out), and the database says why.
          return reply.status(400).send({
            error: {
              code: 'query_failed' as const,
              message: error.message,
              ...(error.sqlState && { sqlState: error.sqlState }),
              ...(error.position !== undefined && { position: error.position }),
            },
          });
        }
      },
    );
  };
}

const gzipAsync = promisify(gzip);
const GZIP_MIN_BYTES = 16 * 1024;

/** Whether an Accept-Encoding header allows gzip (`gzip`, `gzip;q=0.5`, `*`; not `gzip;q=0`). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  return header.split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding !== 'gzip' && coding !== '*') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

async function unavailableAs503<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof QueryUnavailableError) throw new HttpError(503, error.message);
    throw error;
  }
}
