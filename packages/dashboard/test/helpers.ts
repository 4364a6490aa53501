// Test database and app builders for the dashboard: a database of its own per test file, made from
// the run's migrated template (docs/testing.md), and a Fastify host with the dashboard registered.
import { Writable } from 'node:stream';
import { migrate } from '@feedlyai/pipeline-core';
import { STAGE_MIGRATION_SET } from '@feedlyai/stage-api/migrations';
import { createTestDatabase, type TestDatabase } from '@feedlyai/test-helpers';
import Fastify, { type FastifyInstance } from 'fastify';
import { type DashboardOptions, dashboard } from '../src/index.js';

export { jobState, markImgGenDone, type SeededJob, seedJob, variantState, waitFor } from '@feedlyai/test-helpers';

/**
 * Every migration set the tests need, applied once per run to the template: the engine's and the
 * stage server's (the job page shows its results; a test-only dependency).
 */
export async function migrateAll(url: string): Promise<void> {
  await migrate(url);
  await migrate(url, { set: STAGE_MIGRATION_SET });
}

export async function testDb(): Promise<TestDatabase> {
  return await createTestDatabase({ migrate: migrateAll, template: 'dashboard', poolMax: 10 });
}

export interface TestApp {
  app: FastifyInstance;
  logs: Array<Record<string, unknown>>;
}

/** A host with the dashboard at /pipeline, ready; pino logs captured as objects. */
export async function buildApp(options: DashboardOptions, ready = true): Promise<TestApp> {
  const logs: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line));
      cb();
    },
  });
  const app = Fastify({ logger: { level: 'info', stream } });
  await app.register(dashboard, { prefix: '/pipeline', env: {}, ...options });
  if (ready) await app.ready();
  return { app, logs };
}

/** The CSRF cookie and a token for it, as a page hands them to the browser. */
export async function csrf(app: FastifyInstance): Promise<{ cookie: string; token: string }> {
  const res = await app.inject({ method: 'GET', url: '/pipeline/' });
  const set = res.cookies.find((c) => c.name === 'pipeline_dashboard_csrf');
  const m = /x-csrf-token&quot;:&quot;([^&]+)&quot;/.exec(res.body);
  if (!set || !m) throw new Error(`no CSRF cookie or token on the jobs page (status ${res.statusCode})`);
  return { cookie: `${set.name}=${set.value}`, token: m[1] as string };
}
