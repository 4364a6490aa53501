// Test database and app builders for the listener plugin: a database of its
// own per test file, made from the run's migrated template (docs/testing.md).
import { Writable } from 'node:stream';
import { migrate } from '@feedlyai/pipeline-core';
import { createTestDatabase, type TestDatabase } from '@feedlyai/test-helpers';
import Fastify, { type FastifyInstance } from 'fastify';
import { jobStateListener, type JobStateListenerOptions } from '../src/index.js';

export { jobState, markImgGenDone, type SeededJob, seedJob, variantState, waitFor } from '@feedlyai/test-helpers';

/** Every migration set the tests need, applied once per run to the template. */
export async function migrateAll(url: string): Promise<void> {
  await migrate(url);
}

export async function testDb(): Promise<TestDatabase> {
  return await createTestDatabase({ migrate: migrateAll, template: 'pipeline', poolMax: 20 });
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

/** A stream for Fastify's `logger.stream` that keeps each pino line as an object in `logs`. */
export function captureLogs(): { logs: Array<Record<string, unknown>>; stream: Writable } {
  const logs: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) {
        if (line.trim()) logs.push(JSON.parse(line));
      }
      cb();
    },
  });
  return { logs, stream };
}

/** A Fastify host with the plugin registered and ready; pino logs captured as objects. */
export async function buildApp(options: JobStateListenerOptions, ready = true): Promise<TestApp> {
  const { logs, stream } = captureLogs();
  const app = Fastify({ logger: { level: 'debug', stream } });
  await app.register(jobStateListener, { ...FAST, ...options });
  if (ready) await app.ready();
  return { app, logs };
}

/** `n` plugin instances (ids `${prefix}-0`...), closed at the end of the test; `logs[i]` are instance i's lines. */
export async function buildApps(
  t: { teardown(fn: () => unknown): void },
  n: number,
  prefix: string,
  options: JobStateListenerOptions,
  logs: Array<Array<Record<string, unknown>>> = [],
): Promise<FastifyInstance[]> {
  const apps: FastifyInstance[] = [];
  for (let i = 0; i < n; i++) {
    const built = await buildApp({ ...options, instanceId: `${prefix}-${i}` });
    t.teardown(() => built.app.close());
    apps.push(built.app);
    logs.push(built.logs);
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
