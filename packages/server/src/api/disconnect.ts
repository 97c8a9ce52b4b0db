import type { FastifyReply } from 'fastify';

/**
 * Aborts (with `reason`, if given) when the client goes away before the answer is sent (not when the answer has been
 * sent).
 */
export function abortOnDisconnect(reply: FastifyReply, reason?: unknown): AbortSignal {
  const abort = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) abort.abort(reason);
  });
  return abort.signal;
}
