/**
 * Prints the middleman's overhead on the provider-compatible endpoints, against the fake provider on loopback:
 *  - OpenAI chat completion via the official SDK: direct to the fake vs through /llm/openai/v1 (auth, routing,
 *    SDK call upstream, trace entry, branch usage), median and p95;
 *  - the same for a streamed completion (time to the last chunk);
 *  - throughput with 8 agents calling in parallel.
 *
 *   npx tsx bench/llm-overhead.ts [--calls 200]
 */
import Fastify from 'fastify';
import OpenAI from 'openai';
import { installErrorHandler } from '../packages/server/src/api/errors.js';
import { llmRoutes } from '../packages/server/src/api/routes/llm.js';
import { mintAgentToken } from '../packages/server/src/auth/agent-tokens.js';
import { createDatabase } from '../packages/server/src/db/index.js';
import { createMiddleman, LlmService, llmEnvForAgent } from '../packages/server/src/llm/index.js';
import { DrizzleRunRepository } from '../packages/server/src/runs/db-repository.js';
import { startFakeLlmProvider } from '../packages/server/test/helpers/fake-llm-provider.js';
import { builtinConfig } from '../packages/server/test/llm/helpers.js';

const at = process.argv.indexOf('--calls');
const calls = at >= 0 ? Number(process.argv[at + 1]) : 200;

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};
const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

const fake = await startFakeLlmProvider();
const database = await createDatabase({ kind: 'pglite', dataDir: 'memory' });
await database.migrate();
const repo = new DrizzleRunRepository(database.db);
await repo.ensureUser('bench', 'bench');
const runId = await repo.insertRun({
  taskId: 'bench/bench',
  taskFamilyName: 'bench',
  taskName: 'bench',
  taskFamilyDir: '/nowhere',
  agentDir: '/nowhere',
  agentName: 'bench',
  userId: 'bench',
  batchName: null,
  metadata: {},
});
const minted = mintAgentToken(runId);
await repo.updateRun(runId, { agentTokenHash: minted.hash, status: 'running' });
await repo.insertBranch(runId, 0);
const config = builtinConfig(fake);
const llm = new LlmService(createMiddleman(config), database.db, repo);
const app = Fastify();
installErrorHandler(app);
await app.register(llmRoutes({ llm, repo }), { prefix: '/llm' });
const apiBase = await app.listen({ host: '127.0.0.1', port: 0 });
const env = llmEnvForAgent({ apiBase, token: minted.token });

const direct = new OpenAI({ apiKey: fake.keys.openai, baseURL: `${fake.url}/v1`, maxRetries: 0 });
const viaTerrarium = new OpenAI({ apiKey: env.OPENAI_API_KEY, baseURL: env.OPENAI_BASE_URL, maxRetries: 0 });
const body = {
  model: 'gpt-4o-mini',
  messages: [{ role: 'user' as const, content: 'the quick brown fox jumps over the lazy dog' }],
};

async function time(fn: () => Promise<unknown>, n: number): Promise<number[]> {
  for (let i = 0; i < 10; i++) await fn(); // warm-up
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}
const drain = async (client: OpenAI) => {
  const stream = await client.chat.completions.create({ ...body, stream: true });
  for await (const _ of stream);
};

const rows: [string, number[], number[]][] = [
  [
    'chat completion',
    await time(() => direct.chat.completions.create(body), calls),
    await time(() => viaTerrarium.chat.completions.create(body), calls),
  ],
  ['streamed completion', await time(() => drain(direct), calls), await time(() => drain(viaTerrarium), calls)],
];
for (const [name, d, v] of rows) {
  console.log(
    `${name}: direct median ${fmt(percentile(d, 50))} p95 ${fmt(percentile(d, 95))}; via /llm median ${fmt(percentile(v, 50))} p95 ${fmt(percentile(v, 95))}; overhead median ${fmt(percentile(v, 50) - percentile(d, 50))}`,
  );
}
const parallel = 8;
const t = performance.now();
await Promise.all(
  Array.from({ length: parallel }, async () => {
    for (let i = 0; i < calls / parallel; i++) await viaTerrarium.chat.completions.create(body);
  }),
);
const seconds = (performance.now() - t) / 1000;
console.log(`throughput via /llm with ${parallel} parallel agents: ${(calls / seconds).toFixed(0)} calls/s`);
const usage = await llm.branchUsage(runId, 0);
console.log(
  `branch usage after the bench: ${usage.generations} generations, ${usage.inputTokens} input tokens, cost $${usage.cost.toFixed(6)}`,
);

await app.close();
await fake.close();
await database.close();
