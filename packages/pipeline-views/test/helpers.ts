// Test database for pipeline-views (docs/testing.md): a database of its own,
// made from the run's migrated template, on the run's PostgreSQL.
import { migrate } from '@feedlyai/pipeline-core';
import { createTestDatabase, type TestDatabase } from '@feedlyai/test-helpers';

export { seedJob } from '@feedlyai/test-helpers';

/** Every migration set the tests need, applied once per run to the template. */
export async function migrateAll(url: string): Promise<void> {
  await migrate(url);
}

export async function testDb(): Promise<TestDatabase> {
  return await createTestDatabase({ migrate: migrateAll, template: 'pipeline_views' });
}
