/**
 * Scenario `faults` (docs/chaos.md): N jobs x V variants through the whole
 * chain with several listener instances at default settings, the stage
 * double with random latency and recorded 500s (at most one per pair), while
 * the harness
 * - kills every listener connection (pg_terminate_backend, application_name
 *   job_state_listener) every `killEveryMs`,
 * - SIGKILLs one instance and starts a new one in its place with a new
 *   instance id (a new pod),
 * - restarts PostgreSQL once (same port, same data).
 * The variants are made (img_gen,'done') in batches over a feed window, so the
 * faults hit a busy pipeline. Headline: from the end of the last fault to the
 * last job done.
 */
import { performance } from 'node:perf_hooks';
import { bulkSeed } from '../seed.js';
import { round } from '../stats.js';
import { chaosEnv, killListenerConnections, retrying, sleep, waitForJobs, waitForQuiet } from './env.js';
import { buildResult, type ChaosResult } from './result.js';

export interface CommonChaosOptions {
  /** How long to wait for every job after the reference moment before the verdict is taken. */
  settleMs: number;
  random?: () => number;
  log?: (line: string) => void;
  /** The listeners' own log (pino, JSON lines on stderr) at this level; silent by default. */
  listenerLogLevel?: string;
}

export interface FaultsOptions extends CommonChaosOptions {
  jobs: number;
  variants: number;
  instances: number;
  latencyMs: readonly [number, number];
  failureRate: number;
  /** The variants are made (img_gen,'done') in batches over this window. */
  feedSeconds: number;
  killEveryMs: number;
  /** When (ms after the start) one instance is SIGKILLed and replaced. */
  sigkillAtMs: number;
  /** When (ms after the start) PostgreSQL is restarted. */
  pgRestartAtMs: number;
  /** The headline's target, printed (not asserted): last fault to last job done. */
  targetMs: number;
}

/** A timeline of what the harness did, in seconds since `t0`. */
export function timeline(t0: number, log: (line: string) => void) {
  const events: { atS: number; what: string }[] = [];
  const at = () => round((performance.now() - t0) / 1000, 1);
  return {
    events,
    /** Recorded in the result's timeline and logged. */
    event(what: string) {
      const atS = at();
      events.push({ atS, what });
      log(`${what} (${atS} s)`);
    },
    /** Logged only (progress). */
    note(what: string) {
      log(`${what} (${at()} s)`);
    },
  };
}

export async function runFaults(o: FaultsOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const random = o.random ?? Math.random;
  const env = await chaosEnv({
    scenario: 'faults',
    instances: o.instances,
    double: { latencyMs: o.latencyMs, failureRate: o.failureRate, random, poolMax: 30 },
    log,
    ...(o.listenerLogLevel ? { listenerLogLevel: o.listenerLogLevel } : {}),
  });
  try {
    await bulkSeed(env.admin, {
      jobs: o.jobs,
      variantsPerJob: o.variants,
      variantStep: 'img_gen',
      variantStatus: 'queued',
    });
    const { rows } = await env.admin.query<{ id: string }>('SELECT job_variants_id::text AS id FROM jobs_variants');
    const ids = rows.map((r) => r.id);
    for (let i = ids.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [ids[i], ids[j]] = [ids[j] as string, ids[i] as string];
    }

    const t0 = performance.now();
    const startEpochMs = Date.now();
    const elapsed = () => performance.now() - t0;
    const { events, event, note } = timeline(t0, log);
    const hardDeadline = Date.now() + o.feedSeconds * 1000 + o.pgRestartAtMs + o.settleMs + 120_000;
    let lastFaultEnd = Date.now();
    const faults = { connectionKillRounds: 0, connectionsKilled: 0, sigkills: 0, pgRestarts: 0 };
    const restarts: Promise<void>[] = [];
    const faultWindowMs = Math.max(o.feedSeconds * 1000, o.pgRestartAtMs + 1000, o.sigkillAtMs + 1000);

    // The feed: batches of variants made (img_gen,'done') every 250 ms over the feed window.
    const batches = Math.max(1, Math.round((o.feedSeconds * 1000) / 250));
    const per = Math.ceil(ids.length / batches);
    const feed = (async () => {
      for (let b = 0; b * per < ids.length; b++) {
        const slice = ids.slice(b * per, (b + 1) * per);
        await retrying(
          () =>
            env.admin.query(
              `UPDATE jobs_variants SET status = 'done'
                WHERE job_variants_id = ANY($1::uuid[]) AND current_step = 'img_gen' AND status = 'queued'`,
              [slice],
            ),
          hardDeadline,
        );
        const due = (b + 1) * 250 - elapsed();
        if (due > 0) await sleep(due);
      }
      event(`fed ${ids.length} variants`);
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
          const idx = Math.min(1, env.instances.length - 1);
          const victim = env.instances[idx];
          if (!victim) continue;
          env.expectExit(victim);
          await victim.kill();
          faults.sigkills++;
          env.instances[idx] = null;
          lastFaultEnd = Date.now();
          event(`SIGKILLed instance ${idx + 1} (pid ${victim.pid})`);
          // A new pod with a new instance id, started in the background: the other faults go on meanwhile.
          const id = `chaos-faults-${idx + 1}-r1`;
          restarts.push(
            env.startInstance(id).then((fresh) => {
              env.instances[idx] = fresh;
              event(`instance ${id} started in its place`);
            }),
          );
        } else if (f.kind === 'restart') {
          event('restarting PostgreSQL');
          await env.db.restart();
          faults.pgRestarts++;
          lastFaultEnd = Date.now();
          event('PostgreSQL back');
        } else {
          try {
            const n = await killListenerConnections(env.admin);
            faults.connectionKillRounds++;
            faults.connectionsKilled += n;
            lastFaultEnd = Date.now();
          } catch {
            // the server is restarting: this round is skipped
          }
        }
      }
    })();

    await Promise.all([feed, faultLoop]);
    await Promise.all(restarts);
    event(`faults over: ${faults.connectionKillRounds} kill rounds, ${faults.connectionsKilled} connections killed`);
    const progress = await waitForJobs(env, null, lastFaultEnd + o.settleMs, note);
    event(`${progress.done}/${progress.total} jobs done, ${progress.failed} failed`);
    await waitForQuiet(env);
    const instanceStats = await env.stopInstances();
    const result = await buildResult(env, {
      scenario: 'faults',
      jobIds: null,
      variants: o.variants,
      instances: o.instances,
      progress,
      measure: 'last fault to last job done',
      fromEpochMs: lastFaultEnd,
      startEpochMs,
      targetMs: o.targetMs,
      events,
      details: { faults, failureRate: o.failureRate, latencyMs: o.latencyMs, feedSeconds: o.feedSeconds },
    });
    return { ...result, instanceStats, totalSeconds: round(elapsed() / 1000, 1) };
  } finally {
    await env.close();
  }
}
