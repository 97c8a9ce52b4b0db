import type { PlaygroundGenerateView } from '@terrarium/shared';
import { formatCost } from './draft.js';

/** What came back: each completion, then tokens, cost and duration. */
export function GenerationResult({ result }: { result: PlaygroundGenerateView }) {
  const { usage } = result;
  return (
    <section className="panel playground-result" aria-label="Generation result">
      <dl className="facts">
        <dt>Model</dt>
        <dd className="mono">
          {result.model} ({result.provider})
        </dd>
        <dt>Tokens</dt>
        <dd data-testid="playground-tokens">
          {usage.inputTokens.toLocaleString()} in · {usage.outputTokens.toLocaleString()} out
          {usage.cacheReadTokens ? ` · ${usage.cacheReadTokens.toLocaleString()} from cache` : ''}
          {usage.estimated ? ' (estimated)' : ''}
        </dd>
        <dt>Cost</dt>
        <dd data-testid="playground-cost">{formatCost(usage.cost)}</dd>
        <dt>Duration</dt>
        <dd data-testid="playground-duration">
          {(result.durationMs / 1000).toFixed(2)} s{result.attempts > 1 ? ` (${result.attempts} attempts)` : ''}
        </dd>
      </dl>
      <ol className="playground-completions">
        {result.outputs.map((output, index) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: completions are identified by their index
          <li key={index}>
            <div className="hint">
              Completion {index + 1}
              {output.finishReason ? ` · finished: ${output.finishReason}` : ''}
            </div>
            <pre className="playground-completion" data-testid="playground-completion">
              {output.completion || '(empty)'}
            </pre>
          </li>
        ))}
      </ol>
    </section>
  );
}
