// Test database and app builders for the listener plugin (real PostgreSQL from
// the shared harness, imported by path to avoid a package cycle).
import { Writable } from 'node:stream';
import { migrate } from '@feedlyai/pipeline-core';
import Fastify, { type FastifyInstance } from 'fastify';
import { createTestDatabase, type TestDatabase } from '../../test-tools/src/db/harness.js';
import { jobStateListener, type JobStateListenerOptions } from '../src/index.js';

export { jobState, markImgGenDone, seedJob, variantState } from '../../test-tools/src/db/seed.js';
export { waitFor } from '../../test-tools/src/db/harness.js';

export async function testDb(): Promise<TestDatabase> {
  return await createTestDatabase({ migrate: (url) => migrate(url), poolMax: 20 });
}

/** Short timings so tests run fast (still generous against a busy machine). */
export const FAST: JobStateListenerOptions = {
  reconnectDelayMs: 100,
  maxReconnectDelayMs: 1_000,
  recoveryIntervalMs: 500,
  livenessIntervalMs: 500,
  livenessTimeoutMs: 2_000,
  closeGraceMs: 2_000,
  env: {},
};

export interface TestApp {
  app: FastifyInstance;
  logs: Array<Record<string, unknown>>;
}

/** A Fastify host with the plugin registered and ready; pino logs captured as objects. */
export async function buildApp(options: JobStateListenerOptions, ready = true): Promise<TestApp> {
  const logs: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) {
        if (line.trim()) logs.push(JSON.parse(line));
      }
      cb();
    },
  });
  const app = Fastify({ logger: { level: 'debug', stream } });
  await app.register(jobStateListener, { ...FAST, ...options });
  if (ready) await app.ready();
  return { app, logs };
}

/** `n` plugin instances (ids `${prefix}-0`...), closed at the end of the test. */
export async function buildApps(
  t: { teardown(fn: () => unknown): void },
  n: number,
  prefix: string,
  options: JobStateListenerOptions,
): Promise<FastifyInstance[]> {
  const apps: FastifyInstance[] = [];
  for (let i = 0; i < n; i++) {
    const { app } = await buildApp({ ...options, instanceId: `${prefix}-${i}` });
    t.teardown(() => app.close());
    apps.push(app);
  }
  return apps;
}

/** Counts of stage requests per (subject, step). */
export function countBy<T>(items: T[], key: (t: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const i of items) m.set(key(i), (m.get(key(i)) ?? 0) + 1);
  return m;
}

/** The job reached ('instagram_feed_gen','done') (one read, so no torn state). */
export async function isJobDone(pool: TestDatabase['pool'], jobId: string): Promise<boolean> {
  const r = await pool.query(
    `SELECT 1 FROM jobs WHERE job_id = $1 AND current_step = 'instagram_feed_gen' AND status = 'done'`,
    [jobId],
  );
  return r.rowCount === 1;
}
