import type { HumanRequestView } from '@terrarium/shared';
import { useId, useState } from 'react';
import { ErrorBanner } from '../../components/ErrorBanner.js';
import { useRunAction } from './api.js';

/** What the agent is waiting on a person for: free-form input, or rating options. */
export function HumanRequests({
  runId,
  branch,
  requests,
  readOnly,
}: {
  runId: number;
  branch: number;
  requests: HumanRequestView[];
  readOnly: boolean;
}) {
  const pending = requests.filter((r) => r.answer === null);
  if (pending.length === 0) return null;
  return (
    <section className="panel human-requests" aria-label="The agent is waiting for you">
      <h2>The agent is waiting for you</h2>
      {pending.map((request) =>
        request.kind === 'input' ? (
          <InputForm key={request.id} runId={runId} branch={branch} request={request} readOnly={readOnly} />
        ) : (
          <RatingForm key={request.id} runId={runId} branch={branch} request={request} readOnly={readOnly} />
        ),
      )}
    </section>
  );
}

function InputForm({
  runId,
  branch,
  request,
  readOnly,
}: {
  runId: number;
  branch: number;
  request: HumanRequestView;
  readOnly: boolean;
}) {
  const defaultInput = typeof request.request.defaultInput === 'string' ? request.request.defaultInput : '';
  const [answer, setAnswer] = useState(defaultInput);
  const id = useId();
  const action = useRunAction(runId);
  return (
    <form
      className="stack"
      onSubmit={(e) => {
        e.preventDefault();
        action.mutate({ path: `/api/runs/${runId}/branches/${branch}/input/${request.id}`, json: { answer } });
      }}
    >
      <label htmlFor={id}>{String(request.request.description ?? 'The agent asks for input')}</label>
      <textarea id={id} rows={3} value={answer} onChange={(e) => setAnswer(e.target.value)} disabled={readOnly} />
      {!readOnly && (
        <div className="row">
          <button type="submit" className="primary" disabled={action.isPending}>
            Send answer
          </button>
        </div>
      )}
      <ErrorBanner error={action.error} />
    </form>
  );
}

interface Option {
  action: string;
  description?: string | null;
  fixedRating?: number | null;
}

/** The option rating pane: rate each option (optional) and choose the one the agent should take. */
function RatingForm({
  runId,
  branch,
  request,
  readOnly,
}: {
  runId: number;
  branch: number;
  request: HumanRequestView;
  readOnly: boolean;
}) {
  const options = (Array.isArray(request.request.options) ? request.request.options : []) as Option[];
  const [choice, setChoice] = useState<number | null>(null);
  const [ratings, setRatings] = useState<string[]>(() => options.map((o) => (o.fixedRating ?? '').toString()));
  const name = useId();
  const action = useRunAction(runId);
  return (
    <form
      className="stack rating-form"
      onSubmit={(e) => {
        e.preventDefault();
        if (choice === null) return;
        action.mutate({
          path: `/api/runs/${runId}/branches/${branch}/ratings/${request.id}`,
          json: { choice, ratings: ratings.map((r) => (r.trim() === '' ? null : Number(r))) },
        });
      }}
    >
      <fieldset>
        <legend>{String(request.request.description ?? 'Choose the option the agent should take')}</legend>
        {options.map((option, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: options are a fixed list, addressed by index
          <div key={i} className="rating-option">
            <label className="row">
              <input
                type="radio"
                name={name}
                checked={choice === i}
                onChange={() => setChoice(i)}
                disabled={readOnly}
              />
              <span>
                Option {i + 1}: <code>{option.action}</code>
                {option.description && <span className="hint"> — {option.description}</span>}
              </span>
            </label>
            <label className="row rating-input">
              Rating of option {i + 1}
              <input
                type="number"
                step="any"
                value={ratings[i] ?? ''}
                disabled={readOnly}
                onChange={(e) => setRatings((prev) => prev.map((r, j) => (j === i ? e.target.value : r)))}
                size={5}
              />
            </label>
          </div>
        ))}
      </fieldset>
      {!readOnly && (
        <div className="row">
          <button type="submit" className="primary" disabled={choice === null || action.isPending}>
            Choose option{choice === null ? '' : ` ${choice + 1}`}
          </button>
        </div>
      )}
      <ErrorBanner error={action.error} />
    </form>
  );
}
