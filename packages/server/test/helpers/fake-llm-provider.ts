/**
 * A fake LLM provider: a real HTTP server on 127.0.0.1 (random port) speaking the OpenAI, Anthropic and Gemini wire
 * formats, so the official SDKs run their real code paths against it.
 *
 * Replies are deterministic: the completion is `echo: <text of the last user message>` (`echo[i]: …` for n > 1), and
 * token counts are word counts: input = words of every text in the request (system included), output = words of the
 * completion. Paths are matched by suffix, so any prefix works (`/v1/chat/completions`, `/openai/v1/chat/completions`).
 *
 *   const fake = await startFakeLlmProvider();
 *   new OpenAI({ baseURL: `${fake.url}/v1`, apiKey: fake.keys.openai });
 *   fake.failNext(1, 429);                     // the next request gets 429 (then normal service)
 *   fake.requests                             // everything received
 *   fake.replyWith = ({ index }) => String(index % 5 + 1);   // scripted completions instead of the echo
 *   fake.topLogprobs = () => [{ token: '4', logprob: -0.1 }]; // OpenAI chat top_logprobs of the first token
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: unknown;
}

export interface FakeFailure {
  status: number;
  /** Seconds, sent as Retry-After. */
  retryAfter?: number;
  message?: string;
}

export interface FakeLlmProvider {
  url: string;
  port: number;
  keys: { openai: string; anthropic: string; gemini: string };
  requests: RecordedRequest[];
  /** The next `count` requests fail with `status` (Retry-After 0 by default so tests stay fast). */
  failNext(count: number, status: number, options?: Omit<FakeFailure, 'status'>): void;
  /** Delay (ms) before each reply, e.g. to test timeouts. */
  delayMs: number;
  /** Delay (ms) between the events of a streamed reply. */
  streamDelayMs: number;
  /**
   * When set, the text of each completion (OpenAI chat and completions, Anthropic messages, Gemini generateContent)
   * instead of the echo; `index` is the completion's index among `n`. Token counts follow the text as usual.
   */
  replyWith: ((request: FakeReplyRequest) => string) | undefined;
  /** When set, the top_logprobs of the first token of OpenAI chat completions that ask for logprobs. */
  topLogprobs: ((request: FakeReplyRequest) => Array<{ token: string; logprob: number }>) | undefined;
  reset(): void;
  close(): Promise<void>;
}

export interface FakeReplyRequest {
  provider: 'openai' | 'anthropic' | 'gemini';
  model: string;
  lastUser: string;
  index: number;
  n: number;
}

export const FAKE_KEYS = { openai: 'sk-fake-openai', anthropic: 'sk-ant-fake', gemini: 'AIza-fake-gemini' };

const words = (text: string) => text.split(/\s+/).filter(Boolean).length;

function textOfContent(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => {
        if (typeof p === 'string') return p;
        const part = p as { text?: unknown; content?: unknown };
        if (typeof part.text === 'string') return part.text;
        if (part.content !== undefined) return textOfContent(part.content);
        return '';
      })
      .join(' ');
  }
  return '';
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text) return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        resolve(text);
      }
    });
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

async function sse(res: ServerResponse, events: { event?: string; data: unknown }[], done: boolean, delayMs: number) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const e of events) {
    if (res.destroyed) return;
    res.write(`${e.event ? `event: ${e.event}\n` : ''}data: ${JSON.stringify(e.data)}\n\n`);
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
  }
  if (done) res.write('data: [DONE]\n\n');
  res.end();
}

/** Deterministic 8-dimensional embedding of a text. */
export function fakeEmbedding(text: string): number[] {
  const v = Array.from({ length: 8 }, () => 0);
  for (let i = 0; i < text.length; i++) v[i % 8]! += text.charCodeAt(i) / 1000;
  return v.map((x) => Math.round(x * 1000) / 1000);
}

export function echoOf(text: string, index: number, n: number): string {
  return `${n > 1 ? `echo[${index}]` : 'echo'}: ${text}`;
}

export async function startFakeLlmProvider(): Promise<FakeLlmProvider> {
  const failures: FakeFailure[] = [];
  const requests: RecordedRequest[] = [];
  let counter = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse, fake: FakeLlmProvider) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const body = await readBody(req);
    requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body,
    });
    if (fake.delayMs > 0) await new Promise((r) => setTimeout(r, fake.delayMs));
    const path = url.pathname;
    const provider =
      path.includes(':') || req.headers['x-goog-api-key'] || url.searchParams.has('key')
        ? 'gemini'
        : /\/messages(\/count_tokens)?$/.test(path) || req.headers['anthropic-version']
          ? 'anthropic'
          : 'openai';

    const failure = failures.shift();
    if (failure) {
      const message = failure.message ?? `fake failure ${failure.status}`;
      const headers: Record<string, string> = { 'retry-after': String(failure.retryAfter ?? 0) };
      if (provider === 'anthropic') {
        return json(
          res,
          failure.status,
          { type: 'error', error: { type: failure.status === 529 ? 'overloaded_error' : 'api_error', message } },
          headers,
        );
      }
      if (provider === 'gemini')
        return json(res, failure.status, { error: { code: failure.status, message, status: 'UNAVAILABLE' } }, headers);
      return json(res, failure.status, { error: { message, type: 'server_error', code: null } }, headers);
    }

    // Auth, as each provider does it.
    const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    const key =
      provider === 'anthropic'
        ? (req.headers['x-api-key'] ?? bearer)
        : provider === 'gemini'
          ? (req.headers['x-goog-api-key'] ?? url.searchParams.get('key'))
          : bearer;
    if (key !== fake.keys[provider]) {
      return json(
        res,
        401,
        provider === 'anthropic'
          ? { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } }
          : { error: { code: 401, message: 'invalid api key', status: 'UNAUTHENTICATED' } },
      );
    }
    const b = (body ?? {}) as Record<string, unknown>;
    const id = `fake-${++counter}`;

    // ── OpenAI ──
    if (provider === 'openai') {
      if (req.method === 'GET' && path.endsWith('/models')) {
        return json(res, 200, {
          object: 'list',
          data: ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small', 'o3-mini'].map((m) => ({
            id: m,
            object: 'model',
            created: 1700000000,
            owned_by: 'fake',
          })),
        });
      }
      if (path.endsWith('/embeddings')) {
        const inputs = Array.isArray(b.input) ? (b.input as string[]) : [String(b.input ?? '')];
        const data = inputs.map((text, index) => {
          const vector = fakeEmbedding(text);
          const embedding =
            b.encoding_format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
          return { object: 'embedding', index, embedding };
        });
        const tokens = inputs.reduce((s, t) => s + words(t), 0);
        return json(res, 200, {
          object: 'list',
          data,
          model: b.model,
          usage: { prompt_tokens: tokens, total_tokens: tokens },
        });
      }
      if (path.endsWith('/responses')) {
        const input = b.input;
        const items =
          typeof input === 'string'
            ? [{ role: 'user', content: input }]
            : ((input ?? []) as { role?: string; content?: unknown }[]);
        const instructions = typeof b.instructions === 'string' ? b.instructions : '';
        const lastUser = textOfContent([...items].reverse().find((m) => m.role === 'user')?.content ?? '');
        const reply = echoOf(lastUser, 0, 1);
        const inputTokens = words(`${instructions} ${items.map((m) => textOfContent(m.content)).join(' ')}`);
        const outputTokens = words(reply);
        const created_at = 1700000000;
        const message = {
          type: 'message',
          id: `msg_${id}`,
          status: 'completed',
          role: 'assistant',
          content: [{ type: 'output_text', text: reply, annotations: [] }],
        };
        const response = (status: string, withOutput: boolean) => ({
          id: `resp_${id}`,
          object: 'response',
          created_at,
          status,
          model: b.model,
          output: withOutput ? [message] : [],
          usage: withOutput
            ? {
                input_tokens: inputTokens,
                output_tokens: outputTokens,
                total_tokens: inputTokens + outputTokens,
                input_tokens_details: { cached_tokens: 0 },
                output_tokens_details: { reasoning_tokens: 0 },
              }
            : null,
        });
        if (b.stream === true) {
          let sequence_number = 0;
          const events = [
            {
              event: 'response.created',
              data: {
                type: 'response.created',
                response: response('in_progress', false),
                sequence_number: sequence_number++,
              },
            },
            ...reply.split(/(?<= )/).map((delta) => ({
              event: 'response.output_text.delta',
              data: {
                type: 'response.output_text.delta',
                item_id: message.id,
                output_index: 0,
                content_index: 0,
                delta,
                sequence_number: sequence_number++,
              },
            })),
            {
              event: 'response.completed',
              data: {
                type: 'response.completed',
                response: response('completed', true),
                sequence_number: sequence_number++,
              },
            },
          ];
          return sse(res, events, false, fake.streamDelayMs);
        }
        return json(res, 200, response('completed', true));
      }
      const chat = path.endsWith('/chat/completions');
      if (!chat && !path.endsWith('/completions')) return json(res, 404, { error: { message: `no route ${path}` } });
      const messages = (b.messages ?? []) as { role: string; content: unknown }[];
      const prompt = chat ? messages.map((m) => textOfContent(m.content)).join(' ') : String(b.prompt ?? '');
      const lastUser = chat
        ? textOfContent([...messages].reverse().find((m) => m.role === 'user')?.content ?? '')
        : String(b.prompt ?? '');
      const n = typeof b.n === 'number' ? b.n : 1;
      const script = { provider: 'openai' as const, model: String(b.model ?? ''), lastUser, n };
      const replies = Array.from(
        { length: n },
        (_, i) => fake.replyWith?.({ ...script, index: i }) ?? echoOf(lastUser, i, n),
      );
      const tools = (b.tools ?? []) as { function: { name: string } }[];
      const callTool = tools.length > 0 && /use tool/i.test(lastUser);
      const promptTokens = words(prompt);
      const completionTokens = replies.reduce((s, r) => s + words(r), 0);
      const usage = {
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens,
        total_tokens: promptTokens + completionTokens,
      };
      const created = 1700000000;
      const object = chat ? 'chat.completion' : 'text_completion';
      if (b.stream === true) {
        const events: { data: unknown }[] = [];
        const includeUsage = (b.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
        const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
          data: {
            id,
            object: chat ? 'chat.completion.chunk' : 'text_completion',
            created,
            model: b.model,
            choices,
            ...(includeUsage && { usage: null }),
            ...extra,
          },
        });
        replies.forEach((reply, index) => {
          if (chat) events.push(chunk([{ index, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
          const parts = reply.split(/(?<= )/);
          for (const part of parts) {
            events.push(
              chunk([
                chat
                  ? { index, delta: { content: part }, finish_reason: null }
                  : { index, text: part, finish_reason: null, logprobs: null },
              ]),
            );
          }
          events.push(
            chunk([
              chat
                ? { index, delta: {}, finish_reason: 'stop' }
                : { index, text: '', finish_reason: 'stop', logprobs: null },
            ]),
          );
        });
        if (includeUsage) events.push(chunk([], { usage }));
        return sse(res, events, true, fake.streamDelayMs);
      }
      const choices = replies.map((reply, index) =>
        chat
          ? {
              index,
              message: callTool
                ? {
                    role: 'assistant',
                    content: null,
                    refusal: null,
                    tool_calls: [
                      {
                        id: `call_${index}`,
                        type: 'function',
                        function: { name: tools[0]!.function.name, arguments: JSON.stringify({ text: lastUser }) },
                      },
                    ],
                  }
                : { role: 'assistant', content: reply, refusal: null },
              finish_reason: callTool ? 'tool_calls' : 'stop',
              logprobs: b.logprobs
                ? {
                    content: reply.split(' ').map((token, t) => ({
                      token,
                      logprob: -0.5,
                      bytes: null,
                      top_logprobs:
                        t === 0 && fake.topLogprobs
                          ? fake.topLogprobs({ ...script, index }).map((l) => ({ ...l, bytes: null }))
                          : [],
                    })),
                  }
                : null,
            }
          : { index, text: reply, finish_reason: 'stop', logprobs: null },
      );
      return json(res, 200, { id, object, created, model: b.model, choices, usage });
    }

    // ── Anthropic ──
    if (provider === 'anthropic') {
      if (req.method === 'GET' && path.endsWith('/models')) {
        const data = ['claude-3-5-haiku-20241022', 'claude-sonnet-4-20250514'].map((m) => ({
          id: m,
          type: 'model',
          display_name: m,
          created_at: '2025-01-01T00:00:00Z',
        }));
        return json(res, 200, { data, has_more: false, first_id: data[0]!.id, last_id: data.at(-1)!.id });
      }
      const messages = (b.messages ?? []) as { role: string; content: unknown }[];
      const system = textOfContent(b.system ?? '');
      const inputTokens = words(`${system} ${messages.map((m) => textOfContent(m.content)).join(' ')}`);
      if (path.endsWith('/count_tokens')) return json(res, 200, { input_tokens: inputTokens });
      const lastUser = textOfContent([...messages].reverse().find((m) => m.role === 'user')?.content ?? '');
      const reply =
        fake.replyWith?.({ provider: 'anthropic', model: String(b.model ?? ''), lastUser, index: 0, n: 1 }) ??
        echoOf(lastUser, 0, 1);
      const tools = (b.tools ?? []) as { name: string }[];
      const callTool = tools.length > 0 && /use tool/i.test(lastUser);
      const outputTokens = words(reply);
      const message = {
        id,
        type: 'message',
        role: 'assistant',
        model: b.model,
        content: callTool
          ? [{ type: 'tool_use', id: `toolu_${counter}`, name: tools[0]!.name, input: { text: lastUser } }]
          : [{ type: 'text', text: reply }],
        stop_reason: callTool ? 'tool_use' : 'end_turn',
        stop_sequence: null,
        usage: {
          input_tokens: inputTokens,
          output_tokens: outputTokens,
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: 0,
        },
      };
      if (b.stream === true) {
        const events: { event: string; data: unknown }[] = [
          {
            event: 'message_start',
            data: {
              type: 'message_start',
              message: { ...message, content: [], stop_reason: null, usage: { ...message.usage, output_tokens: 1 } },
            },
          },
          {
            event: 'content_block_start',
            data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
          },
          { event: 'ping', data: { type: 'ping' } },
          ...reply.split(/(?<= )/).map((text) => ({
            event: 'content_block_delta',
            data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } },
          })),
          { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
          {
            event: 'message_delta',
            data: {
              type: 'message_delta',
              delta: { stop_reason: 'end_turn', stop_sequence: null },
              usage: { output_tokens: outputTokens },
            },
          },
          { event: 'message_stop', data: { type: 'message_stop' } },
        ];
        return sse(res, events, false, fake.streamDelayMs);
      }
      return json(res, 200, message);
    }

    // ── Gemini ──
    const match = /\/models\/([^/:]+):(\w+)$/.exec(path);
    if (req.method === 'GET' && path.endsWith('/models')) {
      return json(res, 200, {
        models: ['gemini-2.0-flash', 'gemini-2.5-pro', 'text-embedding-004'].map((m) => ({
          name: `models/${m}`,
          displayName: m,
        })),
      });
    }
    if (!match) return json(res, 404, { error: { code: 404, message: `no route ${path}`, status: 'NOT_FOUND' } });
    const [, model, action] = match;
    if (action === 'batchEmbedContents' || action === 'embedContent') {
      const reqs = (action === 'embedContent' ? [b] : (b.requests as { content: unknown }[])) as {
        content: { parts: unknown };
      }[];
      const embeddings = reqs.map((r) => ({ values: fakeEmbedding(textOfContent(r.content.parts)) }));
      return json(res, 200, action === 'embedContent' ? { embedding: embeddings[0] } : { embeddings });
    }
    const contents = (b.contents ?? []) as { role?: string; parts?: unknown }[];
    const system = textOfContent((b.systemInstruction as { parts?: unknown } | undefined)?.parts ?? '');
    const promptTokenCount = words(`${system} ${contents.map((c) => textOfContent(c.parts)).join(' ')}`);
    if (action === 'countTokens') return json(res, 200, { totalTokens: promptTokenCount });
    const lastUser = textOfContent([...contents].reverse().find((c) => c.role !== 'model')?.parts ?? '');
    const n = ((b.generationConfig as { candidateCount?: number } | undefined)?.candidateCount ?? 1) as number;
    const replies = Array.from(
      { length: n },
      (_, i) =>
        fake.replyWith?.({ provider: 'gemini', model: model ?? '', lastUser, index: i, n }) ?? echoOf(lastUser, i, n),
    );
    const candidatesTokenCount = replies.reduce((s, r) => s + words(r), 0);
    const usageMetadata = {
      promptTokenCount,
      candidatesTokenCount,
      totalTokenCount: promptTokenCount + candidatesTokenCount,
    };
    if (action === 'streamGenerateContent') {
      const parts = replies[0]!.split(/(?<= )/);
      const chunks = parts.map((text, i) => ({
        candidates: [
          {
            content: { role: 'model', parts: [{ text }] },
            index: 0,
            ...(i === parts.length - 1 && { finishReason: 'STOP' }),
          },
        ],
        usageMetadata: i === parts.length - 1 ? usageMetadata : { promptTokenCount, totalTokenCount: promptTokenCount },
        modelVersion: model,
        responseId: id,
      }));
      if (url.searchParams.get('alt') === 'sse')
        return sse(
          res,
          chunks.map((data) => ({ data })),
          false,
          fake.streamDelayMs,
        );
      return json(res, 200, chunks);
    }
    if (action !== 'generateContent')
      return json(res, 404, { error: { code: 404, message: `no action ${action}`, status: 'NOT_FOUND' } });
    return json(res, 200, {
      candidates: replies.map((text, index) => ({
        content: { role: 'model', parts: [{ text }] },
        finishReason: 'STOP',
        index,
      })),
      usageMetadata,
      modelVersion: model,
      responseId: id,
    });
  };

  let fake!: FakeLlmProvider;
  const server: Server = createServer((req, res) => {
    handle(req, res, fake).catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, { error: { message: String(error) } });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('fake LLM provider: no address');
  fake = {
    url: `http://127.0.0.1:${address.port}`,
    port: address.port,
    keys: { ...FAKE_KEYS },
    requests,
    delayMs: 0,
    streamDelayMs: 0,
    replyWith: undefined,
    topLogprobs: undefined,
    failNext(count, status, options = {}) {
      for (let i = 0; i < count; i++) failures.push({ status, ...options });
    },
    reset() {
      requests.length = 0;
      failures.length = 0;
      fake.delayMs = 0;
      fake.streamDelayMs = 0;
      fake.replyWith = undefined;
      fake.topLogprobs = undefined;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return fake;
}
