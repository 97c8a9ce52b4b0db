import { PostgreSQL, type SQLNamespace, sql as sqlLanguage } from '@codemirror/lang-sql';
import { Compartment } from '@codemirror/state';
import { useEffect, useRef } from 'react';
import { useCodeEditor } from '../../components/useCodeEditor.js';
import type { QuerySchema } from './types.js';

/** The schema as lang-sql's completion namespace: table → column names. */
export function completionSchema(schema: QuerySchema | undefined): SQLNamespace {
  return Object.fromEntries((schema?.tables ?? []).map((table) => [table.name, table.columns.map((c) => c.name)]));
}

export interface SqlEditorProps {
  value: string;
  onChange: (value: string) => void;
  /** Ctrl/Cmd-Enter. */
  onRun: () => void;
  schema?: QuerySchema | undefined;
}

/** CodeMirror 6 with PostgreSQL highlighting and completion of the tables and columns the read-only role can read. */
export function SqlEditor({ value, onChange, onRun, schema }: SqlEditorProps) {
  const language = useRef(new Compartment());
  const { host, view } = useCodeEditor({
    value,
    onChange,
    onSubmit: onRun,
    label: 'SQL query',
    extensions: [language.current.of(sqlLanguage({ dialect: PostgreSQL, schema: {} }))],
  });

  // biome-ignore lint/correctness/useExhaustiveDependencies: `view` is a ref, stable for the component's life
  useEffect(() => {
    view.current?.dispatch({
      effects: language.current.reconfigure(
        sqlLanguage({ dialect: PostgreSQL, schema: completionSchema(schema), upperCaseKeywords: true }),
      ),
    });
  }, [schema]);

  return <div className="query-editor" ref={host} data-testid="sql-editor" />;
}
