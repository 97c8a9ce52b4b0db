import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  QueryError,
  QueryRequest,
  QueryResult,
  QuerySchema,
  type QueryService,
  QueryUnavailableError,
  RunsTableQuery,
  RunsTableResponse,
} from '../../query/index.js';
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

/**
 * The runs page's API: the run table, and SQL written by people, run as the database's read-only role. Authentication
 * is enforced by the enclosing scope.
 */
export function queryRoutes(query: QueryService): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/runs-table',
      { schema: { querystring: RunsTableQuery, response: { 200: RunsTableResponse } } },
      async (request, reply) => {
        const json = await query.runsTableJson(request.query.limit);
        // The database built the JSON text: Fastify sends a string body with a JSON content type as is (the schema
        // above documents it), so 10,000 rows are not parsed and serialised again.
        return reply.type('application/json; charset=utf-8').send(json as unknown as RunsTableResponse);
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

async function unavailableAs503<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof QueryUnavailableError) throw new HttpError(503, error.message);
    throw error;
  }
}
