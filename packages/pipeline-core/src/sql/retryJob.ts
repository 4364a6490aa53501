/**
 * Manual retry (docs/state-machine.md, "operator: retry"; docs/cli-retry.md): a failed variant or job starts
 * again from its failed step as a new attempt with a fresh attempt limit
 * (`attempt_base = attempt`, `attempt = attempt + 1`), given_up_at and the
 * job's failure_reason cleared. The re-queued rows carry
 * `dispatch_requested_at` and no `claimed_by`; a NOTIFY on job_state_changed
 * makes a running listener dispatch them right away, and its recovery finds
 * requested rows whatever their age otherwise.
 *
 * Siblings (docs/cli-retry.md, "The sibling rule"): while a job is failed for
 * good nothing of it is claimed, so its other variants stop wherever they
 * were, and after a day they are outside the listener's recovery window. When
 * the retry clears the job's failure, every sibling variant that needs a
 * dispatch is marked in the same transaction (`dispatch_requested_at = now()`,
 * `claimed_by = NULL`), whatever its age: one at (S,'done') whose next step is
 * a variant step (S not 'iou_eval', which waits for the fan-in, and not
 * 'user_img_input', which waits for the YE part), and one at (S,'queued')
 * where S has a stage route. `running` rows belong to the stage and are left
 * alone.
 */
import type pg from 'pg';
import { withTransaction } from '../db.js';
import { JOB_CHANNEL } from '../migrations/channels.js';
import { isStep, isVariantLevel, JOB_STEPS, nextStep, STEPS, type Step, VARIANT_STEPS } from '../steps.js';

export interface RetryJobOptions {
  /** Retry only this variant (it must belong to the job). */
  variantId?: string | undefined;
}

export interface RequeuedStep {
  jobVariantsId: string | null;
  step: Step;
  attempt: number;
}

/** A sibling variant marked for dispatch by the retry (see the sibling rule above). */
export interface MarkedSibling {
  jobVariantsId: string;
  step: Step;
  /** 'done': the engine claims its next step; 'queued': the engine re-dispatches it. */
  status: 'done' | 'queued';
  attempt: number;
}

export interface RetryJobResult {
  jobId: string;
  /**
   * The failed rows re-queued as a new attempt, and (as before the sibling
   * rule) the sibling rows left `queued` that were handed to the listener.
   */
  requeued: RequeuedStep[];
  /** Every sibling variant marked for dispatch, `done` and `queued` ones. */
  siblings: MarkedSibling[];
  /** The job's failure_reason before the retry (null when it was not failed for good). */
  previousFailureReason: string | null;
}

interface JobRow {
  current_step: string;
  status: string;
  tenant_id: string;
  failure_reason: string | null;
}

/** Variant steps whose `done` the engine claims for another variant step (img_gen .. readability_eval). */
const DONE_NEEDS_CLAIM: readonly Step[] = STEPS.filter((s) => {
  const next = nextStep(s);
  return isVariantLevel(s) && next !== null && isVariantLevel(next);
});

/** Variant steps with a stage route, whose `queued` rows the engine dispatches (vlm_analyze .. iou_eval). */
const QUEUED_NEEDS_DISPATCH: readonly Step[] = VARIANT_STEPS;

/**
 * Marks the job's variants that need a dispatch (the sibling rule). Runs
 * before the failed rows are re-queued, so it never matches them.
 */
async function markSiblings(c: pg.PoolClient, jobId: string): Promise<MarkedSibling[]> {
  const r = await c.query<{
    job_variants_id: string;
    current_step: string;
    status: 'done' | 'queued';
    attempt: number;
  }>(
    `UPDATE jobs_variants SET dispatch_requested_at = now(), claimed_by = NULL
      WHERE job_id = $1
        AND ((status = 'done' AND current_step = ANY($2::text[]))
          OR (status = 'queued' AND current_step = ANY($3::text[])))
      RETURNING job_variants_id::text, current_step, status, attempt`,
    [jobId, DONE_NEEDS_CLAIM, QUEUED_NEEDS_DISPATCH],
  );
  const out: MarkedSibling[] = [];
  for (const row of r.rows) {
    if (isStep(row.current_step)) {
      out.push({
        jobVariantsId: row.job_variants_id,
        step: row.current_step,
        status: row.status,
        attempt: row.attempt,
      });
    }
  }
  return out.sort((a, b) => a.jobVariantsId.localeCompare(b.jobVariantsId));
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

    // The job's failure stopped its siblings: hand them back to the engine (sibling rule).
    const siblings = job.failure_reason !== null ? await markSiblings(c, jobId) : [];

    if (jobLevel && !opts.variantId) {
      const r = await c.query<{ current_step: string; attempt: number }>(
        `UPDATE jobs SET status = 'queued', attempt_base = attempt, attempt = attempt + 1, failure_reason = NULL,
                dispatch_requested_at = now(), claimed_by = NULL
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
                dispatch_requested_at = now(), claimed_by = NULL
          WHERE job_id = $1 AND status = 'failed' AND ($2::uuid IS NULL OR job_variants_id = $2::uuid)
          RETURNING job_variants_id::text, current_step, attempt`,
        [jobId, opts.variantId ?? null],
      );
      for (const row of r.rows) {
        if (isStep(row.current_step)) {
          requeued.push({ jobVariantsId: row.job_variants_id, step: row.current_step, attempt: row.attempt });
        }
      }
      if (!opts.variantId) {
        // Steps claimed just before the job failed were refused by the stage (409) and
        // still sit queued: they are listed with the re-queued rows, as they always were.
        for (const s of siblings) {
          if (s.status === 'queued')
            requeued.push({ jobVariantsId: s.jobVariantsId, step: s.step, attempt: s.attempt });
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
    await c.query('SELECT pg_notify($1, $2)', [
      JOB_CHANNEL,
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
    return { jobId, requeued, siblings, previousFailureReason: job.failure_reason };
  });
}
