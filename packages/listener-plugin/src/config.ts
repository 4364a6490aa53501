/**
 * Plugin configuration (docs/configuration.md): the environment, read in one
 * place (`optionsFromEnv`), under the options the host passes, over the
 * defaults. Every duration option is in milliseconds and named `…Ms`; the
 * older names (seconds, or hours for recoveryWindow) keep working for one
 * release with a deprecation warning. An invalid option or variable fails
 * registration with a message naming it.
 */
import {
  AUTOMATIC_STEPS,
  databaseUrlFromEnv,
  isStep,
  type Step,
  type StepPolicyOverrides,
} from '@feedlyai/pipeline-core';
import { z } from 'zod';

const positiveMs = z.number().int().positive();

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
    /** Calls of this step in flight, at most (default: only maxInFlight bounds it). */
    maxInFlight: z.number().int().min(1).max(10_000).optional(),
    retry: retryOverride.optional(),
  })
  .strict();

export const listenerOptionsSchema = z
  .object({
    /** ENABLE_JOB_STATE_LISTENER (default true). */
    enabled: z.boolean().optional(),
    /** The database (docs/integration.md): DATABASE_URL / DB_* otherwise, after the host's @fastify/postgres pool. */
    connectionString: z.string().min(1).optional(),
    /**
     * The host's own pg.Pool (any copy of `pg`): the plugin dispatches on it and checks ONE
     * client out of it for the LISTEN connection. Only its public connect() and query() are used.
     */
    pool: z
      .custom<PoolLike>(isPoolLike, { message: 'must be a pg.Pool (an object with connect() and query())' })
      .optional(),
    /** Use the @fastify/postgres registration of this name (`fastify.pg[pgName]`) instead of the default one. */
    pgName: z.string().min(1).optional(),
    /** JOB_STATE_LISTENER_RECONNECT_DELAY (seconds) otherwise; default 5,000 ms. */
    reconnectDelayMs: positiveMs.optional(),
    /** Cap of the exponential reconnect backoff after repeated failures (default 60,000 ms). */
    maxReconnectDelayMs: positiveMs.optional(),
    /** JOB_STATE_LISTENER_RECOVERY_INTERVAL (seconds) otherwise; default 60,000 ms. */
    recoveryIntervalMs: positiveMs.optional(),
    /** JOB_STATE_LISTENER_RECOVERY_WINDOW (hours) otherwise; default 24 h. */
    recoveryWindowMs: positiveMs.optional(),
    /**
     * An instance none of whose LISTEN connections has existed for this long
     * (database clock) is dead, and its queued steps are re-dispatched.
     * Default: the reconnect delay + 5,000 ms.
     */
    deadAfterMs: z.number().int().min(100).optional(),
    /** PIPELINE_FANIN_POLICY, default 'all'. */
    fanInPolicy: z.enum(['all', 'any']).optional(),
    /** STAGE_API_URL, default http://localhost:8011. */
    stageApiUrl: z.url({ protocol: /^https?$/ }).optional(),
    /**
     * STAGE_API_URLS (`vlm_analyze=http://gpu:8011,vlm_judge=http://gpu:8011`): a base URL per
     * step; steps not named use stageApiUrl (docs/deployment.md).
     */
    stageUrls: z.record(z.string(), z.url({ protocol: /^https?$/ })).optional(),
    /** Calls in flight per stage base URL, at most (keyed by the URL as written in stageUrls / stageApiUrl). */
    maxInFlightPerUrl: z.record(z.string(), z.number().int().min(1).max(10_000)).optional(),
    /** STAGE_API_TOKEN; sent as a bearer token when set. */
    stageApiToken: z.string().min(1).optional(),
    /** Per-step timeout / rescue / retry policy. */
    stepOverrides: z.record(z.string(), stepOverride).optional(),
    /** PIPELINE_MAX_IN_FLIGHT: bound on stage calls in flight, waits included (default 64). */
    maxInFlight: z.number().int().min(1).max(10_000).optional(),
    /** PIPELINE_INSTANCE_ID: written on every claimed row (default host:pid:random). */
    instanceId: z.string().min(1).max(200).optional(),
    /** How often the LISTEN connection is checked, and instances' liveness read (default 5,000 ms). */
    livenessIntervalMs: z.number().int().min(50).optional(),
    /** How long that check may take before the connection is treated as dead (default 3,000 ms). */
    livenessTimeoutMs: z.number().int().min(10).optional(),
    /** How long close() lets calls already at a stage finish (default 10,000 ms). */
    closeGraceMs: z.number().int().min(0).optional(),
    /**
     * Several instances: how long an instance that does not own a subject waits before
     * claiming it itself (the owner claims at once). 0 = every instance claims at once.
     * Default 2,000 ms.
     */
    claimDelayMs: z.number().int().min(0).max(60_000).optional(),
    /**
     * The claims run as named prepared statements (default true). Set false behind a connection
     * pooler in transaction mode that cannot keep prepared statements (PgBouncer before 1.21).
     */
    preparedStatements: z.boolean().optional(),
    /** Size of the pool the plugin opens when the host has no @fastify/postgres (default 10). */
    poolMax: z.number().int().min(1).optional(),
    /** A prom-client Registry to register the engine's metrics in (docs/metrics.md). */
    metricsRegistry: z
      .custom<import('prom-client').Registry>(
        (v) => typeof v === 'object' && v !== null && typeof (v as { metrics?: unknown }).metrics === 'function',
        { message: 'must be a prom-client Registry' },
      )
      .optional(),
    /** Environment to read instead of process.env (tests). */
    env: z.record(z.string(), z.string().optional()).optional(),
    /** Deprecated: reconnectDelayMs (this one is in seconds). */
    reconnectDelay: z.number().positive().finite().optional(),
    /** Deprecated: maxReconnectDelayMs (this one is in seconds). */
    maxReconnectDelay: z.number().positive().finite().optional(),
    /** Deprecated: recoveryIntervalMs (this one is in seconds). */
    recoveryInterval: z.number().positive().finite().optional(),
    /** Deprecated: recoveryWindowMs (this one is in hours). */
    recoveryWindow: z.number().positive().finite().optional(),
  })
  .strict();

export type JobStateListenerOptions = z.input<typeof listenerOptionsSchema>;

/**
 * What the plugin uses of a host's pool: pg.Pool's public `connect()` (a client with
 * `query`, `on` and `release`) and `query()`, whichever copy of `pg` made it.
 */
export interface PoolLike {
  connect(): Promise<import('pg').PoolClient>;
  query: import('pg').Pool['query'];
}

export function isPoolLike(v: unknown): v is PoolLike {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as PoolLike).connect === 'function' &&
    typeof (v as PoolLike).query === 'function'
  );
}

/** The options the environment gives (new names only). */
export type EnvOptions = Pick<
  JobStateListenerOptions,
  | 'enabled'
  | 'connectionString'
  | 'reconnectDelayMs'
  | 'recoveryIntervalMs'
  | 'recoveryWindowMs'
  | 'fanInPolicy'
  | 'stageApiUrl'
  | 'stageApiToken'
  | 'instanceId'
  | 'maxInFlight'
  | 'stageUrls'
>;

export interface ResolvedConfig {
  enabled: boolean;
  connectionString: string | undefined;
  /** Whether connectionString is the option (it then wins over a host's @fastify/postgres pool). */
  connectionStringFromOption: boolean;
  pool: PoolLike | undefined;
  pgName: string | undefined;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  recoveryIntervalMs: number;
  recoveryWindowHours: number;
  deadAfterMs: number;
  fanInPolicy: 'all' | 'any';
  stageApiUrl: string;
  stageApiToken: string | undefined;
  stageUrls: Partial<Record<Step, string>>;
  maxInFlightPerUrl: Record<string, number>;
  stepOverrides: StepPolicyOverrides;
  maxInFlight: number;
  instanceId: string | undefined;
  livenessIntervalMs: number;
  livenessTimeoutMs: number;
  closeGraceMs: number;
  poolMax: number;
  claimDelayMs: number;
  preparedStatements: boolean;
  metricsRegistry: import('prom-client').Registry | undefined;
  /** Deprecation warnings to log at registration (old option names used). */
  deprecations: string[];
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function envBool(env: Env, name: string): boolean | undefined {
  const v = raw(env, name);
  if (v === undefined) return undefined;
  const l = v.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(l)) return true;
  if (['false', '0', 'no', 'off'].includes(l)) return false;
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(env[name])}`);
}

/** A positive number of `unit`s in the variable, as milliseconds. */
function envDurationMs(env: Env, name: string, unitMs: number): number | undefined {
  const v = raw(env, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    throw new ConfigError(`${name} must be a positive number, got ${JSON.stringify(env[name])}`);
  }
  return Math.max(1, Math.round(n * unitMs));
}

function envInt(env: Env, name: string, min: number, max: number): number | undefined {
  const v = raw(env, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(env[name])}`);
  }
  return n;
}

/**
 * The plugin's options as the environment gives them (docs/configuration.md).
 * The plugin reads the environment only through this function; options the
 * host passes override what it returns. Throws ConfigError naming the
 * variable when one is invalid.
 */
export function optionsFromEnv(env: Env = process.env): EnvOptions {
  const out: EnvOptions = {};
  const enabled = envBool(env, 'ENABLE_JOB_STATE_LISTENER');
  if (enabled !== undefined) out.enabled = enabled;
  const url = databaseUrlFromEnv(env as NodeJS.ProcessEnv);
  if (url) out.connectionString = url;
  const reconnect = envDurationMs(env, 'JOB_STATE_LISTENER_RECONNECT_DELAY', 1000);
  if (reconnect !== undefined) out.reconnectDelayMs = reconnect;
  const interval = envDurationMs(env, 'JOB_STATE_LISTENER_RECOVERY_INTERVAL', 1000);
  if (interval !== undefined) out.recoveryIntervalMs = interval;
  const window = envDurationMs(env, 'JOB_STATE_LISTENER_RECOVERY_WINDOW', 3_600_000);
  if (window !== undefined) out.recoveryWindowMs = window;
  const policy = raw(env, 'PIPELINE_FANIN_POLICY');
  if (policy !== undefined) {
    if (policy !== 'all' && policy !== 'any') {
      throw new ConfigError(`PIPELINE_FANIN_POLICY must be 'all' or 'any', got ${JSON.stringify(policy)}`);
    }
    out.fanInPolicy = policy;
  }
  const stage = raw(env, 'STAGE_API_URL');
  if (stage !== undefined) {
    let ok = false;
    try {
      ok = /^https?:$/.test(new URL(stage).protocol);
    } catch {
      ok = false;
    }
    if (!ok) throw new ConfigError(`STAGE_API_URL must be an http(s) URL, got ${JSON.stringify(stage)}`);
    out.stageApiUrl = stage;
  }
  const urls = raw(env, 'STAGE_API_URLS');
  if (urls !== undefined) out.stageUrls = parseStageUrls(urls, 'STAGE_API_URLS');
  const token = raw(env, 'STAGE_API_TOKEN');
  if (token !== undefined) out.stageApiToken = token;
  const id = raw(env, 'PIPELINE_INSTANCE_ID');
  if (id !== undefined) {
    if (id.length > 200) throw new ConfigError('PIPELINE_INSTANCE_ID must be at most 200 characters');
    out.instanceId = id;
  }
  const inFlight = envInt(env, 'PIPELINE_MAX_IN_FLIGHT', 1, 10_000);
  if (inFlight !== undefined) out.maxInFlight = inFlight;
  return out;
}

/**
 * `step=url,step=url`: a base URL per step. An unknown step, a step without a
 * stage route, a repeated step or a URL that is not http(s) is an error naming
 * `source` (the variable or option).
 */
export function parseStageUrls(value: string, source: string): Partial<Record<Step, string>> {
  const out: Partial<Record<Step, string>> = {};
  for (const part of value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${source}: expected step=url, got ${JSON.stringify(part)}`);
    const step = part.slice(0, eq).trim();
    const url = part.slice(eq + 1).trim();
    if (!isStep(step) || !AUTOMATIC_STEPS.includes(step)) {
      throw new ConfigError(`${source}: unknown step ${JSON.stringify(step)} (steps: ${AUTOMATIC_STEPS.join(', ')})`);
    }
    if (out[step]) throw new ConfigError(`${source}: step ${step} is given twice`);
    let ok = false;
    try {
      ok = /^https?:$/.test(new URL(url).protocol);
    } catch {
      ok = false;
    }
    if (!ok) throw new ConfigError(`${source}: the URL of ${step} is not an http(s) URL: ${JSON.stringify(url)}`);
    out[step] = url;
  }
  return out;
}

const DEPRECATED: Array<{
  old: 'reconnectDelay' | 'maxReconnectDelay' | 'recoveryInterval' | 'recoveryWindow';
  now: string;
  unitMs: number;
  unit: string;
}> = [
  { old: 'reconnectDelay', now: 'reconnectDelayMs', unitMs: 1000, unit: 'seconds' },
  { old: 'maxReconnectDelay', now: 'maxReconnectDelayMs', unitMs: 1000, unit: 'seconds' },
  { old: 'recoveryInterval', now: 'recoveryIntervalMs', unitMs: 1000, unit: 'seconds' },
  { old: 'recoveryWindow', now: 'recoveryWindowMs', unitMs: 3_600_000, unit: 'hours' },
];

/** Validates the options and merges them over the environment and the defaults. Throws ConfigError naming the bad option. */
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
  const o = { ...parsed.data } as JobStateListenerOptions & Record<string, unknown>;
  for (const step of Object.keys(o.stepOverrides ?? {})) {
    if (!isStep(step)) throw new ConfigError(`@feedlyai/listener-plugin: option stepOverrides: unknown step ${step}`);
  }
  const sources = (['connectionString', 'pool', 'pgName'] as const).filter((k) => o[k] !== undefined);
  if (sources.length > 1) {
    throw new ConfigError(
      `@feedlyai/listener-plugin: invalid options: give one of connectionString, pool and pgName, not ${sources.join(' and ')}`,
    );
  }
  const deprecations: string[] = [];
  for (const d of DEPRECATED) {
    const v = o[d.old];
    if (v === undefined) continue;
    deprecations.push(`option ${d.old} (${d.unit}) is deprecated: use ${d.now} (milliseconds)`);
    if (o[d.now] === undefined) o[d.now] = Math.max(1, Math.round((v as number) * d.unitMs));
  }
  let env: EnvOptions;
  try {
    // The environment is read in optionsFromEnv only (process.env when the env option is absent).
    env = optionsFromEnv(o.env as Env | undefined);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`@feedlyai/listener-plugin: ${err.message}`);
    throw err;
  }
  const reconnectDelayMs = o.reconnectDelayMs ?? env.reconnectDelayMs ?? 5_000;
  return {
    enabled: o.enabled ?? env.enabled ?? true,
    connectionString: o.connectionString ?? env.connectionString,
    connectionStringFromOption: o.connectionString !== undefined,
    pool: o.pool,
    pgName: o.pgName,
    reconnectDelayMs,
    maxReconnectDelayMs: o.maxReconnectDelayMs ?? 60_000,
    recoveryIntervalMs: o.recoveryIntervalMs ?? env.recoveryIntervalMs ?? 60_000,
    recoveryWindowHours: (o.recoveryWindowMs ?? env.recoveryWindowMs ?? 24 * 3_600_000) / 3_600_000,
    deadAfterMs: o.deadAfterMs ?? reconnectDelayMs + 5_000,
    fanInPolicy: o.fanInPolicy ?? env.fanInPolicy ?? 'all',
    stageApiUrl: o.stageApiUrl ?? env.stageApiUrl ?? 'http://localhost:8011',
    stageUrls: checkedStageUrls(o.stageUrls ?? env.stageUrls ?? {}),
    maxInFlightPerUrl: o.maxInFlightPerUrl ?? {},
    stageApiToken: o.stageApiToken ?? env.stageApiToken,
    stepOverrides: (o.stepOverrides ?? {}) as StepPolicyOverrides,
    maxInFlight: o.maxInFlight ?? env.maxInFlight ?? 64,
    instanceId: o.instanceId ?? env.instanceId,
    livenessIntervalMs: o.livenessIntervalMs ?? 5_000,
    livenessTimeoutMs: o.livenessTimeoutMs ?? 3_000,
    closeGraceMs: o.closeGraceMs ?? 10_000,
    poolMax: o.poolMax ?? 10,
    claimDelayMs: o.claimDelayMs ?? 2_000,
    preparedStatements: o.preparedStatements ?? true,
    metricsRegistry: o.metricsRegistry,
    deprecations,
  };
}

function checkedStageUrls(urls: Record<string, string>): Partial<Record<Step, string>> {
  for (const step of Object.keys(urls)) {
    if (!isStep(step) || !AUTOMATIC_STEPS.includes(step)) {
      throw new ConfigError(`@feedlyai/listener-plugin: option stageUrls: unknown step ${JSON.stringify(step)}`);
    }
  }
  return urls as Partial<Record<Step, string>>;
}
