import { useQueryClient } from '@tanstack/react-query';
import type { TraceEntryComment, TraceEntryTag, TraceEntryView } from '@terrarium/shared';
import { useId, useState } from 'react';
import { useApiMutation } from '../../api/query.js';
import { ErrorBanner } from '../../components/ErrorBanner.js';
import { generationSummary } from './trace-model.js';

function Pre({ children, label }: { children: string; label: string }) {
  return (
    <figure className="entry-figure" aria-label={label}>
      <pre className="entry-pre">{children}</pre>
    </figure>
  );
}

/** The body of an entry, shown its own way for each kind. */
export function EntryBody({ entry }: { entry: TraceEntryView }) {
  const c = (entry.content ?? {}) as Record<string, unknown>;
  switch (entry.kind) {
    case 'generation': {
      const g = generationSummary(c);
      return (
        <div className="generation">
          <dl className="facts">
            <dt>Model</dt>
            <dd>{g.model}</dd>
            <dt>Tokens</dt>
            <dd>
              {g.inputTokens} in · {g.outputTokens} out
            </dd>
            <dt>Cost</dt>
            <dd>{g.cost === null ? 'unknown' : `$${g.cost.toFixed(6)}`}</dd>
            {g.durationMs !== null && (
              <>
                <dt>Took</dt>
                <dd>{(g.durationMs / 1000).toFixed(2)} s</dd>
              </>
            )}
          </dl>
          {g.error && <p className="entry-error">Failed: {g.error}</p>}
          <h4>Prompt</h4>
          <Pre label="Prompt">{g.prompt || '(empty)'}</Pre>
          <h4>Completion{g.completions.length > 1 ? 's' : ''}</h4>
          {g.completions.length === 0 ? (
            <p className="hint">No completion.</p>
          ) : (
            g.completions.map((text, i) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: completions are a fixed list
              <Pre key={i} label={`Completion ${i + 1}`}>
                {text}
              </Pre>
            ))
          )}
        </div>
      );
    }
    case 'log':
      return (
        <Pre label="Log">
          {(Array.isArray(c.content) ? c.content : [c.content])
            .map((x) => (typeof x === 'string' ? x : JSON.stringify(x, null, 2)))
            .join('\n')}
        </Pre>
      );
    case 'agent-output':
      return <Pre label={String(c.stream)}>{String(c.text ?? '')}</Pre>;
    case 'error':
      return (
        <div>
          <p className="entry-error">
            {String(c.from ?? '')}: {String(c.detail ?? '')}
          </p>
          {typeof c.trace === 'string' && <Pre label="Stack trace">{c.trace}</Pre>}
        </div>
      );
    default:
      return <Pre label="Content">{JSON.stringify(c, null, 2)}</Pre>;
  }
}

/** Comments and tags of one entry, with forms to add them (unless read-only). */
export function EntryAnnotations({
  runId,
  entry,
  comments,
  tags,
  readOnly,
}: {
  runId: number;
  entry: TraceEntryView;
  comments: TraceEntryComment[];
  tags: TraceEntryTag[];
  readOnly: boolean;
}) {
  const client = useQueryClient();
  const [comment, setComment] = useState('');
  const [tag, setTag] = useState('');
  const commentId = useId();
  const tagId = useId();
  const refresh = () =>
    Promise.all([
      client.invalidateQueries({ queryKey: ['comments', runId] }),
      client.invalidateQueries({ queryKey: ['tags', runId] }),
    ]);
  const change = useApiMutation<unknown, { method: 'POST' | 'DELETE'; path: string; json?: unknown }>(
    ({ method, path, json }) => ({ path, init: { method, ...(json !== undefined && { json }) } }),
    { onSuccess: () => void refresh() },
  );
  return (
    <section className="annotations" aria-label={`Comments and tags of entry ${entry.index}`}>
      <div className="row">
        {tags.map((t) => (
          <span key={t.id} className="tag">
            #{t.tag}
            {!readOnly && (
              <button
                type="button"
                className="link-button"
                aria-label={`Remove tag ${t.tag}`}
                onClick={() => change.mutate({ method: 'DELETE', path: `/api/runs/${runId}/tags/${t.id}` })}
              >
                ×
              </button>
            )}
          </span>
        ))}
        {!readOnly && (
          <form
            className="row"
            onSubmit={(e) => {
              e.preventDefault();
              change.mutate(
                { method: 'POST', path: `/api/runs/${runId}/tags`, json: { traceEntryId: entry.id, tag } },
                { onSuccess: () => setTag('') },
              );
            }}
          >
            <label htmlFor={tagId}>Tag</label>
            <input id={tagId} value={tag} onChange={(e) => setTag(e.target.value)} size={12} placeholder="e.g. bug" />
            <button type="submit" disabled={!tag.trim()}>
              Add tag
            </button>
          </form>
        )}
      </div>
      <ul className="comments">
        {comments.map((c) => (
          <li key={c.id}>
            <span className="hint">
              {c.userId} · {new Date(c.createdAt).toLocaleString()}
            </span>{' '}
            {c.content}{' '}
            {!readOnly && (
              <button
                type="button"
                className="link-button"
                aria-label="Delete comment"
                onClick={() => change.mutate({ method: 'DELETE', path: `/api/runs/${runId}/comments/${c.id}` })}
              >
                delete
              </button>
            )}
          </li>
        ))}
      </ul>
      {!readOnly && (
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            change.mutate(
              {
                method: 'POST',
                path: `/api/runs/${runId}/comments`,
                json: { traceEntryId: entry.id, content: comment },
              },
              { onSuccess: () => setComment('') },
            );
          }}
        >
          <label htmlFor={commentId}>Comment</label>
          <input
            id={commentId}
            value={comment}
            onChange={(e) => setComment(e.target.value)}
            className="grow"
            placeholder="What do you notice here?"
          />
          <button type="submit" disabled={!comment.trim()}>
            Add comment
          </button>
        </form>
      )}
      <ErrorBanner error={change.error} />
    </section>
  );
}
