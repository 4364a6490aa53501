/** The result every chaos scenario returns (printed as JSON; docs/chaos.md). */
import { type ChaosEnv, DURABILITY, failureReasons, type JobProgress } from './env.js';
import { type Verdict, verdict } from './verdict.js';

export const CHAOS_SCENARIOS = ['faults', 'outage', 'rotation', 'backlog'] as const;
export type ChaosScenario = (typeof CHAOS_SCENARIOS)[number];

export interface ChaosResult {
  scenario: ChaosScenario;
  /** PostgreSQL's durability in this run: always the default (fsync on). */
  durability: typeof DURABILITY;
  /** The listener instances are registered with connectionString, stageApiUrl and instanceId only. */
  engineSettings: 'defaults';
  jobs: number;
  variants: number;
  instances: number;
  jobsDone: number;
  jobsFailed: number;
  /** Neither done nor failed when the wait ended. */
  jobsUnfinished: number;
  failureReasons: Record<string, number>;
  /**
   * The timed target: from the scenario's reference moment (last fault, the
   * stage's return, the end of the 401s, the done UPDATE) to the last job done.
   * `ms` is null when not every job is done.
   */
  headline: {
    measure: string;
    ms: number | null;
    targetMs: number;
    lastDoneAfterMs: number | null;
    /** From the reference moment to the first request that reached the stage after it. */
    firstRequestAfterMs: number | null;
  };
  verdict: Verdict;
  /** Answers at the double by HTTP code, all requests. */
  totals: Record<number, number>;
  /** Database errors the double retried. */
  doubleDbRetries: number;
  /** Listener instances that exited without the harness asking (each one a crash of a server). */
  instanceCrashes: { instanceId: string; exit: string; atS: number }[];
  /** What happened when, seconds since the scenario's start. */
  events: { atS: number; what: string }[];
  totalSeconds: number;
  /** The status the instances reported when stopped. */
  instanceStats: Record<string, unknown>[];
  /** Figures of the scenario itself. */
  details: Record<string, unknown>;
}

export async function buildResult(
  env: ChaosEnv,
  o: {
    scenario: ChaosScenario;
    jobIds: readonly string[] | null;
    variants: number;
    instances: number;
    progress: JobProgress;
    measure: string;
    fromEpochMs: number;
    /** When the scenario's clock started (the timeline's 0). */
    startEpochMs: number;
    targetMs: number;
    events: { atS: number; what: string }[];
    details: Record<string, unknown>;
  },
): Promise<Omit<ChaosResult, 'instanceStats' | 'totalSeconds'>> {
  const p = o.progress;
  const lastDoneAfterMs = p.lastDoneAt === null ? null : Math.round(p.lastDoneAt - o.fromEpochMs);
  const first = env.firstArrivalSince(o.fromEpochMs);
  return {
    scenario: o.scenario,
    durability: DURABILITY,
    engineSettings: 'defaults',
    jobs: p.total,
    variants: o.variants,
    instances: o.instances,
    jobsDone: p.done,
    jobsFailed: p.failed,
    jobsUnfinished: p.total - p.done - p.failed,
    failureReasons: await failureReasons(env.admin, o.jobIds),
    headline: {
      measure: o.measure,
      ms: p.done === p.total ? lastDoneAfterMs : null,
      targetMs: o.targetMs,
      lastDoneAfterMs,
      firstRequestAfterMs: first === null ? null : Math.round(first - o.fromEpochMs),
    },
    verdict: await verdict(env.admin, env.double, o.jobIds),
    totals: env.double.totals(),
    doubleDbRetries: env.double.dbRetries(),
    instanceCrashes: env.crashes().map((c) => ({
      instanceId: c.instanceId,
      exit: c.exit,
      atS: Math.round((c.atEpochMs - o.startEpochMs) / 100) / 10,
    })),
    events: o.events,
    details: o.details,
  };
}
