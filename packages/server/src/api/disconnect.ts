import type { FastifyReply } from 'fastify';

/** Aborts when the client goes away before the answer is sent (not when the answer has been sent). */
export function abortOnDisconnect(reply: FastifyReply): AbortSignal {
  const abort = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) abort.abort();
  });
  return abort.signal;
}
