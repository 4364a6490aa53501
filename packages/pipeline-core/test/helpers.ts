// Test database for pipeline-core: the shared harness of packages/test-tools,
// imported by path (test-tools depends on pipeline-core, so no package edge here).
import { migrate } from '../src/migrate.js';
import { createTestDatabase, type TestDatabase } from '../../test-tools/src/db/harness.js';

export { seedJob, markImgGenDone, variantState, jobState } from '../../test-tools/src/db/seed.js';
export { waitFor } from '../../test-tools/src/db/harness.js';

export async function testDb(): Promise<TestDatabase> {
  return await createTestDatabase({ migrate: (url) => migrate(url) });
}
