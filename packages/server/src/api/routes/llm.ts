import { once } from 'node:events';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { checkLlmKey } from '../../llm/agent-keys.js';
import type { LlmService } from '../../llm/service.js';
import { type LlmCallContext, LlmError, type PassthroughRequest, type SseEvent } from '../../llm/types.js';
import type { RunRepository } from '../../runs/repository.js';
import { abortOnDisconnect } from '../disconnect.js';

type Api = 'openai' | 'anthropic' | 'gemini';

export interface LlmRouteDependencies {
  llm: LlmService;
  repo: Pick<RunRepository, 'getRun' | 'getBranch'>;
}

declare module 'fastify' {
  interface FastifyRequest {
    llmCaller?: { runId: number; agentBranchNumber: number };
  }
}

/** Large prompts (images as base64) are common. */
const BODY_LIMIT = 64 * 1024 * 1024;

/** The key in whichever place the SDK of each provider puts it. */
function apiKeyOf(request: FastifyRequest): string | undefined {
  const h = request.headers;
  const authorization =
    typeof h.authorization === 'string' ? /^Bearer\s+(\S+)$/i.exec(h.authorization.trim())?.[1] : undefined;
  const header = (name: string) => (typeof h[name] === 'string' && h[name] ? (h[name] as string) : undefined);
  const query = (request.query as Record<string, unknown> | undefined)?.key;
  return (
    authorization ?? header('x-api-key') ?? header('x-goog-api-key') ?? (typeof query === 'string' ? query : undefined)
  );
}

/** Errors in the shape each provider's SDK expects. */
function errorBody(api: Api, status: number, message: string): unknown {
  switch (api) {
    case 'anthropic':
      return { type: 'error', error: { type: anthropicErrorType(status), message } };
    case 'gemini':
      return { error: { code: status, message, status: googleStatus(status) } };
    default:
      return { error: { message, type: openAiErrorType(status), param: null, code: null } };
  }
}

function anthropicErrorType(status: number): string {
  return (
    {
      400: 'invalid_request_error',
      401: 'authentication_error',
      403: 'permission_error',
      404: 'not_found_error',
      429: 'rate_limit_error',
      529: 'overloaded_error',
    }[status] ?? 'api_error'
  );
}
function openAiErrorType(status: number): string {
  return (
    { 400: 'invalid_request_error', 401: 'invalid_api_key', 403: 'permission_denied', 429: 'rate_limit_exceeded' }[
      status
    ] ?? 'server_error'
  );
}
function googleStatus(status: number): string {
  return (
    {
      400: 'INVALID_ARGUMENT',
      401: 'UNAUTHENTICATED',
      403: 'PERMISSION_DENIED',
      404: 'NOT_FOUND',
      429: 'RESOURCE_EXHAUSTED',
      503: 'UNAVAILABLE',
      504: 'DEADLINE_EXCEEDED',
    }[status] ?? 'INTERNAL'
  );
}

function apiOfUrl(url: string): Api {
  return url.includes('/anthropic/') ? 'anthropic' : url.includes('/gemini/') ? 'gemini' : 'openai';
}

/** Status to answer with for a middleman error (499 aborted → 499; anything unknown → 502). */
function statusOf(error: LlmError): number {
  return error.status >= 400 && error.status <= 599 ? error.status : 502;
}

/** Writes SSE events; stops early (and cancels upstream) when the client goes away. */
async function sendStream(
  reply: FastifyReply,
  api: Api,
  events: AsyncIterable<SseEvent>,
  cancel: () => void,
  format: 'sse' | 'json-array',
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': format === 'sse' ? 'text/event-stream; charset=utf-8' : 'application/json; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  let closed = false;
  const onClose = () => {
    if (!raw.writableFinished) {
      closed = true;
      cancel();
    }
  };
  raw.on('close', onClose);
  const write = async (text: string) => {
    if (closed) return;
    if (raw.write(text)) return;
    const done = new AbortController();
    try {
      await Promise.race([once(raw, 'drain', { signal: done.signal }), once(raw, 'close', { signal: done.signal })]);
    } finally {
      done.abort();
    }
  };
  let first = true;
  let namedEvents = false;
  try {
    if (format === 'json-array') await write('[');
    for await (const event of events) {
      if (closed) break;
      if (format === 'json-array') {
        await write(`${first ? '' : ',\n'}${JSON.stringify(event.data)}`);
      } else {
        if (event.event) namedEvents = true;
        await write(`${event.event ? `event: ${event.event}\n` : ''}data: ${JSON.stringify(event.data)}\n\n`);
      }
      first = false;
    }
    if (format === 'json-array') await write(']');
    // Chat and legacy completions end with [DONE]; the Responses API (named events) does not.
    else if (api === 'openai' && !namedEvents) await write('data: [DONE]\n\n');
  } catch (error) {
    const status = error instanceof LlmError ? statusOf(error) : 502;
    const message = error instanceof Error ? error.message : String(error);
    if (format === 'json-array') await write(`${first ? '' : ','}${JSON.stringify(errorBody(api, status, message))}]`);
    else if (api === 'anthropic')
      await write(`event: error\ndata: ${JSON.stringify(errorBody(api, status, message))}\n\n`);
    else await write(`data: ${JSON.stringify(errorBody(api, status, message))}\n\n`);
  } finally {
    raw.off('close', onClose);
    if (!raw.destroyed) raw.end();
  }
}

/**
 * Provider-compatible endpoints for agents (register under `/llm`): agents written against the official OpenAI,
 * Anthropic and Gemini SDKs work unchanged with the base URLs and keys of `llmEnvForAgent`. Every call is traced as a
 * `generation` entry and charged to the key's run and branch. Register it a second time under
 * `/llm/runs/:runId/branches/:agentBranchNumber` for run-scoped base URLs (a key of another run then gets 403).
 */
export function llmRoutes(deps: LlmRouteDependencies): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.setErrorHandler((error: Error & { statusCode?: number; validation?: unknown }, request, reply) => {
      const api = apiOfUrl(request.url);
      if (error instanceof LlmError) {
        const status = statusOf(error);
        if (status >= 500) request.log.warn({ err: error }, 'LLM call failed');
        return reply.status(status).send(errorBody(api, status, error.message));
      }
      const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
      if (status === 500) request.log.error({ err: error }, 'LLM route failed');
      return reply
        .status(status)
        .send(errorBody(api, status, status === 500 ? 'Internal server error; see the server log.' : error.message));
    });

    app.addHook('onRequest', async (request, reply) => {
      const params = request.params as { runId?: string; agentBranchNumber?: string };
      for (const value of [params.runId, params.agentBranchNumber]) {
        if (value !== undefined && !/^\d{1,15}$/.test(value)) {
          return reply
            .status(404)
            .send(errorBody(apiOfUrl(request.url), 404, `No route ${request.method} ${request.url}`));
        }
      }
      const scope = {
        ...(params.runId !== undefined && { runId: Number(params.runId) }),
        ...(params.agentBranchNumber !== undefined && { agentBranchNumber: Number(params.agentBranchNumber) }),
      };
      const check = await checkLlmKey(apiKeyOf(request), deps.repo, scope);
      if (!check.ok) {
        return reply.status(check.status).send(errorBody(apiOfUrl(request.url), check.status, check.message));
      }
      request.llmCaller = { runId: check.runId, agentBranchNumber: check.agentBranchNumber };
    });

    // Abort the upstream call when the client goes away before the answer is complete.
    const context = (request: FastifyRequest, reply: FastifyReply): LlmCallContext => ({
      ...request.llmCaller!,
      signal: abortOnDisconnect(reply, new LlmError(499, 'client went away')),
    });

    const bodyOf = (request: FastifyRequest): Record<string, unknown> => {
      const body = request.body;
      if (!body || typeof body !== 'object' || Array.isArray(body))
        throw new LlmError(400, 'The body must be a JSON object.');
      return body as Record<string, unknown>;
    };

    const serve = async (
      request: FastifyRequest,
      reply: FastifyReply,
      api: Api,
      call: PassthroughRequest,
      format: 'sse' | 'json-array' = 'sse',
    ) => {
      const result = await deps.llm.passthrough(context(request, reply), call);
      if (result.kind === 'json') return reply.status(200).send(result.body);
      await sendStream(reply, api, result.events, result.cancel, format);
      return reply;
    };

    // ── OpenAI ──
    app.post('/openai/v1/chat/completions', { bodyLimit: BODY_LIMIT }, (request, reply) =>
      serve(request, reply, 'openai', { api: 'openai', operation: 'chat.completions', body: bodyOf(request) }),
    );
    app.post('/openai/v1/completions', { bodyLimit: BODY_LIMIT }, (request, reply) =>
      serve(request, reply, 'openai', { api: 'openai', operation: 'completions', body: bodyOf(request) }),
    );
    app.post('/openai/v1/responses', { bodyLimit: BODY_LIMIT }, (request, reply) =>
      serve(request, reply, 'openai', { api: 'openai', operation: 'responses', body: bodyOf(request) }),
    );
    app.post('/openai/v1/embeddings', { bodyLimit: BODY_LIMIT }, (request, reply) =>
      serve(request, reply, 'openai', { api: 'openai', operation: 'embeddings', body: bodyOf(request) }),
    );
    app.get('/openai/v1/models', (request, reply) =>
      serve(request, reply, 'openai', { api: 'openai', operation: 'models' }),
    );

    // ── Anthropic ──
    app.post('/anthropic/v1/messages', { bodyLimit: BODY_LIMIT }, (request, reply) =>
      serve(request, reply, 'anthropic', { api: 'anthropic', operation: 'messages', body: bodyOf(request) }),
    );

    app.post('/anthropic/v1/messages/count_tokens', { bodyLimit: BODY_LIMIT }, (request, reply) =>
      serve(request, reply, 'anthropic', {
        api: 'anthropic',
        operation: 'messages.count_tokens',
        body: bodyOf(request),
      }),
    );
    app.get('/anthropic/v1/models', (request, reply) =>
      serve(request, reply, 'anthropic', { api: 'anthropic', operation: 'models' }),
    );

    // ── Gemini: /gemini/{version}/models/{model}:{generateContent|streamGenerateContent} ──
    app.post('/gemini/:version/models/:modelAction', { bodyLimit: BODY_LIMIT }, (request, reply) => {
      const { version, modelAction } = request.params as { version: string; modelAction: string };
      const colon = modelAction.lastIndexOf(':');
      const model = colon > 0 ? modelAction.slice(0, colon) : '';
      const action = colon > 0 ? modelAction.slice(colon + 1) : '';
      if (!/^v\d+((alpha|beta)\d*)?$/.test(version)) throw new LlmError(404, `Unknown Gemini API version ${version}.`);
      if (action !== 'generateContent' && action !== 'streamGenerateContent' && action !== 'countTokens') {
        throw new LlmError(
          404,
          `Terrarium serves generateContent, streamGenerateContent and countTokens, not "${action || modelAction}".`,
        );
      }
      const alt = (request.query as Record<string, unknown>).alt;
      return serve(
        request,
        reply,
        'gemini',
        { api: 'gemini', operation: action, model, apiVersion: version, body: bodyOf(request) },
        action === 'streamGenerateContent' && alt !== 'sse' ? 'json-array' : 'sse',
      );
    });
  };
}
