import type { PlaygroundGenerateRequest, PlaygroundGenerateView, PlaygroundModelsView } from '@terrarium/shared';
import { useEffect, useState } from 'react';
import { useApi, useApiMutation } from '../api/query.js';
import { ErrorBanner } from '../components/ErrorBanner.js';
import { buildRequest, type Draft, draftToJson, jsonToDraft, loadDraft, saveDraft } from './playground/draft.js';
import { GenerationResult } from './playground/GenerationResult.js';
import { JsonEditor } from './playground/JsonEditor.js';
import { MessagesEditor } from './playground/MessagesEditor.js';
import { useUiConfig } from './run/api.js';

/**
 * The playground (issue 5): a signed-in person sends one generation request to a model the server's middleman permits
 * (POST /api/playground/generate), as a form of turns or as raw JSON, and sees the completions, tokens, cost and
 * duration. The draft is kept in localStorage so a reload loses nothing. Nothing is recorded on any run.
 */
export function PlaygroundPage() {
  const [draft, setDraft] = useState<Draft>(() => loadDraft());
  // A problem found in the browser, before anything is sent: the title says which step it stopped.
  const [localError, setLocalError] = useState<{ title: string; message: string } | null>(null);
  const models = useApi<PlaygroundModelsView>('/api/playground/models', { staleTime: 60_000 });
  const config = useUiConfig();
  const generate = useApiMutation<PlaygroundGenerateView, PlaygroundGenerateRequest>((request) => ({
    path: '/api/playground/generate',
    init: { method: 'POST', json: request },
  }));
  const readOnly = config.data?.readOnly === true;

  useEffect(() => saveDraft(draft), [draft]);

  const edit = (patch: Partial<Draft>) => {
    setLocalError(null);
    setDraft((current) => ({ ...current, ...patch }));
  };

  const send = () => {
    const built = buildRequest(draft);
    if (!built.ok) {
      setLocalError({ title: 'The request is not ready', message: built.error });
      return;
    }
    setLocalError(null);
    generate.mutate(built.request);
  };

  const switchMode = () => {
    if (draft.mode === 'form') {
      edit({ mode: 'json', json: draftToJson(draft) });
      return;
    }
    const back = jsonToDraft(draft);
    if (back.ok) edit(back.draft);
    else setLocalError({ title: 'Cannot show this request as the form', message: back.error });
  };

  const available = models.data?.models ?? [];
  return (
    <main className="page playground">
      <h1>Playground</h1>
      <p className="hint">
        One generation request through the server's middleman, as agents make them. It is tied to no run: nothing is
        written to a trace or charged to a run's usage.
      </p>
      <ErrorBanner error={models.error} title="Could not list the models" />
      {models.data && available.length === 0 && (
        <p className="hint" role="status">
          The middleman (mode {models.data.mode}) permits no models: configure a provider key (OPENAI_API_KEY,
          ANTHROPIC_API_KEY, GEMINI_API_KEY) or MIDDLEMAN_API_URL on the server.
        </p>
      )}
      <div className="playground-layout">
        <form
          className="panel stack playground-form"
          aria-label="Generation request"
          onSubmit={(event) => {
            event.preventDefault();
            send();
          }}
          // Ctrl/Cmd-Enter sends from any field, as in the JSON editor.
          onKeyDown={(event) => {
            // The JSON editor handles its own Ctrl-Enter (and marks the event handled): not sent twice.
            if (event.nativeEvent.defaultPrevented) return;
            if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) && !generate.isPending && !readOnly) {
              event.preventDefault();
              send();
            }
          }}
        >
          <div className="row">
            <button type="button" onClick={switchMode} aria-pressed={draft.mode === 'json'}>
              {draft.mode === 'json' ? 'Back to the form' : 'Edit as JSON (advanced)'}
            </button>
            <span className="spacer" />
            <button type="button" onClick={() => edit({ ...draftReset(draft) })}>
              Clear
            </button>
          </div>
          {draft.mode === 'form' ? (
            <>
              <label className="stack">
                Model
                <select value={draft.model} onChange={(event) => edit({ model: event.target.value })}>
                  <option value="" disabled>
                    {models.isPending ? 'Loading the models…' : 'Pick a model'}
                  </option>
                  {draft.model !== '' && !available.some((m) => m.name === draft.model) && (
                    <option value={draft.model}>{draft.model} (not in the permitted list)</option>
                  )}
                  {available.map((m) => (
                    <option key={m.name} value={m.name}>
                      {m.name} ({m.provider})
                    </option>
                  ))}
                </select>
              </label>
              <MessagesEditor messages={draft.messages} onChange={(messages) => edit({ messages })} />
              <div className="row playground-params">
                <label>
                  Temperature{' '}
                  <input
                    inputMode="decimal"
                    size={5}
                    value={draft.temperature}
                    placeholder="default"
                    onChange={(event) => edit({ temperature: event.target.value })}
                  />
                </label>
                <label>
                  Max tokens{' '}
                  <input
                    inputMode="numeric"
                    size={7}
                    value={draft.maxTokens}
                    placeholder="default"
                    onChange={(event) => edit({ maxTokens: event.target.value })}
                  />
                </label>
                <label>
                  Completions (n){' '}
                  <input
                    inputMode="numeric"
                    size={3}
                    value={draft.n}
                    onChange={(event) => edit({ n: event.target.value })}
                  />
                </label>
              </div>
            </>
          ) : (
            <>
              <p className="hint">
                The request as JSON: <code>model</code>, <code>messages</code> (or <code>prompt</code>),{' '}
                <code>temperature</code>, <code>maxTokens</code>, <code>n</code>, <code>stop</code>. Ctrl-Enter sends.
              </p>
              <JsonEditor
                label="Generation request as JSON"
                value={draft.json}
                onChange={(json) => edit({ json })}
                onSubmit={send}
              />
            </>
          )}
          {localError && (
            <div role="alert" className="error-banner">
              <strong>{localError.title}: </strong>
              <span className="error-message">{localError.message}</span>
            </div>
          )}
          <ErrorBanner error={generate.error} title="The generation failed" />
          <div className="row">
            <button
              type="submit"
              className="primary"
              disabled={generate.isPending || readOnly}
              title={readOnly ? 'This Terrarium is read-only: nothing can be generated.' : undefined}
            >
              {generate.isPending ? 'Generating…' : 'Send'}
            </button>
            {readOnly && <span className="hint">Read-only: the playground cannot send requests.</span>}
          </div>
        </form>
        <div className="playground-output" aria-live="polite">
          {generate.isPending && <p className="hint">Waiting for {draft.model || 'the model'}…</p>}
          {generate.data && !generate.isPending && <GenerationResult result={generate.data} />}
          {!generate.data && !generate.isPending && <p className="hint">The completions appear here.</p>}
        </div>
      </div>
    </main>
  );
}

/** Clear keeps the model and the mode: a person clearing the conversation usually keeps talking to the same model. */
function draftReset(draft: Draft): Draft {
  return {
    mode: draft.mode,
    model: draft.model,
    messages: [{ role: 'user', content: '' }],
    temperature: '',
    maxTokens: '',
    n: '1',
    json: JSON.stringify({ model: draft.model, messages: [{ role: 'user', content: '' }] }, null, 2),
  };
}
