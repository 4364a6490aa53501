/**
 * Plugin configuration: the options object (validated with zod; an invalid
 * option fails registration with a message naming it) over the environment
 * variables of CONTRACTS, over the defaults.
 */
import { databaseUrlFromEnv, isStep, type StepPolicyOverrides } from '@feedlyai/pipeline-core';
import { z } from 'zod';

const positiveSeconds = z.number().positive().finite();

const retryOverride = z
  .object({
    maxAttempts: z.number().int().min(1).optional(),
    backoffBaseMs: z.number().int().min(0).optional(),
    backoffMaxMs: z.number().int().min(0).optional(),
  })
  .strict();

const stepOverride = z
  .object({
    timeoutMs: z.number().int().positive().optional(),
    rescueAfterMs: z.number().int().positive().optional(),
    retry: retryOverride.optional(),
  })
  .strict();

export const listenerOptionsSchema = z
  .object({
    /** ENABLE_JOB_STATE_LISTENER (default true). */
    enabled: z.boolean().optional(),
    /** DATABASE_URL / DB_* otherwise; or the host's @fastify/postgres pool. */
    connectionString: z.string().min(1).optional(),
    /** JOB_STATE_LISTENER_RECONNECT_DELAY, seconds (fractions allowed), default 5. */
    reconnectDelay: positiveSeconds.optional(),
    /** Cap of the exponential reconnect backoff after repeated failures, seconds (default 60). */
    maxReconnectDelay: positiveSeconds.optional(),
    /** JOB_STATE_LISTENER_RECOVERY_INTERVAL, seconds (fractions allowed), default 60. */
    recoveryInterval: positiveSeconds.optional(),
    /** JOB_STATE_LISTENER_RECOVERY_WINDOW, hours, default 24. */
    recoveryWindow: positiveSeconds.optional(),
    /** PIPELINE_FANIN_POLICY, default 'all'. */
    fanInPolicy: z.enum(['all', 'any']).optional(),
    /** STAGE_API_URL, default http://localhost:8011. */
    stageApiUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** STAGE_API_TOKEN; sent as a bearer token when set. */
    stageApiToken: z.string().min(1).optional(),
    /** Per-step timeout / rescue / retry policy. */
    stepOverrides: z.record(z.string(), stepOverride).optional(),
    /** Bound on stage calls in flight (default 64). */
    maxInFlight: z.number().int().min(1).max(10_000).optional(),
    /** Written on every dispatch log row (default host:pid:random). */
    instanceId: z.string().min(1).max(200).optional(),
    /** How often the LISTEN connection is checked with SELECT 1 (default 5000 ms). */
    livenessIntervalMs: z.number().int().min(50).optional(),
    /** How long that check may take before the connection is treated as dead (default 3000 ms). */
    livenessTimeoutMs: z.number().int().min(10).optional(),
    /** How long close() lets in-flight stage calls finish (default 10000 ms). */
    closeGraceMs: z.number().int().min(0).optional(),
    /**
     * Several instances: how long an instance that does not own a subject waits before
     * claiming it itself (the owner claims at once). 0 = every instance claims at once.
     * Default 2000 ms.
     */
    claimDelayMs: z.number().int().min(0).max(60_000).optional(),
    /** Size of the pool the plugin opens when the host has no @fastify/postgres (default 10). */
    poolMax: z.number().int().min(1).optional(),
    /** Environment to read instead of process.env (tests). */
    env: z.record(z.string(), z.string().optional()).optional(),
  })
  .strict();

export type JobStateListenerOptions = z.input<typeof listenerOptionsSchema>;

export interface ResolvedConfig {
  enabled: boolean;
  connectionString: string | undefined;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  recoveryIntervalMs: number;
  recoveryWindowHours: number;
  fanInPolicy: 'all' | 'any';
  stageApiUrl: string;
  stageApiToken: string | undefined;
  stepOverrides: StepPolicyOverrides;
  maxInFlight: number;
  instanceId: string | undefined;
  livenessIntervalMs: number;
  livenessTimeoutMs: number;
  closeGraceMs: number;
  poolMax: number;
  claimDelayMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function envBool(env: Record<string, string | undefined>, name: string, dflt: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(raw)}`);
}

function envNumber(env: Record<string, string | undefined>, name: string, dflt: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    throw new ConfigError(`${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return n;
}

/** Validates the options and merges them over the environment. Throws ConfigError naming the bad option. */
export function resolveConfig(options: unknown): ResolvedConfig {
  const parsed = listenerOptionsSchema.safeParse(options ?? {});
  if (!parsed.success) {
    const msg = parsed.error.issues
      .map((i) => {
        const path = i.path.join('.');
        return i.code === 'unrecognized_keys'
          ? `unknown option(s): ${i.keys.join(', ')}`
          : `option ${path}: ${i.message}`;
      })
      .join('; ');
    throw new ConfigError(`@feedlyai/listener-plugin: invalid options: ${msg}`);
  }
  const o = parsed.data;
  const env = o.env ?? process.env;
  for (const step of Object.keys(o.stepOverrides ?? {})) {
    if (!isStep(step)) throw new ConfigError(`@feedlyai/listener-plugin: option stepOverrides: unknown step ${step}`);
  }
  try {
    const policyEnv = env.PIPELINE_FANIN_POLICY?.trim();
    if (policyEnv && policyEnv !== 'all' && policyEnv !== 'any') {
      throw new ConfigError(`PIPELINE_FANIN_POLICY must be 'all' or 'any', got ${JSON.stringify(policyEnv)}`);
    }
    const stageApiUrl = o.stageApiUrl ?? (env.STAGE_API_URL?.trim() || 'http://localhost:8011');
    try {
      new URL(stageApiUrl);
    } catch {
      throw new ConfigError(`STAGE_API_URL is not a URL: ${JSON.stringify(stageApiUrl)}`);
    }
    return {
      enabled: o.enabled ?? envBool(env, 'ENABLE_JOB_STATE_LISTENER', true),
      connectionString: o.connectionString ?? databaseUrlFromEnv(env as NodeJS.ProcessEnv),
      reconnectDelayMs: Math.round(
        (o.reconnectDelay ?? envNumber(env, 'JOB_STATE_LISTENER_RECONNECT_DELAY', 5)) * 1000,
      ),
      maxReconnectDelayMs: Math.round((o.maxReconnectDelay ?? 60) * 1000),
      recoveryIntervalMs: Math.round(
        (o.recoveryInterval ?? envNumber(env, 'JOB_STATE_LISTENER_RECOVERY_INTERVAL', 60)) * 1000,
      ),
      recoveryWindowHours: o.recoveryWindow ?? envNumber(env, 'JOB_STATE_LISTENER_RECOVERY_WINDOW', 24),
      fanInPolicy: o.fanInPolicy ?? ((policyEnv as 'all' | 'any' | undefined) || 'all'),
      stageApiUrl,
      stageApiToken: o.stageApiToken ?? (env.STAGE_API_TOKEN?.trim() || undefined),
      stepOverrides: (o.stepOverrides ?? {}) as StepPolicyOverrides,
      maxInFlight: o.maxInFlight ?? 64,
      instanceId: o.instanceId,
      livenessIntervalMs: o.livenessIntervalMs ?? 5_000,
      livenessTimeoutMs: o.livenessTimeoutMs ?? 3_000,
      closeGraceMs: o.closeGraceMs ?? 10_000,
      poolMax: o.poolMax ?? 10,
      claimDelayMs: o.claimDelayMs ?? 2000,
    };
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`@feedlyai/listener-plugin: ${err.message}`);
    throw err;
  }
}
