// Test database for pipeline-views (docs/testing.md): a database of its own,
// made from the run's migrated template, on the run's PostgreSQL.
import { migrate } from '@feedlyai/pipeline-core';
import { STAGE_MIGRATION_SET } from '@feedlyai/stage-api/migrations';
import { createTestDatabase, type TestDatabase } from '@feedlyai/test-helpers';

export { seedJob } from '@feedlyai/test-helpers';

/**
 * Every migration set the tests need, applied once per run to the template:
 * the engine's and the stage server's (the views read its result tables; a
 * test-only dependency, the package itself needs only pipeline-core).
 */
export async function migrateAll(url: string): Promise<void> {
  await migrate(url);
  await migrate(url, { set: STAGE_MIGRATION_SET });
}

export async function testDb(): Promise<TestDatabase> {
  return await createTestDatabase({ migrate: migrateAll, template: 'pipeline_views' });
}
