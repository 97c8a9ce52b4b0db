import { EditorState, type Extension } from '@codemirror/state';
import { EditorView, keymap } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import { type RefObject, useEffect, useRef } from 'react';

export interface CodeEditorOptions {
  value: string;
  onChange: (value: string) => void;
  /** Ctrl/Cmd-Enter. */
  onSubmit: () => void;
  /** The editor's accessible name. */
  label: string;
  /** The language and its helpers; read once, when the editor is created (reconfigure through a Compartment). */
  extensions: Extension[];
}

/**
 * A CodeMirror 6 editor (basic set-up, line wrapping, Ctrl/Cmd-Enter submits) created once in `host`; text set from
 * outside (a shared link, a generated query, a switch of mode) replaces the document.
 */
export function useCodeEditor({ value, onChange, onSubmit, label, extensions }: CodeEditorOptions): {
  host: RefObject<HTMLDivElement | null>;
  view: RefObject<EditorView | null>;
} {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  // The editor is created once; the latest callbacks are read through a ref.
  const callbacks = useRef({ onChange, onSubmit });
  callbacks.current = { onChange, onSubmit };

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
                callbacks.current.onSubmit();
                return true;
              },
            },
          ]),
          basicSetup,
          ...extensions,
          EditorView.lineWrapping,
          EditorView.contentAttributes.of({ 'aria-label': label, 'aria-multiline': 'true' }),
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

  useEffect(() => {
    const editor = view.current;
    if (editor && editor.state.doc.toString() !== value) {
      editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: value } });
    }
  }, [value]);

  return { host, view };
}
