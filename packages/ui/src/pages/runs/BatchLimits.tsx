import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useApi, useApiMutation } from '../../api/query.js';
import { ErrorBanner } from '../../components/ErrorBanner.js';
import { useReadOnly } from '../login/auth-config.js';
import type { BatchView } from './types.js';

/** Batches with their concurrency limits, editable (empty: no limit; 0 holds the batch). */
export function BatchLimits() {
  const batches = useApi<BatchView[]>('/api/batches', { refetchInterval: 5000 });
  const readOnly = useReadOnly();
  if (batches.error) return <ErrorBanner error={batches.error} title="Batches unavailable" />;
  if (!batches.data || batches.data.length === 0) return null;
  return (
    <section aria-labelledby="batches-heading">
      <h2 id="batches-heading">Batches</h2>
      <div className="row">
        {batches.data.map((batch) => (
          <BatchLimitEditor key={batch.name} batch={batch} readOnly={readOnly} />
        ))}
      </div>
    </section>
  );
}

function BatchLimitEditor({ batch, readOnly }: { batch: BatchView; readOnly: boolean }) {
  const client = useQueryClient();
  const [value, setValue] = useState(batch.concurrencyLimit === null ? '' : String(batch.concurrencyLimit));
  const save = useApiMutation<BatchView, number | null>(
    (concurrencyLimit) => ({
      path: `/api/batches/${encodeURIComponent(batch.name)}`,
      init: { method: 'PUT', json: { concurrencyLimit } },
    }),
    { onSuccess: () => client.invalidateQueries({ queryKey: ['/api/batches'] }) },
  );
  const id = `batch-limit-${batch.name}`;
  const parsed = value.trim() === '' ? null : Number(value);
  const valid = parsed === null || (Number.isInteger(parsed) && parsed >= 0);
  return (
    <form
      className="panel row"
      onSubmit={(event) => {
        event.preventDefault();
        if (valid) save.mutate(parsed);
      }}
    >
      <strong>{batch.name}</strong>
      <span className="hint">
        {batch.active} active · {batch.queued} queued
      </span>
      {readOnly && <span>Limit: {batch.concurrencyLimit ?? 'none'}</span>}
      {!readOnly && <label htmlFor={id}>Limit</label>}
      {!readOnly && (
        <input
          id={id}
          type="number"
          min={0}
          step={1}
          placeholder="none"
          style={{ width: 70 }}
          value={value}
          onChange={(event) => setValue(event.target.value)}
          aria-invalid={!valid}
        />
      )}
      {!readOnly && (
        <button type="submit" disabled={!valid || save.isPending}>
          Save
        </button>
      )}
      {save.error && <ErrorBanner error={save.error} />}
    </form>
  );
}
