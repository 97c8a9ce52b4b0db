import type { AgentOutputView } from '@terrarium/shared';
import { useState } from 'react';

/** The agent process's stdout and stderr (tabs), newest at the bottom. */
export function AgentOutput({ output }: { output: AgentOutputView | undefined }) {
  const [stream, setStream] = useState<'stdout' | 'stderr'>('stdout');
  if (!output) return null;
  const text = output[stream];
  return (
    <section className="panel agent-output" aria-label="Agent process output">
      <div className="row">
        <h2>Agent output</h2>
        <div role="tablist" aria-label="Stream" className="row">
          {(['stdout', 'stderr'] as const).map((s) => (
            <button
              key={s}
              type="button"
              role="tab"
              aria-selected={stream === s}
              className={stream === s ? 'tab active' : 'tab'}
              onClick={() => setStream(s)}
            >
              {s} ({output[s].length})
            </button>
          ))}
        </div>
        <span className="hint">{output.finished ? `exited ${output.exitCode ?? '?'}` : 'running'}</span>
      </div>
      <pre className="entry-pre output-pre" role="tabpanel" aria-label={stream}>
        {text || `(no ${stream})`}
      </pre>
    </section>
  );
}
