import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The dev server (`npm run dev -w packages/ui`) proxies the server's routes to a running `terrarium server`
// (TERRARIUM_API_URL, default http://127.0.0.1:4001), so the UI and the API share one origin as in production.
const api = process.env.TERRARIUM_API_URL ?? 'http://127.0.0.1:4001';

export default defineConfig({
  plugins: [react()],
  resolve: {
    // The shared zod schemas are used from source: no build of packages/shared needed for the UI.
    alias: [
      {
        find: /^@terrarium\/shared$/,
        replacement: fileURLToPath(new URL('../shared/src/index.ts', import.meta.url)),
      },
    ],
  },
  server: {
    proxy: Object.fromEntries(['/api', '/hooks', '/llm', '/v1'].map((prefix) => [prefix, api])),
  },
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: true },
});
