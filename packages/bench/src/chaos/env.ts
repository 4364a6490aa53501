/**
 * What every chaos scenario runs on (docs/chaos.md): a durable embedded
 * PostgreSQL (default fsync / synchronous_commit / full_page_writes) that
 * survives a restart on the same port, the stage double, and listener
 * instances in their own processes registered with nothing but
 * `connectionString`, `stageApiUrl` and `instanceId`: every engine setting at
 * its default.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LISTENER_APPLICATION_NAME, migrate } from '@feedlyai/pipeline-core';
import { type EmbeddedServer, startEmbeddedPostgres } from '@feedlyai/test-tools/db';
import pg from 'pg';
import type { Forked } from '../child.js';
import { startFeedlyInstance } from '../feedly.js';
import { type StageDouble, type StageDoubleOptions, startStageDouble } from '../stage-double.js';

export { DURABILITY } from '../db.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface ChaosDatabase {
  url: string;
  server: EmbeddedServer;
  /** Stop and start PostgreSQL (same port, same data). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A durable embedded cluster whose data folder survives `restart()`
 * (persistent), removed by `close()`.
 */
export async function chaosDatabase(): Promise<ChaosDatabase> {
  const parent = await mkdtemp(join(tmpdir(), 'feedly-chaos-'));
  await chmod(parent, 0o755);
  const server = await startEmbeddedPostgres({ dataDir: join(parent, 'data'), persistent: true, durable: true });
  try {
    await server.createDatabase('chaos');
    const url = server.url('chaos');
    await migrate(url);
    return {
      url,
      server,
      restart: () => server.restart(),
      close: async () => {
        await server.stop();
        await rm(parent, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await server.stop().catch(() => {});
    await rm(parent, { recursive: true, force: true });
    throw err;
  }
}

export interface ChaosEnvOptions {
  scenario: string;
  instances: number;
  double: Omit<StageDoubleOptions, 'connectionString'>;
  log: (line: string) => void;
  /** The listeners' own log (pino, JSON lines on stderr) at this level; silent by default. */
  listenerLogLevel?: string;
}

export interface ChaosEnv {
  db: ChaosDatabase;
  /** A small pool of the harness's own (seeding, faults, probes). */
  admin: pg.Pool;
  double: StageDouble;
  /** The instances; null where one was SIGKILLed and not yet replaced. */
  instances: (Forked | null)[];
  /** Starts an instance at defaults with this id. */
  startInstance(instanceId: string): Promise<Forked>;
  /** Marks an instance as about to be killed or stopped by the harness (its exit is not a crash). */
  expectExit(inst: Forked): void;
  /** Instances that exited without the harness asking (a crash), with their exit code or signal. */
  crashes(): { instanceId: string; exit: string; atEpochMs: number }[];
  /** `performance.now()` of the last request that reached the double. */
  lastArrival(): number;
  /** Epoch ms of the first request that reached the double at or after `epochMs` (null: none). */
  firstArrivalSince(epochMs: number): number | null;
  /** Stops every instance gracefully (their run-log writes flushed); resolves with the status each reported. */
  stopInstances(): Promise<Record<string, unknown>[]>;
  /** Kills what is left of the instances, closes the double, the pool and the database. Safe to call twice. */
  close(): Promise<void>;
}

export async function chaosEnv(o: ChaosEnvOptions): Promise<ChaosEnv> {
  const db = await chaosDatabase();
  const admin = new pg.Pool({ connectionString: db.url, max: 3 });
  admin.on('error', () => {}); // connections killed by the restart must not crash the harness
  let last = performance.now();
  /** Epoch ms of every arrival, in order. */
  const arrivals: number[] = [];
  let double: StageDouble;
  try {
    double = await startStageDouble({
      ...o.double,
      connectionString: db.url,
      onArrival: (a) => {
        last = performance.now();
        arrivals.push(Date.now());
        o.double.onArrival?.(a);
      },
    });
  } catch (err) {
    await admin.end().catch(() => {});
    await db.close();
    throw err;
  }
  const instances: (Forked | null)[] = [];
  const expected = new WeakSet<Forked>();
  const crashes: { instanceId: string; exit: string; atEpochMs: number }[] = [];
  const startInstance = async (instanceId: string) => {
    const inst = await startFeedlyInstance({
      connectionString: db.url,
      stageUrl: double.url,
      instanceId,
      ...(o.listenerLogLevel ? { logLevel: o.listenerLogLevel } : {}),
    });
    void inst.exited.then((code) => {
      if (expected.has(inst)) return;
      const exit = code === null ? `signal ${inst.child.signalCode}` : `code ${code}`;
      crashes.push({ instanceId, exit, atEpochMs: Date.now() });
      o.log(`instance ${instanceId} exited on its own (${exit})`);
    });
    return inst;
  };
  let closed = false;
  const env: ChaosEnv = {
    db,
    admin,
    double,
    instances,
    startInstance,
    expectExit: (inst) => expected.add(inst),
    crashes: () => [...crashes],
    lastArrival: () => last,
    firstArrivalSince: (epochMs) => {
      // Arrivals are in time order: binary search for the first one at or after epochMs.
      let lo = 0;
      let hi = arrivals.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((arrivals[mid] as number) < epochMs) lo = mid + 1;
        else hi = mid;
      }
      return lo < arrivals.length ? (arrivals[lo] as number) : null;
    },
    stopInstances: async () => {
      const stats: Record<string, unknown>[] = [];
      await Promise.all(
        instances.map(async (inst) => {
          if (inst) expected.add(inst);
          const s = await inst?.stop().catch(() => undefined);
          if (s) stats.push(s);
        }),
      );
      instances.length = 0;
      return stats;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await Promise.all(
        instances.map((inst) => {
          if (inst) expected.add(inst);
          return inst?.kill();
        }),
      );
      instances.length = 0;
      await double.close();
      await admin.end().catch(() => {});
      await db.close();
    },
  };
  if (o.instances === 0) return env;
  try {
    const started = await Promise.all(
      Array.from({ length: o.instances }, (_, i) => startInstance(`chaos-${o.scenario}-${i + 1}`)),
    );
    instances.push(...started);
  } catch (err) {
    await env.close().catch(() => {});
    throw err;
  }
  return env;
}

/** Kills every listener connection (application_name job_state_listener); returns how many. */
export async function killListenerConnections(admin: pg.Pool): Promise<number> {
  const r = await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE application_name = $1 AND pid <> pg_backend_pid()`,
    [LISTENER_APPLICATION_NAME],
  );
  return r.rowCount ?? 0;
}

/** Listener connections that exist now. */
export async function listenerConnections(admin: pg.Pool): Promise<number> {
  const r = await admin.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
    [LISTENER_APPLICATION_NAME],
  );
  return r.rows[0]?.n ?? 0;
}

/** Retries `fn` (the database restarting) until `deadline` (epoch ms). */
export async function retrying<T>(fn: () => Promise<T>, deadline: number): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

export interface JobProgress {
  total: number;
  done: number;
  failed: number;
  /** Epoch ms of the last completed_at among these jobs (null: none done). */
  lastDoneAt: number | null;
}

/** Progress of these jobs (or of every job when `jobIds` is null). */
export async function jobProgress(admin: pg.Pool, jobIds: readonly string[] | null): Promise<JobProgress> {
  const r = await admin.query<{ total: number; done: number; failed: number; last: number | null }>(
    `/* chaos_probe */ SELECT count(*)::int AS total,
            count(*) FILTER (WHERE current_step = 'instagram_feed_gen' AND status = 'done')::int AS done,
            count(*) FILTER (WHERE failure_reason IS NOT NULL)::int AS failed,
            extract(epoch FROM max(completed_at)) * 1000 AS last
       FROM jobs WHERE $1::uuid[] IS NULL OR job_id = ANY($1::uuid[])`,
    [jobIds],
  );
  const row = r.rows[0];
  return {
    total: row?.total ?? 0,
    done: row?.done ?? 0,
    failed: row?.failed ?? 0,
    lastDoneAt: row?.last === null || row?.last === undefined ? null : Number(row.last),
  };
}

/**
 * Waits until every one of these jobs is done or failed for good, or `until`
 * (epoch ms) passes. Reports progress every 5 s.
 */
export async function waitForJobs(
  env: ChaosEnv,
  jobIds: readonly string[] | null,
  until: number,
  log: (line: string) => void,
): Promise<JobProgress> {
  let p: JobProgress = { total: jobIds?.length ?? 0, done: 0, failed: 0, lastDoneAt: null };
  let lastLog = Date.now();
  for (;;) {
    p = await jobProgress(env.admin, jobIds).catch(() => p);
    if (p.total > 0 && p.done + p.failed >= p.total) return p;
    if (Date.now() > until) return p;
    if (Date.now() - lastLog >= 5_000) {
      lastLog = Date.now();
      log(`${p.done}/${p.total} jobs done, ${p.failed} failed`);
    }
    await sleep(250);
  }
}

/** Waits until the double has had no request for `quietMs` (late duplicates would arrive now), at most `maxMs`. */
export async function waitForQuiet(env: ChaosEnv, quietMs = 1_500, maxMs = 15_000): Promise<void> {
  const until = Date.now() + maxMs;
  while (performance.now() - env.lastArrival() < quietMs && Date.now() < until) await sleep(100);
}

/** Failure reasons of the jobs that failed for good, counted. */
export async function failureReasons(
  admin: pg.Pool,
  jobIds: readonly string[] | null,
): Promise<Record<string, number>> {
  const r = await admin.query<{ reason: string; n: number }>(
    `SELECT left(failure_reason, 120) AS reason, count(*)::int AS n FROM jobs
      WHERE failure_reason IS NOT NULL AND ($1::uuid[] IS NULL OR job_id = ANY($1::uuid[]))
      GROUP BY 1 ORDER BY 2 DESC LIMIT 20`,
    [jobIds],
  );
  return Object.fromEntries(r.rows.map((x) => [x.reason, x.n]));
}
