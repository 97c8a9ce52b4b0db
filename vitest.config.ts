import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const src = (pkg: string) => fileURLToPath(new URL(`./packages/${pkg}/src`, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^@terrarium\/shared$/, replacement: `${src('shared')}/index.ts` },
      { find: /^@terrarium\/server\/(.*)$/, replacement: `${src('server')}/$1` },
      { find: /^@terrarium\/server$/, replacement: `${src('server')}/index.ts` },
    ],
  },
  test: {
    include: [
      'packages/*/test/**/*.test.ts',
      // The web UI: component tests (jsdom, per file) and end-to-end tests in Chromium (they need packages/ui/dist).
      'packages/ui/test/**/*.test.tsx',
      'packages/ui/e2e/**/*.e2e.test.ts',
    ],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
