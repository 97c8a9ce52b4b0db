#!/usr/bin/env bash
# `./terrarium test`: installs and starts what the suite needs (Docker engine, debootstrap, PostgreSQL), then runs
# lint, type checks and the whole Vitest suite. Arguments are passed to vitest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "== set-up: Docker engine and base-image tools"
node packages/cli/dist/main.js doctor --install

echo "== set-up: microVM tools (QEMU, kernel, busybox)"
bash scripts/ensure-microvm-tools.sh

echo "== set-up: PostgreSQL"
# The DB suites find this server at its defaults (127.0.0.1:5432, terrarium_test); nothing else is pointed at it, so
# the rest of the suite runs on the embedded PGlite default.
bash scripts/ensure-postgres.sh >/dev/null

echo "== build: web UI (the UI's end-to-end tests drive the built packages/ui/dist in Chromium)"
npm run build --silent -w packages/ui

echo "== lint (biome)"
npx biome check .

echo "== type check (tsc: packages, then tests and benchmarks)"
npx tsc -b packages/cli
npx tsc -p tsconfig.test.json
npx tsc -p packages/guest-agent --noEmit
npx tsc -p packages/ui/e2e/tsconfig.json

echo "== tests (vitest)"
if [ "$#" -gt 0 ]; then
  npx vitest run "$@"
else
  # MicroVMs run under software emulation here: their files run after the rest, one at a time, so they neither slow
  # nor are slowed by the Docker suites sharing the two cores.
  npx vitest run --exclude 'packages/server/test/microvm/**' --exclude 'packages/server/test/vmm/**/*.vm.test.ts'
  echo "== tests (vitest): microVM backend and manager, one file at a time"
  npx vitest run --no-file-parallelism packages/server/test/microvm .vm.test.ts
fi
