/**
 * Test helpers of the stage server: a real PostgreSQL database per test, made
 * from the run's migrated template on the run's server (docs/testing.md), a
 * temporary storage root holding the fixture photos, and buildApp with the
 * listener off.
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrate } from '@feedlyai/pipeline-core';
import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { createTestDatabase, type TestDatabase } from '@feedlyai/test-helpers';
import { type BuildAppOptions, buildApp } from '../src/app.js';
import { STAGE_MIGRATION_SET } from '../src/migrations/index.js';

export { freePort, jobState, seedJob, variantState, waitFor } from '@feedlyai/test-helpers';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** Every migration set the tests need, applied once per run to the template. */
export async function migrateAll(url: string): Promise<void> {
  await migrate(url);
  await migrate(url, { set: STAGE_MIGRATION_SET });
}

export async function testDb(t: Test): Promise<TestDatabase> {
  const db = await createTestDatabase({ migrate: migrateAll, template: 'stage_api' });
  t.teardown(() => db.close());
  return db;
}

/** A temporary storage root with the fixture photos copied in under `inputs/`. */
export async function tempStorage(t: Test, fixtures: string[] = ['coffee.png']): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'stage-api-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(path.join(dir, 'inputs'), { recursive: true });
  for (const f of fixtures) await copyFile(path.join(FIXTURES, f), path.join(dir, 'inputs', f));
  return dir;
}

/** buildApp for tests: listener off, inline CPU work unless asked, no network backends. */
export async function testApp(
  t: Test,
  db: TestDatabase,
  storageDir: string,
  options: BuildAppOptions = {},
): Promise<FastifyInstance> {
  const app = await buildApp({
    env: {},
    pool: db.pool,
    storageDir,
    listener: false,
    logger: false,
    cpuWorkers: 0,
    ...options,
  });
  t.teardown(() => app.close());
  await app.ready();
  return app;
}

export function auth(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}
