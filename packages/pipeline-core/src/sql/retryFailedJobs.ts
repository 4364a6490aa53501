/**
 * Bulk manual retry (docs/cli-retry.md): every job that failed for good
 * since a moment, optionally of one tenant and with a failure reason
 * containing a text, retried one by one with `retryJob`, each in its own
 * transaction, so that one job that cannot be retried does not stop the rest.
 *
 * "Failed since" compares `jobs.failed_at`, stamped by the database (a
 * trigger of migration 0004) when failure_reason goes from NULL to a value.
 * Cancelled jobs (failure_reason 'cancelled') are left out unless
 * `reasonLike` matches 'cancelled'. The oldest failures come first.
 */
import type pg from 'pg';
import { charLength, INPUT_CAPS } from '../inputCaps.js';
import { type RetryJobResult, retryJob } from './retryJob.js';

/** Most jobs one call selects (and the default). */
export const RETRY_FAILED_MAX_LIMIT = 1000;
/** Longest accepted `reasonLike`. */
export const REASON_LIKE_MAX_LENGTH = 500;

export interface RetryFailedJobsOptions {
  /** Jobs whose failed_at is at or after this moment. */
  failedSince: Date;
  tenantId?: string | undefined;
  /** Case-insensitive substring of failure_reason (`%` and `_` are plain characters). */
  reasonLike?: string | undefined;
  /** At most this many jobs, 1..1000 (default 1000). */
  limit?: number | undefined;
  /** Only select: return the count and the ids, change nothing. */
  dryRun?: boolean | undefined;
  /**
   * Only these jobs (at most `limit`), which must still match the other
   * conditions: the dashboard's bulk retry hands the failed jobs its filters
   * selected (docs/dashboard.md, "Actions").
   */
  jobIds?: readonly string[] | undefined;
}

export interface FailedJob {
  jobId: string;
  tenantId: string;
  failedAt: Date;
  failureReason: string;
}

export interface RetryFailedJobsResult {
  dryRun: boolean;
  /** How many jobs were selected (at most `limit`). */
  matched: number;
  /** The selected jobs' ids, oldest failure first. */
  jobIds: string[];
  /** The selected jobs, in the same order. */
  jobs: FailedJob[];
  /** True when more jobs matched than `limit`: run it again for the rest. */
  truncated: boolean;
  /** One entry per job retried (empty with dryRun). */
  retried: RetryJobResult[];
  /** The jobs whose retry failed (rolled back: nothing of them changed). */
  errors: Array<{ jobId: string; error: string }>;
}

/**
 * `%`, `_` and the escape character itself taken literally in a LIKE pattern
 * written with `ESCAPE '!'` (not a backslash, whose meaning in a string
 * literal depends on standard_conforming_strings).
 */
export function escapeLike(text: string): string {
  return text.replace(/[!%_]/g, (ch) => `!${ch}`);
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function validate(o: RetryFailedJobsOptions): {
  limit: number;
  reasonLike: string | null;
  tenantId: string | null;
  jobIds: string[] | null;
} {
  if (!(o.failedSince instanceof Date) || Number.isNaN(o.failedSince.getTime())) {
    throw new TypeError('failedSince must be a valid Date');
  }
  const limit = o.limit ?? RETRY_FAILED_MAX_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > RETRY_FAILED_MAX_LIMIT) {
    throw new RangeError(`limit must be an integer from 1 to ${RETRY_FAILED_MAX_LIMIT}, got ${String(o.limit)}`);
  }
  let tenantId: string | null = null;
  if (o.tenantId !== undefined) {
    if (typeof o.tenantId !== 'string' || o.tenantId === '') throw new TypeError('tenantId must be a non-empty string');
    if (charLength(o.tenantId) > INPUT_CAPS.tenant_id) {
      throw new RangeError(`tenantId must be at most ${INPUT_CAPS.tenant_id} characters`);
    }
    tenantId = o.tenantId;
  }
  let reasonLike: string | null = null;
  if (o.reasonLike !== undefined) {
    if (typeof o.reasonLike !== 'string' || o.reasonLike === '') {
      throw new TypeError('reasonLike must be a non-empty string');
    }
    if (o.reasonLike.length > REASON_LIKE_MAX_LENGTH) {
      throw new RangeError(`reasonLike must be at most ${REASON_LIKE_MAX_LENGTH} characters`);
    }
    reasonLike = o.reasonLike;
  }
  let jobIds: string[] | null = null;
  if (o.jobIds !== undefined) {
    if (!Array.isArray(o.jobIds) || o.jobIds.some((id) => typeof id !== 'string' || !UUID_RE.test(id))) {
      throw new TypeError('jobIds must be an array of job ids (UUIDs)');
    }
    if (o.jobIds.length > limit)
      throw new RangeError(`jobIds holds ${o.jobIds.length} ids, more than the limit ${limit}`);
    jobIds = [...o.jobIds];
  }
  return { limit, reasonLike, tenantId, jobIds };
}

/**
 * Selects the failed jobs (see the module comment) and, unless `dryRun`,
 * retries each. Throws only for invalid options or when the selection
 * itself fails; a job that cannot be retried is reported in `errors`.
 */
export async function retryFailedJobs(pool: pg.Pool, opts: RetryFailedJobsOptions): Promise<RetryFailedJobsResult> {
  const { limit, reasonLike, tenantId, jobIds } = validate(opts);
  const { rows } = await pool.query<{
    job_id: string;
    tenant_id: string;
    failed_at: Date;
    failure_reason: string;
  }>(
    `SELECT job_id::text, tenant_id, failed_at, failure_reason
       FROM jobs
      WHERE failure_reason IS NOT NULL
        AND failed_at >= $1
        AND ($2::text IS NULL OR tenant_id = $2)
        AND ($3::text IS NULL OR failure_reason ILIKE '%' || $3 || '%' ESCAPE '!')
        AND ($3::text IS NOT NULL OR failure_reason <> 'cancelled')
        AND ($5::uuid[] IS NULL OR job_id = ANY($5::uuid[]))
      ORDER BY failed_at, job_id
      LIMIT $4`,
    [opts.failedSince, tenantId, reasonLike === null ? null : escapeLike(reasonLike), limit + 1, jobIds],
  );
  const truncated = rows.length > limit;
  const jobs: FailedJob[] = rows.slice(0, limit).map((r) => ({
    jobId: r.job_id,
    tenantId: r.tenant_id,
    failedAt: r.failed_at,
    failureReason: r.failure_reason,
  }));
  const result: RetryFailedJobsResult = {
    dryRun: Boolean(opts.dryRun),
    matched: jobs.length,
    jobIds: jobs.map((j) => j.jobId),
    jobs,
    truncated,
    retried: [],
    errors: [],
  };
  if (opts.dryRun) return result;
  for (const job of jobs) {
    try {
      result.retried.push(await retryJob(pool, job.jobId));
    } catch (err) {
      result.errors.push({ jobId: job.jobId, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return result;
}
