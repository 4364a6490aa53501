/**
 * `feedly-pipeline retry`: one job (`retry <job_id> [--variant ID]`) or every
 * job that failed for good since a moment (`retry --failed-since WHEN`), with
 * retryJob / retryFailedJobs of pipeline-core. docs/cli-retry.md describes
 * both forms, the sibling rule and what "failed since" compares.
 */
import {
  charLength,
  INPUT_CAPS,
  REASON_LIKE_MAX_LENGTH,
  RETRY_FAILED_MAX_LIMIT,
  type RetryFailedJobsResult,
  type RetryJobResult,
  retryFailedJobs,
  retryJob,
} from '@feedlyai/pipeline-core';
import { Command, InvalidArgumentError } from 'commander';
import type pg from 'pg';
import { action, CliFailure, type CommandContext, parseUuid, UsageError, withDatabase } from './common.js';

/** What --failed-since was given as: a moment, or a duration back from the database's now(). */
export type FailedSince = { kind: 'at'; at: Date; text: string } | { kind: 'ago'; ms: number; text: string };

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_RE = /^(\d{1,6})([mhd])$/;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(Z|[+-](\d{2}):(\d{2}))$/;

function validDate(y: number, m: number, d: number): boolean {
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

/**
 * `--failed-since`: an ISO-8601 date (`2026-11-28`, midnight UTC), an
 * ISO-8601 date and time with `Z` or an offset (`2026-11-28T09:00:00+09:00`),
 * or a duration back from now (`30m`, `2h`, `7d`).
 */
export function parseFailedSince(value: string): FailedSince {
  const text = value.trim();
  const dur = DURATION_RE.exec(text);
  if (dur) {
    const n = Number(dur[1]);
    if (n < 1) throw new InvalidArgumentError(`expected a duration of at least 1, got '${value}'`);
    return { kind: 'ago', ms: n * UNIT_MS[dur[2] as keyof typeof UNIT_MS], text };
  }
  const dateOnly = DATE_RE.exec(text);
  const dateTime = DATE_TIME_RE.exec(text);
  const parts = dateOnly ?? dateTime;
  if (parts) {
    const [y, mo, d] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
    const timeOk =
      !dateTime ||
      (Number(dateTime[4]) <= 23 &&
        Number(dateTime[5]) <= 59 &&
        Number(dateTime[6] ?? 0) <= 59 &&
        Number(dateTime[8] ?? 0) <= 23 &&
        Number(dateTime[9] ?? 0) <= 59);
    const at = new Date(dateOnly ? `${text}T00:00:00Z` : text);
    if (validDate(y, mo, d) && timeOk && !Number.isNaN(at.getTime())) return { kind: 'at', at, text };
    throw new InvalidArgumentError(`'${value}' is not a valid date or time`);
  }
  throw new InvalidArgumentError(
    `expected an ISO-8601 time (2026-11-28T09:00:00+09:00, or 2026-11-28 for midnight UTC; a time needs Z or an offset) or a duration (30m, 2h, 7d), got '${value}'`,
  );
}

export function parseLimit(value: string): number {
  const v = value.trim();
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1 || n > RETRY_FAILED_MAX_LIMIT) {
    throw new InvalidArgumentError(`expected an integer from 1 to ${RETRY_FAILED_MAX_LIMIT}, got '${value}'`);
  }
  return n;
}

function parseTenantId(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('expected a non-empty value');
  if (charLength(value) > INPUT_CAPS.tenant_id) {
    throw new InvalidArgumentError(`expected at most ${INPUT_CAPS.tenant_id} characters`);
  }
  return value;
}

function parseReasonLike(value: string): string {
  if (value === '') throw new InvalidArgumentError('expected a non-empty text');
  if (value.length > REASON_LIKE_MAX_LENGTH) {
    throw new InvalidArgumentError(`expected at most ${REASON_LIKE_MAX_LENGTH} characters`);
  }
  return value;
}

interface RetryFlags {
  variant?: string;
  failedSince?: FailedSince;
  tenantId?: string;
  reasonLike?: string;
  limit: number;
  dryRun?: boolean;
  databaseUrl?: string;
  json?: boolean;
}

/** The moment --failed-since means, on the database's clock (failed_at is stamped by it). */
async function resolveSince(pool: pg.Pool, since: FailedSince): Promise<Date> {
  if (since.kind === 'at') return since.at;
  const r = await pool.query<{ since: Date }>(`SELECT now() - $1::bigint * interval '1 millisecond' AS since`, [
    since.ms,
  ]);
  return (r.rows[0] as { since: Date }).since;
}

function oneLine(text: string, max = 120): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function describeRetry(r: RetryJobResult): string {
  const failed = r.requeued.filter((q) => !r.siblings.some((s) => s.jobVariantsId === q.jobVariantsId));
  const parts = failed.map(
    (q) => `${q.jobVariantsId ? `variant ${q.jobVariantsId}` : 'the job'} at ${q.step} (attempt ${q.attempt})`,
  );
  return (
    `${parts.length > 0 ? `re-queued ${parts.join(', ')}` : 'nothing failed to re-queue'}` +
    (r.siblings.length > 0 ? `; ${r.siblings.length} sibling variant(s) marked for dispatch` : '')
  );
}

function printBulk(ctx: CommandContext, r: RetryFailedJobsResult, since: Date, opts: RetryFlags): void {
  const filters = [
    `failed since ${since.toISOString()}`,
    ...(opts.tenantId !== undefined ? [`tenant ${opts.tenantId}`] : []),
    ...(opts.reasonLike !== undefined ? [`reason like "${opts.reasonLike}"`] : []),
  ].join(', ');
  if (r.dryRun) {
    ctx.io.out(`dry run: ${r.matched} failed job(s) match (${filters}); nothing changed`);
    for (const j of r.jobs) {
      ctx.io.out(`${j.jobId}  failed ${j.failedAt.toISOString()}  ${j.tenantId}  ${oneLine(j.failureReason)}`);
    }
  } else {
    ctx.io.out(`${r.matched} failed job(s) match (${filters})`);
    for (const x of r.retried) ctx.io.out(`retried job ${x.jobId}: ${describeRetry(x)}`);
    for (const e of r.errors) ctx.io.err(`could not retry job ${e.jobId}: ${e.error}`);
    ctx.io.out(`summary: ${r.retried.length} job(s) retried, ${r.errors.length} error(s)`);
  }
  if (r.truncated) {
    ctx.io.out(`more jobs match than --limit ${opts.limit}: run the command again for the next ones`);
  }
}

export function retryCommand(ctx: CommandContext): Command {
  const cmd = new Command('retry')
    .description(
      'retry a failed job (or one failed variant) from its failed step with a fresh attempt limit, ' +
        'or with --failed-since every job that failed for good since then',
    )
    .argument('[job_id]', 'the job (or use --failed-since)', parseUuid)
    .option('--variant <job_variants_id>', 'with <job_id>: retry only this variant', parseUuid)
    .option(
      '--failed-since <when>',
      'retry every job that failed for good at or after this moment: an ISO-8601 time ' +
        '(2026-11-28T09:00:00+09:00; 2026-11-28 is midnight UTC) or a duration back from now (30m, 2h, 7d)',
      parseFailedSince,
    )
    .option('--tenant-id <id>', 'with --failed-since: only this tenant', parseTenantId)
    .option(
      '--reason-like <text>',
      "with --failed-since: only failure reasons containing this text (case-insensitive); cancelled jobs are left out unless it matches 'cancelled'",
      parseReasonLike,
    )
    .option(
      '--limit <n>',
      `with --failed-since: at most this many jobs, oldest failure first (1-${RETRY_FAILED_MAX_LIMIT})`,
      parseLimit,
      RETRY_FAILED_MAX_LIMIT,
    )
    .option('--dry-run', 'with --failed-since: print the count and the ids, change nothing')
    .option('--database-url <url>', 'PostgreSQL URL (default: DATABASE_URL or DB_*)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Give either <job_id> or --failed-since. "Failed since" compares the time the job
failed for good (jobs.failed_at, on the database clock); a duration counts back
from the database's now(). When a retry clears a job's failure, its other
variants waiting at a done or queued step are handed to the pipeline again,
whatever their age (docs/cli-retry.md).

Exit codes: 0 retried (with --failed-since: also when nothing matched);
1 nothing to retry in <job_id>, the job does not exist, or some jobs could not
be retried (listed on stderr); 2 bad arguments.
Examples:
  feedly-pipeline retry 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a
  feedly-pipeline retry 0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a --variant 5b7c0f3e-3f1a-4c55-9a53-4c1b0c2f9d11
  feedly-pipeline retry --failed-since 2h --dry-run
  feedly-pipeline retry --failed-since 7d --tenant-id acme --reason-like "timed out" --limit 100
  feedly-pipeline retry --failed-since 2026-11-28T09:00:00+09:00 --reason-like cancelled --json`,
    );
  cmd.action(
    action(ctx, cmd, async (jobId: string | undefined, opts: RetryFlags) => {
      if (jobId !== undefined && opts.failedSince !== undefined) {
        throw new UsageError('give either <job_id> or --failed-since, not both');
      }
      if (jobId === undefined && opts.failedSince === undefined) {
        throw new UsageError('give a <job_id> to retry, or --failed-since to retry the jobs failed since then');
      }
      if (jobId !== undefined) {
        const bulkOnly = (['tenantId', 'reasonLike', 'limit', 'dryRun'] as const).filter(
          (k) => cmd.getOptionValueSource(k) === 'cli',
        );
        if (bulkOnly.length > 0) {
          const flag = `--${bulkOnly[0]!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
          throw new UsageError(`${flag} goes with --failed-since, not with <job_id>`);
        }
        return await retryOne(ctx, jobId, opts);
      }
      if (opts.variant !== undefined) throw new UsageError('--variant goes with <job_id>, not with --failed-since');
      return await withDatabase(opts, ctx.io, async (pool) => {
        const since = await resolveSince(pool, opts.failedSince as FailedSince);
        const r = await retryFailedJobs(pool, {
          failedSince: since,
          tenantId: opts.tenantId,
          reasonLike: opts.reasonLike,
          limit: opts.limit,
          dryRun: Boolean(opts.dryRun),
        });
        if (opts.json) ctx.io.out(JSON.stringify({ failedSince: since.toISOString(), ...r }));
        else printBulk(ctx, r, since, opts);
        return r.errors.length > 0 ? 1 : 0;
      });
    }),
  );
  return cmd;
}

async function retryOne(ctx: CommandContext, jobId: string, opts: RetryFlags): Promise<number> {
  return await withDatabase(opts, ctx.io, async (pool) => {
    let r: RetryJobResult;
    try {
      r = await retryJob(pool, jobId, opts.variant ? { variantId: opts.variant } : {});
    } catch (err) {
      if (err instanceof Error && / not found/.test(err.message)) throw new CliFailure(err.message);
      throw err;
    }
    const changed = r.requeued.length > 0 || r.siblings.length > 0 || r.previousFailureReason !== null;
    if (opts.json) ctx.io.out(JSON.stringify(r));
    else if (!changed) {
      ctx.io.out(`nothing to retry: no failed ${opts.variant ? 'variant' : 'step'} in job ${jobId}`);
    } else {
      for (const q of r.requeued) {
        ctx.io.out(
          `re-queued ${q.jobVariantsId ? `variant ${q.jobVariantsId}` : `job ${jobId}`} at ${q.step} (attempt ${q.attempt})`,
        );
      }
      const done = r.siblings.filter((s) => s.status === 'done');
      if (done.length > 0) {
        ctx.io.out(`handed ${done.length} sibling variant(s) waiting at a done step back to the pipeline`);
      }
      if (r.previousFailureReason) ctx.io.out(`cleared the job's failure reason (${r.previousFailureReason})`);
    }
    return changed ? 0 : 1;
  });
}
