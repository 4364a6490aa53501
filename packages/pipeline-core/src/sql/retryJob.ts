/**
 * Manual retry (CONTRACTS "manual control"): a failed variant or job starts
 * again from its failed step as a new attempt with a fresh attempt limit
 * (`attempt_base = attempt`, `attempt = attempt + 1`), given_up_at and the
 * job's failure_reason cleared. The re-queued rows carry
 * `dispatch_requested_at`; a NOTIFY on job_state_changed makes a running
 * listener claim them (claimRequested) right away, and its recovery finds
 * them otherwise.
 */
import type pg from 'pg';
import { withTransaction } from '../db.js';
import { isStep, JOB_STEPS, type Step } from '../steps.js';

export interface RetryJobOptions {
  /** Retry only this variant (it must belong to the job). */
  variantId?: string | undefined;
}

export interface RequeuedStep {
  jobVariantsId: string | null;
  step: Step;
  attempt: number;
}

export interface RetryJobResult {
  jobId: string;
  requeued: RequeuedStep[];
  /** The job's failure_reason before the retry (null when it was not failed for good). */
  previousFailureReason: string | null;
}

interface JobRow {
  current_step: string;
  status: string;
  tenant_id: string;
  failure_reason: string | null;
}

export async function retryJob(pool: pg.Pool, jobId: string, opts: RetryJobOptions = {}): Promise<RetryJobResult> {
  return await withTransaction(pool, async (c) => {
    const job = (
      await c.query<JobRow>(
        'SELECT current_step, status, tenant_id, failure_reason FROM jobs WHERE job_id = $1 FOR UPDATE',
        [jobId],
      )
    ).rows[0];
    if (!job) throw new Error(`job ${jobId} not found`);
    const requeued: RequeuedStep[] = [];
    const jobLevel = (JOB_STEPS as readonly string[]).includes(job.current_step);

    if (opts.variantId) {
      const v = await c.query('SELECT 1 FROM jobs_variants WHERE job_variants_id = $1 AND job_id = $2', [
        opts.variantId,
        jobId,
      ]);
      if (v.rowCount === 0) throw new Error(`variant ${opts.variantId} not found in job ${jobId}`);
    }

    if (jobLevel && !opts.variantId) {
      const r = await c.query<{ current_step: string; attempt: number }>(
        `UPDATE jobs SET status = 'queued', attempt_base = attempt, attempt = attempt + 1, failure_reason = NULL,
                dispatch_requested_at = now()
          WHERE job_id = $1 AND status = 'failed'
          RETURNING current_step, attempt`,
        [jobId],
      );
      for (const row of r.rows) {
        if (isStep(row.current_step))
          requeued.push({ jobVariantsId: null, step: row.current_step, attempt: row.attempt });
      }
    } else {
      const r = await c.query<{ job_variants_id: string; current_step: string; attempt: number }>(
        `UPDATE jobs_variants SET status = 'queued', attempt_base = attempt, attempt = attempt + 1, given_up_at = NULL,
                dispatch_requested_at = now()
          WHERE job_id = $1 AND status = 'failed' AND ($2::uuid IS NULL OR job_variants_id = $2::uuid)
          RETURNING job_variants_id::text, current_step, attempt`,
        [jobId, opts.variantId ?? null],
      );
      for (const row of r.rows) {
        if (isStep(row.current_step)) {
          requeued.push({ jobVariantsId: row.job_variants_id, step: row.current_step, attempt: row.attempt });
        }
      }
      if (job.failure_reason !== null && !opts.variantId) {
        // Steps claimed just before the job failed were refused by the stage (409) and
        // still sit queued: hand them to the listener too.
        const q = await c.query<{ job_variants_id: string; current_step: string; attempt: number }>(
          `UPDATE jobs_variants SET dispatch_requested_at = now()
            WHERE job_id = $1 AND status = 'queued' AND dispatch_requested_at IS NULL
              AND current_step NOT IN ('user_img_input', 'img_gen')
            RETURNING job_variants_id::text, current_step, attempt`,
          [jobId],
        );
        for (const row of q.rows) {
          if (isStep(row.current_step)) {
            requeued.push({ jobVariantsId: row.job_variants_id, step: row.current_step, attempt: row.attempt });
          }
        }
      }
      if (job.failure_reason !== null || job.status === 'failed') {
        // Back to a non-failed state; the job row is not in the job-level phase here.
        await c.query(
          `UPDATE jobs SET failure_reason = NULL, status = CASE WHEN status = 'failed' THEN 'queued' ELSE status END
            WHERE job_id = $1`,
          [jobId],
        );
      }
    }
    if (jobLevel && opts.variantId && job.failure_reason !== null) {
      await c.query('UPDATE jobs SET failure_reason = NULL WHERE job_id = $1', [jobId]);
    }

    // Wake the listeners up even when the job row's state did not change.
    const cur = (
      await c.query<JobRow & { updated_at: Date; attempt: number }>(
        'SELECT current_step, status, tenant_id, failure_reason, updated_at, attempt FROM jobs WHERE job_id = $1',
        [jobId],
      )
    ).rows[0] as JobRow & { updated_at: Date; attempt: number };
    await c.query(`SELECT pg_notify('job_state_changed', $1)`, [
      JSON.stringify({
        job_id: jobId,
        tenant_id: cur.tenant_id,
        current_step: cur.current_step,
        status: cur.status,
        updated_at: cur.updated_at,
        attempt: cur.attempt,
        manual: 'retry',
      }),
    ]);
    return { jobId, requeued, previousFailureReason: job.failure_reason };
  });
}
