/**
 * The same 10-step chain as the engine, run by Graphile Worker tasks. Per step a
 * task does exactly what our engine's dispatcher does for that step, with
 * Graphile Worker's queue in place of LISTEN/NOTIFY:
 *
 * 1. the claim: the same guarded UPDATE as the engine, `(prev,'done') ->
 *    (step,'queued'), attempt = 1` (so the stage double's state checks pass
 *    exactly as they do for the engine);
 * 2. the stage call: `POST <stage double><route>` with `attempt`, over HTTP
 *    (undici, keep-alive), the double doing start + finish;
 * 3. the next step: `helpers.addJob` of the next step's task; after
 *    `iou_eval`, the fan-in claim of the job row and `graphile_worker.add_job`
 *    of the job-level task in ONE statement (so exactly one variant, the last,
 *    enqueues it).
 *
 * Graphile Worker itself adds its own `get_job` and `complete_job` per task.
 */
import { FAN_IN_FROM, FAN_IN_TO, isJobLevel, nextStep, prevStep, routeOf, type Step } from '@feedlyai/pipeline-core';
import type { JobHelpers, Task, TaskList } from 'graphile-worker';
import { Agent, request } from 'undici';

export interface ChainPayload {
  jobId: string;
  tenantId: string;
  /** Absent for job-level steps. */
  variantId?: string;
  step: Step;
}

/** The variant claim: the engine's guarded transition. */
export const CLAIM_VARIANT_SQL = `UPDATE jobs_variants
   SET current_step = $2, status = 'queued', attempt = 1, attempt_base = 0, last_error = NULL
 WHERE job_variants_id = $1 AND current_step = $3 AND status = 'done'`;

/** The job claim (instagram_feed_gen after ad_copy_gen_kor). */
export const CLAIM_JOB_SQL = `UPDATE jobs
   SET current_step = $2, status = 'queued', attempt = 1, attempt_base = 0, last_error = NULL
 WHERE job_id = $1 AND current_step = $3 AND status = 'done' AND failure_reason IS NULL`;

/** The fan-in claim and the enqueue of the job-level task, in one statement (one transaction). */
export const FAN_IN_AND_ENQUEUE_SQL = `WITH c AS (
  UPDATE jobs j
     SET current_step = '${FAN_IN_TO}', status = 'queued', attempt = 1, attempt_base = 0, last_error = NULL
   WHERE j.job_id = $1 AND j.failure_reason IS NULL
     AND j.current_step NOT IN ('ad_copy_gen_kor', 'instagram_feed_gen')
     AND NOT EXISTS (SELECT 1 FROM jobs_variants v
                      WHERE v.job_id = j.job_id AND NOT (v.current_step = '${FAN_IN_FROM}' AND v.status = 'done'))
  RETURNING j.job_id, j.tenant_id)
SELECT graphile_worker.add_job('chain_step',
         json_build_object('jobId', c.job_id, 'tenantId', c.tenant_id, 'step', '${FAN_IN_TO}')) FROM c`;

export function makeTaskList(stageUrl: string): { taskList: TaskList; agent: Agent; stats: { http: number } } {
  const agent = new Agent({ connections: 64, keepAliveTimeout: 60_000 });
  const stats = { http: 0 };

  const callStage = async (p: ChainPayload) => {
    const body: Record<string, unknown> = { job_id: p.jobId, tenant_id: p.tenantId, attempt: 1 };
    if (p.variantId) body.job_variants_id = p.variantId;
    const res = await request(`${stageUrl}${routeOf(p.step)}`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    await res.body.dump();
    stats.http++;
    if (res.statusCode !== 200) throw new Error(`stage ${p.step} answered ${res.statusCode}`);
  };

  const chainStep: Task = async (raw: unknown, helpers: JobHelpers) => {
    const p = raw as ChainPayload;
    const prev = prevStep(p.step);
    if (p.step !== FAN_IN_TO) {
      const claim = isJobLevel(p.step)
        ? await helpers.query(CLAIM_JOB_SQL, [p.jobId, p.step, prev])
        : await helpers.query(CLAIM_VARIANT_SQL, [p.variantId, p.step, prev]);
      // Not (prev,'done') any more: someone else moved it on (never happens in the benchmark).
      if (claim.rowCount !== 1) return;
    }
    await callStage(p);
    if (p.step === FAN_IN_FROM) {
      await helpers.query(FAN_IN_AND_ENQUEUE_SQL, [p.jobId]);
      return;
    }
    const next = nextStep(p.step);
    if (next) {
      const payload: ChainPayload = { jobId: p.jobId, tenantId: p.tenantId, step: next };
      if (p.variantId) payload.variantId = p.variantId;
      await helpers.addJob('chain_step', payload);
    }
  };
  return { taskList: { chain_step: chainStep }, agent, stats };
}

/** Enqueues vlm_analyze for every variant at (img_gen,'done'), in one statement. */
export const ENQUEUE_FIRST_STEPS_SQL = `SELECT count(graphile_worker.add_job('chain_step',
    json_build_object('jobId', v.job_id, 'tenantId', j.tenant_id, 'variantId', v.job_variants_id, 'step', 'vlm_analyze')))::int AS n
  FROM jobs_variants v JOIN jobs j USING (job_id)
 WHERE v.current_step = 'img_gen' AND v.status = 'done'`;
