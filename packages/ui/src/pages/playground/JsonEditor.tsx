import { json, jsonParseLinter } from '@codemirror/lang-json';
import { linter, lintGutter } from '@codemirror/lint';
import { useCodeEditor } from '../../components/useCodeEditor.js';

export interface JsonEditorProps {
  value: string;
  onChange: (value: string) => void;
  /** Ctrl/Cmd-Enter. */
  onSubmit: () => void;
  label: string;
}

const JSON_EXTENSIONS = [json(), linter(jsonParseLinter()), lintGutter()];

/** CodeMirror 6 with JSON highlighting and a syntax linter, for the raw generation request. */
export function JsonEditor({ value, onChange, onSubmit, label }: JsonEditorProps) {
  const { host } = useCodeEditor({ value, onChange, onSubmit, label, extensions: JSON_EXTENSIONS });
  return <div className="playground-json" ref={host} data-testid="playground-json" />;
}
