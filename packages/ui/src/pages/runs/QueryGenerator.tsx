import { useState } from 'react';
import { useApiMutation } from '../../api/query.js';
import { ErrorBanner } from '../../components/ErrorBanner.js';
import type { GeneratedQuery } from './types.js';

export interface QueryGeneratorProps {
  /** RUNS_PAGE_QUERY_GENERATION_MODEL, shown so the person knows who wrote the SQL. */
  model: string;
  /** Receives the model's SQL: the editor shows it for review; nothing runs until the person runs it. */
  onGenerated: (sql: string) => void;
}

/** "Describe a query in words": the server asks the model (with the read-only schema) and answers SQL. */
export function QueryGenerator({ model, onGenerated }: QueryGeneratorProps) {
  const [description, setDescription] = useState('');
  const generate = useApiMutation<GeneratedQuery, string>(
    (text) => ({ path: '/api/query/generate', init: { method: 'POST', json: { description: text } } }),
    { onSuccess: (answer) => onGenerated(answer.sql) },
  );
  const text = description.trim();
  return (
    <form
      className="stack"
      aria-label="Write SQL from words"
      onSubmit={(event) => {
        event.preventDefault();
        if (text) generate.mutate(text);
      }}
    >
      <div className="row">
        <label htmlFor="query-description">Describe a query</label>
        <input
          id="query-description"
          type="text"
          placeholder="runs of hello_world that scored 1 in the last day"
          value={description}
          onChange={(event) => setDescription(event.target.value)}
          style={{ flex: 1, minWidth: 240 }}
        />
        <button type="submit" disabled={!text || generate.isPending}>
          {generate.isPending ? 'Writing…' : 'Write SQL'}
        </button>
        <span className="hint" data-testid="query-generation-note">
          {generate.data
            ? `Written by ${generate.data.model}: review it in the editor, then run it.`
            : `${model} writes the SQL into the editor; it runs only when you run it.`}
        </span>
      </div>
      {generate.error && <ErrorBanner error={generate.error} title="Writing the query failed" />}
    </form>
  );
}
