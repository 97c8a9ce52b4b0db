import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { ConflictError, NotFoundError } from '../runs/errors.js';

export interface HttpErrorOptions {
  /** The error's `code`, for clients that act on it; default: one per status. */
  code?: string;
  /** Sent as Retry-After. */
  retryAfterSeconds?: number;
}

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly options: HttpErrorOptions = {},
  ) {
    super(message);
  }
}

/** One error shape for every route: `{ error: { code, message, details? } }`. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      const details = error.validation.map((v) => ({
        path: `${error.validationContext ?? 'body'}${v.instancePath.replaceAll('/', '.')}`,
        message: v.message ?? 'invalid',
      }));
      const summary = details.map((d) => `${d.path}: ${d.message}`).join('; ');
      return reply
        .status(400)
        .send({ error: { code: 'invalid_request', message: `Invalid request: ${summary}`, details } });
    }
    if (error instanceof HttpError) {
      const { code = codeFor(error.statusCode), retryAfterSeconds } = error.options;
      if (retryAfterSeconds !== undefined) reply.header('retry-after', String(retryAfterSeconds));
      return reply.status(error.statusCode).send({ error: { code, message: error.message } });
    }
    if (error instanceof NotFoundError)
      return reply.status(404).send({ error: { code: 'not_found', message: error.message } });
    if (error instanceof ConflictError)
      return reply.status(409).send({ error: { code: 'conflict', message: error.message } });
    if (error.statusCode && error.statusCode < 500) {
      return reply
        .status(error.statusCode)
        .send({ error: { code: codeFor(error.statusCode), message: error.message } });
    }
    request.log.error({ err: error }, 'request failed');
    return reply
      .status(500)
      .send({ error: { code: 'internal', message: 'Internal server error; see the server log.' } });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ error: { code: 'not_found', message: `No route ${request.method} ${request.url}` } }),
  );
}

function codeFor(status: number): string {
  return (
    {
      400: 'invalid_request',
      401: 'unauthenticated',
      403: 'forbidden',
      404: 'not_found',
      409: 'conflict',
      413: 'too_large',
    }[status] ?? 'error'
  );
}
