import { PostgreSQL, type SQLNamespace, sql as sqlLanguage } from '@codemirror/lang-sql';
import { Compartment, EditorState } from '@codemirror/state';
import { EditorView, keymap } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import { useEffect, useRef } from 'react';
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
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const language = useRef(new Compartment());
  // The editor is created once; the latest callbacks are read through refs.
  const callbacks = useRef({ onChange, onRun });
  callbacks.current = { onChange, onRun };

  // biome-ignore lint/correctness/useExhaustiveDependencies: the editor is created once; `value` is synced below
  useEffect(() => {
    if (!host.current) return;
    const editor = new EditorView({
      parent: host.current,
      state: EditorState.create({
        doc: value,
        extensions: [
          keymap.of([
            {
              key: 'Mod-Enter',
              run: () => {
                callbacks.current.onRun();
                return true;
              },
            },
          ]),
          basicSetup,
          language.current.of(sqlLanguage({ dialect: PostgreSQL, schema: {} })),
          EditorView.lineWrapping,
          EditorView.contentAttributes.of({ 'aria-label': 'SQL query', 'aria-multiline': 'true' }),
          EditorView.updateListener.of((update) => {
            if (update.docChanged) callbacks.current.onChange(update.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = editor;
    return () => {
      editor.destroy();
      view.current = null;
    };
  }, []);

  // Text set from outside (a shared link, a generated query) replaces the document.
  useEffect(() => {
    const editor = view.current;
    if (editor && editor.state.doc.toString() !== value) {
      editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: value } });
    }
  }, [value]);

  useEffect(() => {
    view.current?.dispatch({
      effects: language.current.reconfigure(
        sqlLanguage({ dialect: PostgreSQL, schema: completionSchema(schema), upperCaseKeywords: true }),
      ),
    });
  }, [schema]);

  return <div className="query-editor" ref={host} data-testid="sql-editor" />;
}
