import { afterAll, beforeAll, describe } from 'vitest';
import { createDatabase, type DatabaseHandle } from '../../src/db/client.js';
import { DEFAULT_QUERY_LIMITS, QueryService, setUpQueryRunner } from '../../src/query/index.js';
import { defineQueryCases } from './cases.js';

describe('read-only queries on PGlite', () => {
  let handle: DatabaseHandle;
  let service: QueryService;

  beforeAll(async () => {
    handle = await createDatabase({ kind: 'pglite', dataDir: 'memory' });
    await handle.migrate();
    const setup = await setUpQueryRunner(handle, { readOnly: {} });
    if (!setup.runner) throw new Error(setup.reason);
    service = new QueryService(handle.db, setup.runner, undefined, { ...DEFAULT_QUERY_LIMITS, rowCap: 50 });
  });
  afterAll(async () => {
    await service?.close();
    await handle?.close();
  });

  defineQueryCases(() => ({ handle, service }));
});
