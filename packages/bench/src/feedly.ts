/**
 * Our engine's side: listener-plugin instances, each a separate process
 * (`listener-runner`), registered on a bare Fastify with its own pool.
 */
import type { StepPolicyOverrides } from '@feedlyai/pipeline-core';
import { type Forked, forkChild, siblingModule } from './child.js';

export interface ListenerRunnerConfig {
  connectionString: string;
  stageUrl: string;
  instanceId: string;
  /** Seconds (plugin option). */
  reconnectDelay?: number;
  /** Seconds (plugin option). */
  recoveryInterval?: number;
  stepOverrides?: StepPolicyOverrides;
  /** Plugin options maxInFlight and poolMax (defaults 64 and 10). */
  maxInFlight?: number;
  poolMax?: number;
  /** Forward the plugin's log (pino) to stderr at this level; silent by default. */
  logLevel?: string;
}

export type FeedlyOptions = Omit<ListenerRunnerConfig, 'instanceId'> & { idPrefix?: string };

export function startFeedlyInstance(cfg: ListenerRunnerConfig): Promise<Forked> {
  return forkChild(siblingModule(import.meta.url, 'listener-runner'), cfg, {
    execArgv: process.env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [],
  });
}

export async function startFeedlyInstances(n: number, o: FeedlyOptions): Promise<Forked[]> {
  return await Promise.all(
    Array.from({ length: n }, (_, i) => startFeedlyInstance({ ...o, instanceId: `${o.idPrefix ?? 'bench'}-${i + 1}` })),
  );
}
