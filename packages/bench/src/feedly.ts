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

/**
 * The environment variables that change the plugin's settings
 * (`JOB_STATE_LISTENER_*`, `PIPELINE_*`, `STAGE_API_*`, `ENABLE_JOB_STATE_LISTENER`):
 * unset in every instance, so that what a benchmark does not pass is at its
 * default whatever the shell running it has set.
 */
const ENGINE_ENV = /^(JOB_STATE_LISTENER_|PIPELINE_|STAGE_API_|ENABLE_JOB_STATE_LISTENER$)/;

export function startFeedlyInstance(cfg: ListenerRunnerConfig): Promise<Forked> {
  const env: NodeJS.ProcessEnv = {};
  for (const key of Object.keys(process.env)) if (ENGINE_ENV.test(key)) env[key] = undefined;
  return forkChild(siblingModule(import.meta.url, 'listener-runner'), cfg, {
    env,
    execArgv: process.env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [],
  });
}

export async function startFeedlyInstances(n: number, o: FeedlyOptions): Promise<Forked[]> {
  return await Promise.all(
    Array.from({ length: n }, (_, i) => startFeedlyInstance({ ...o, instanceId: `${o.idPrefix ?? 'bench'}-${i + 1}` })),
  );
}
