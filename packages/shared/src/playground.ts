import { z } from 'zod';

/**
 * Contracts of the web UI's playground (issue 5): a signed-in person sends one generation request to a model the
 * middleman permits. Shared so the server validates the body and the UI checks its advanced JSON editor with the
 * same schema (one set of field-named errors).
 */

export const PlaygroundMessage = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant'], {
    error: 'role must be one of system, developer, user, assistant',
  }),
  content: z.string({ error: 'content must be a string' }).max(1_000_000, 'content is at most 1,000,000 characters'),
});
export type PlaygroundMessage = z.infer<typeof PlaygroundMessage>;

export const PlaygroundGenerateRequest = z
  .strictObject({
    model: z.string({ error: 'model must be a string' }).trim().min(1, 'model must name a model'),
    messages: z.array(PlaygroundMessage).max(500, 'at most 500 messages').optional(),
    prompt: z.string().max(1_000_000).optional().describe('a bare prompt instead of messages'),
    temperature: z.number().min(0, 'temperature is at least 0').max(2, 'temperature is at most 2').optional(),
    maxTokens: z.number().int('maxTokens must be a whole number').positive('maxTokens must be positive').optional(),
    n: z.number().int('n must be a whole number').min(1, 'n is at least 1').max(16, 'n is at most 16').optional(),
    stop: z.array(z.string()).max(4, 'at most 4 stop sequences').optional(),
  })
  .refine((r) => (r.messages?.length ?? 0) > 0 || (r.prompt !== undefined && r.prompt.length > 0), {
    message: 'a request needs at least one message (or a prompt)',
    path: ['messages'],
  });
export type PlaygroundGenerateRequest = z.infer<typeof PlaygroundGenerateRequest>;

export const PlaygroundModel = z.object({ name: z.string(), provider: z.string() });
export type PlaygroundModel = z.infer<typeof PlaygroundModel>;

export const PlaygroundModelsView = z.object({
  /** builtin | remote | noop: noop means LLM requests are off on this server. */
  mode: z.string(),
  models: z.array(PlaygroundModel),
});
export type PlaygroundModelsView = z.infer<typeof PlaygroundModelsView>;

export const PlaygroundGenerateView = z.object({
  model: z.string(),
  provider: z.string(),
  outputs: z.array(z.object({ completion: z.string(), finishReason: z.string().nullable() })),
  usage: z.object({
    inputTokens: z.number(),
    outputTokens: z.number(),
    cacheReadTokens: z.number().optional(),
    /** USD; null when the model is not in the price table. */
    cost: z.number().nullable(),
    estimated: z.boolean().optional(),
  }),
  /** Wall time of the call including retries. */
  durationMs: z.number(),
  attempts: z.number(),
});
export type PlaygroundGenerateView = z.infer<typeof PlaygroundGenerateView>;
