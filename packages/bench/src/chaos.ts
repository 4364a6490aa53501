/**
 * The chaos suite (docs/chaos.md): four scenarios, every engine setting at its
 * default, PostgreSQL at its default durability (fsync on).
 *
 * - faults: connections killed every 2 s, one instance SIGKILLed and replaced,
 *   PostgreSQL restarted, recorded 500s at 2 %;
 * - outage: the stage service down for 7 min (CI: 30 s), back on the same port;
 * - rotation: every stage request answered 401 for 60 s (CI: 10 s);
 * - backlog: 10,000 parked variants, and 100 jobs moved only by recovery.
 *
 * The verdict is counted at the stage double (exactly one 2xx and no 409 per
 * (subject, step)) and in the run log (attempts used: 1, or 2 where the double
 * injected its one recorded 500).
 */
import { type BacklogOptions, runBacklog } from './chaos/backlog.js';
import { type FaultsOptions, runFaults } from './chaos/faults.js';
import { type InterruptionOptions, runInterruption } from './chaos/interruption.js';
import { CHAOS_SCENARIOS, type ChaosResult, type ChaosScenario } from './chaos/result.js';

export { DURABILITY } from './chaos/env.js';
export type { BacklogOptions, FaultsOptions, InterruptionOptions };
export { CHAOS_SCENARIOS, type ChaosResult, type ChaosScenario };

export type ChaosOptions =
  | ({ scenario: 'faults' } & FaultsOptions)
  | ({ scenario: 'outage' } & InterruptionOptions)
  | ({ scenario: 'rotation' } & InterruptionOptions)
  | ({ scenario: 'backlog' } & BacklogOptions);

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  switch (o.scenario) {
    case 'faults':
      return await runFaults(o);
    case 'outage':
    case 'rotation':
      return await runInterruption(o.scenario, o);
    case 'backlog':
      return await runBacklog(o);
  }
}

/**
 * The sizes of a scenario: full (`CHAOS_FULL=1`) or the CI run. CI runs are
 * smaller (fewer jobs, shorter outage and rotation) but every engine timer is
 * the same: the engine runs at its defaults in both.
 */
export function chaosSizes(scenario: ChaosScenario, full: boolean): ChaosOptions {
  switch (scenario) {
    case 'faults':
      return {
        scenario,
        jobs: full ? 500 : 40,
        variants: 3,
        instances: 4,
        latencyMs: [0, 50],
        failureRate: 0.02,
        feedSeconds: full ? 40 : 10,
        killEveryMs: 2_000,
        sigkillAtMs: full ? 9_000 : 3_000,
        pgRestartAtMs: full ? 21_000 : 6_000,
        targetMs: 15_000,
        settleMs: full ? 300_000 : 60_000,
      };
    case 'outage':
    case 'rotation':
      return {
        scenario,
        jobs: full ? 40 : 20,
        variants: 3,
        instances: 2,
        latencyMs: [0, 50],
        // CI: 10 s still spans the breaker's whole probe schedule (0.5 s doubling to its 5-s cap).
        durationMs: scenario === 'outage' ? (full ? 420_000 : 10_000) : full ? 60_000 : 10_000,
        startAfterOk: full ? 40 : 20,
        targetMs: 10_000,
        settleMs: full ? 180_000 : 60_000,
      };
    case 'backlog':
      return {
        scenario,
        parked: 10_000,
        jobs: full ? 100 : 40,
        variants: 3,
        instances: 2,
        // One recovery interval (the default, 60 s) + 15 s.
        targetMs: 75_000,
        settleMs: 120_000,
      };
  }
}

/** The scenarios named in a comma-separated list (e.g. CHAOS_SCENARIO); all when empty. */
export function parseScenarios(list: string | undefined): ChaosScenario[] {
  if (!list?.trim()) return [...CHAOS_SCENARIOS];
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!(CHAOS_SCENARIOS as readonly string[]).includes(n)) {
      throw new Error(`unknown chaos scenario '${n}' (known: ${CHAOS_SCENARIOS.join(', ')})`);
    }
  }
  return names as ChaosScenario[];
}

/** The result without the instances' own status reports (long), for printing. */
export function summary(r: ChaosResult): Omit<ChaosResult, 'instanceStats'> {
  const { instanceStats: _, ...rest } = r;
  return rest;
}
