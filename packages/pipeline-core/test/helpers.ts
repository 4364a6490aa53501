// Test database for pipeline-core (docs/testing.md): a database of its own,
// made from the run's migrated template, on the run's PostgreSQL.
import { createTestDatabase, type TestDatabase } from '@feedlyai/test-helpers';
import { migrate } from '../src/migrate.js';

export { jobState, markImgGenDone, seedJob, variantState, waitFor } from '@feedlyai/test-helpers';

/** Every migration set the tests need, applied once per run to the template. */
export async function migrateAll(url: string): Promise<void> {
  await migrate(url);
}

export async function testDb(): Promise<TestDatabase> {
  return await createTestDatabase({ migrate: migrateAll, template: 'pipeline_core' });
}
