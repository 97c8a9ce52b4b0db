import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** python/: terrarium_hooks and pyhooks, as agents find them on PYTHONPATH in a sandbox. */
export const PYTHON_DIR = fileURLToPath(new URL('../../../../python/', import.meta.url));

export interface PythonAgentResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `source` as an agent would run: a real python3 process with the hooks clients on PYTHONPATH and the agent's
 * environment (API_URL, AGENT_TOKEN, RUN_ID…) pointing at a test server. Killed after `timeoutMs`.
 */
export async function runPythonAgent(options: {
  source: string;
  scratch: string;
  apiUrl: string;
  runId: number;
  token: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}): Promise<PythonAgentResult> {
  const file = path.join(options.scratch, `agent-${options.runId}.py`);
  await writeFile(file, options.source);
  return new Promise<PythonAgentResult>((resolve, reject) => {
    const child = spawn('python3', ['-u', file], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: options.scratch,
        PYTHONPATH: PYTHON_DIR,
        API_URL: options.apiUrl,
        AGENT_TOKEN: options.token,
        RUN_ID: String(options.runId),
        AGENT_BRANCH_NUMBER: '0',
        TASK_ID: 'hello_world/sum',
        PYTHONDONTWRITEBYTECODE: '1',
        ...options.env,
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
