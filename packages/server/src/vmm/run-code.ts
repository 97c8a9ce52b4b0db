/**
 * run-ts / run-js: a snippet runs in the guest's Node.js as the body of an async function. Its `return` value
 * (JSON) is the structured `result`; a thrown error is the structured `error`; console output is stdout/stderr.
 * TypeScript is transpiled on the host (esbuild, types stripped, no type checking), so the guest needs only Node.
 */
import { randomBytes } from 'node:crypto';
import { transform } from 'esbuild';
import { badRequest } from './errors.js';

export type CodeLanguage = 'ts' | 'js';

/**
 * The runner: reads the compiled module from stdin, imports it from a data: URL, awaits its default export and
 * prints the outcome after a per-request sentinel, which the host cuts off stdout.
 */
const RUNNER = `
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const source = Buffer.concat(chunks).toString('utf8');
const sentinel = process.env.TRM_RESULT_SENTINEL;
delete process.env.TRM_RESULT_SENTINEL;
const emit = (outcome) => process.stdout.write('\\n' + sentinel + JSON.stringify(outcome) + '\\n');
let outcome;
try {
  const mod = await import('data:text/javascript;base64,' + Buffer.from(source).toString('base64'));
  const value = await mod.default();
  let json;
  try { json = value === undefined ? null : JSON.parse(JSON.stringify(value)); }
  catch (err) { json = String(value); }
  outcome = { ok: true, result: json };
} catch (err) {
  outcome = { ok: false, error: { name: err?.name ?? 'Error', message: err?.message ?? String(err), stack: err?.stack } };
}
emit(outcome);
process.exitCode = outcome.ok ? 0 : 1;
`;

export interface PreparedRun {
  cmd: string[];
  stdin: Buffer;
  env: Record<string, string>;
  sentinel: string;
}

export async function prepareRun(language: CodeLanguage, code: string): Promise<PreparedRun> {
  const wrapped = `export default async function __terrariumMain() {\n${code}\n}\n`;
  let compiled: string;
  try {
    compiled = (
      await transform(wrapped, { loader: language, format: 'esm', target: 'node18', sourcefile: `snippet.${language}` })
    ).code;
  } catch (err) {
    throw badRequest(
      `the ${language === 'ts' ? 'TypeScript' : 'JavaScript'} snippet does not compile: ${(err as Error).message}`,
    );
  }
  const sentinel = `__TERRARIUM_RESULT_${randomBytes(12).toString('hex')}__`;
  return {
    cmd: ['node', '--input-type=module', '-e', RUNNER],
    stdin: Buffer.from(compiled, 'utf8'),
    env: { TRM_RESULT_SENTINEL: sentinel },
    sentinel,
  };
}

export interface RunOutcome {
  stdout: string;
  result?: unknown;
  error?: { name: string; message: string; stack?: string };
}

/** Splits the runner's outcome off stdout. */
export function parseRunOutput(stdout: string, sentinel: string): RunOutcome {
  const at = stdout.lastIndexOf(`\n${sentinel}`);
  if (at < 0)
    return {
      stdout,
      error: { name: 'RunnerError', message: 'the snippet ended without a result (killed, timed out or exited early)' },
    };
  const line = stdout.slice(at + 1 + sentinel.length).split('\n')[0] ?? '';
  try {
    const outcome = JSON.parse(line) as { ok: boolean; result?: unknown; error?: RunOutcome['error'] };
    return outcome.ok
      ? { stdout: stdout.slice(0, at), result: outcome.result ?? null }
      : { stdout: stdout.slice(0, at), error: outcome.error };
  } catch {
    return { stdout: stdout.slice(0, at), error: { name: 'RunnerError', message: 'the result could not be parsed' } };
  }
}
