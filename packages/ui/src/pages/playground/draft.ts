import { PlaygroundGenerateRequest, type PlaygroundGenerateRequest as Request } from '@terrarium/shared';
import { z } from 'zod';

/**
 * The playground's state as the person edits it (a form, or the raw request as JSON), how it becomes the request the
 * server takes, and how it survives a reload (localStorage). Pure functions: the components only render them.
 */

export type Role = 'system' | 'developer' | 'user' | 'assistant';
export const ROLES: readonly Role[] = ['system', 'user', 'assistant', 'developer'];

export interface DraftMessage {
  role: Role;
  content: string;
}

export interface Draft {
  mode: 'form' | 'json';
  model: string;
  messages: DraftMessage[];
  /** Kept as typed: an empty field means "the provider's default". */
  temperature: string;
  maxTokens: string;
  n: string;
  /** The advanced editor's text; only read in json mode. */
  json: string;
}

export const EMPTY_DRAFT: Draft = {
  mode: 'form',
  model: '',
  messages: [{ role: 'user', content: '' }],
  temperature: '',
  maxTokens: '',
  n: '1',
  json: '',
};

export type Built = { ok: true; request: Request } | { ok: false; error: string };

/** One readable line per zod issue, naming the field: `messages.0.role: role must be one of …`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}`)
    .join('\n');
}

function numberField(text: string, name: string): number | undefined | { error: string } {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const value = Number(trimmed);
  if (!Number.isFinite(value)) return { error: `${name}: "${text}" is not a number` };
  return value;
}

/** The form's fields as a request object, before validation (numbers parsed; empty fields left out). */
export function formToObject(draft: Draft): Record<string, unknown> | { error: string } {
  const out: Record<string, unknown> = { model: draft.model, messages: draft.messages };
  for (const [key, text] of [
    ['temperature', draft.temperature],
    ['maxTokens', draft.maxTokens],
    ['n', draft.n],
  ] as const) {
    const value = numberField(text, key);
    if (typeof value === 'object') return value;
    if (value !== undefined) out[key] = value;
  }
  return out;
}

/** The request to send, checked with the server's own schema so a mistake is named before anything is sent. */
export function buildRequest(draft: Draft): Built {
  let candidate: unknown;
  if (draft.mode === 'json') {
    try {
      candidate = JSON.parse(draft.json);
    } catch (error) {
      return { ok: false, error: `The request is not valid JSON: ${error instanceof Error ? error.message : error}` };
    }
  } else {
    candidate = formToObject(draft);
    if (candidate && typeof candidate === 'object' && 'error' in candidate) {
      return { ok: false, error: String((candidate as { error: string }).error) };
    }
  }
  const parsed = PlaygroundGenerateRequest.safeParse(candidate);
  return parsed.success ? { ok: true, request: parsed.data } : { ok: false, error: describeIssues(parsed.error) };
}

/** Form → JSON (entering the advanced mode): the JSON of what the form would send, even if it is not valid yet. */
export function draftToJson(draft: Draft): string {
  const object = formToObject(draft);
  const value = 'error' in object ? { model: draft.model, messages: draft.messages } : object;
  return JSON.stringify(value, null, 2);
}

/** JSON → form (leaving the advanced mode); an error when the JSON cannot be shown as the form. */
export function jsonToDraft(draft: Draft): { ok: true; draft: Draft } | { ok: false; error: string } {
  const built = buildRequest({ ...draft, mode: 'json' });
  if (!built.ok) return built;
  const { request } = built;
  if (request.prompt !== undefined || request.stop !== undefined) {
    return { ok: false, error: 'The form has no prompt or stop fields: keep editing this request as JSON.' };
  }
  return {
    ok: true,
    draft: {
      ...draft,
      mode: 'form',
      model: request.model,
      messages: request.messages ?? [],
      temperature: request.temperature === undefined ? '' : String(request.temperature),
      maxTokens: request.maxTokens === undefined ? '' : String(request.maxTokens),
      n: request.n === undefined ? '' : String(request.n),
    },
  };
}

// --- kept across reloads --------------------------------------------------------------------------------------------

export const DRAFT_KEY = 'terrarium.playground.draft';

/** What localStorage may hold: checked on load, since another version of the UI (or a person) may have written it. */
const StoredDraft = z.object({
  mode: z.enum(['form', 'json']),
  model: z.string(),
  messages: z.array(z.object({ role: z.enum(['system', 'developer', 'user', 'assistant']), content: z.string() })),
  temperature: z.string(),
  maxTokens: z.string(),
  n: z.string(),
  json: z.string(),
});

export function loadDraft(storage: Pick<Storage, 'getItem'> = localStorage): Draft {
  try {
    const text = storage.getItem(DRAFT_KEY);
    if (!text) return EMPTY_DRAFT;
    const parsed = StoredDraft.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : EMPTY_DRAFT;
  } catch {
    return EMPTY_DRAFT;
  }
}

export function saveDraft(draft: Draft, storage: Pick<Storage, 'setItem'> = localStorage): void {
  try {
    storage.setItem(DRAFT_KEY, JSON.stringify(draft));
  } catch {
    // A full or disabled storage only loses the draft on reload; the page keeps working.
  }
}

/** "$0.000123", or "unknown" when the model has no price. */
export function formatCost(cost: number | null): string {
  if (cost === null) return 'unknown (model not in the price table)';
  if (cost === 0) return '$0';
  return cost < 0.01 ? `$${cost.toPrecision(3)}` : `$${cost.toFixed(4)}`;
}
