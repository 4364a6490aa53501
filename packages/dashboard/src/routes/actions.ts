/**
 * Actions (docs/dashboard.md, "Actions"): Retry and Cancel of one job, and a
 * bulk retry of the filtered failed jobs, through pipeline-core's retryJob,
 * cancelJob and retryFailedJobs (what `feedly-pipeline retry` and `cancel`
 * call). Every action is a POST checked against CSRF first: a missing or
 * wrong token is answered 403 and changes nothing. Retry of a job that is not
 * failed, or Cancel of one that is finished, is answered 409 with the job's
 * current state.
 */
import { cancelJob, RETRY_FAILED_MAX_LIMIT, retryFailedJobs, retryJob } from '@feedlyai/pipeline-core';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { type DashboardContext, isHtmx, wantsJson } from '../context.js';
import { FilterError, filterParams, isUuid, type JobFilters, parseJobsQuery } from '../filters.js';
import type { CsrfHook } from '../plugin.js';
import { selectFailedJobs } from '../sql/failedJobs.js';
import { jobStatusOf } from '../vocabulary.js';
import { helpers } from './pages.js';

/** Most jobs one bulk retry acts on. */
export const BULK_RETRY_MAX = RETRY_FAILED_MAX_LIMIT;

interface JobState {
  job_id: string;
  status: 'running' | 'done' | 'failed';
  current_step: string;
  step_status: string;
  failure_reason: string | null;
}

async function readState(ctx: DashboardContext, jobId: string): Promise<JobState | null> {
  const r = await ctx
    .pool()
    .query<{ current_step: string; status: string; failure_reason: string | null }>(
      'SELECT current_step, status, failure_reason FROM jobs WHERE job_id = $1',
      [jobId],
    );
  const row = r.rows[0];
  if (!row) return null;
  return {
    job_id: jobId,
    status: jobStatusOf(row),
    current_step: row.current_step,
    step_status: row.status,
    failure_reason: row.failure_reason,
  };
}

/** The filters of a bulk retry: the form's fields (or the query string of an API client). */
function bulkFilters(req: FastifyRequest): JobFilters {
  const body = typeof req.body === 'object' && req.body !== null ? (req.body as Record<string, unknown>) : {};
  const fields: Record<string, unknown> = { ...(req.query as Record<string, unknown>), ...body };
  delete fields._csrf;
  delete fields.cursor;
  delete fields.limit;
  return parseJobsQuery(fields);
}

export const actionRoutes: FastifyPluginAsync<{ ctx: DashboardContext; csrfProtection: CsrfHook }> = async (
  app,
  { ctx, csrfProtection },
) => {
  const h = helpers(ctx.base);

  /**
   * An action's answer: JSON, an htmx fragment, or a small page with a link back. The fragment has no
   * link back: htmx shows it on the page it would link to (the job page, the jobs page with its filters).
   */
  async function answer(
    req: FastifyRequest,
    reply: FastifyReply,
    code: number,
    json: Record<string, unknown>,
    message: string,
    back: string,
  ) {
    reply.code(code);
    if (wantsJson(req)) return reply.send(json);
    const kind = code >= 400 ? 'error' : 'ok';
    const html = await ctx.render(isHtmx(req) ? 'partials/message' : 'message', {
      h,
      title: code >= 400 ? `${code}` : 'Done',
      kind,
      message,
      back: isHtmx(req) ? null : back,
    });
    return reply.type('text/html; charset=utf-8').send(html);
  }

  const guarded = { preValidation: csrfProtection };

  app.post<{ Params: { id: string } }>('/jobs/:id/retry', guarded, async (req, reply) => {
    const id = req.params.id;
    if (!isUuid(id)) throw new FilterError('id', 'not a job id');
    const back = h.url(`/jobs/${id}`);
    const before = await readState(ctx, id);
    if (!before) return answer(req, reply, 404, { error: 'no such job', job_id: id }, `No job ${id}.`, h.url('/'));
    if (before.status !== 'failed') {
      return answer(
        req,
        reply,
        409,
        { error: 'not_failed', message: 'only a failed job can be retried', ...before },
        `Not retried: the job is ${before.status} (at ${before.current_step}, ${before.step_status}). Only a failed job can be retried.`,
        back,
      );
    }
    const r = await retryJob(ctx.pool(), id);
    if (r.previousFailureReason === null && r.requeued.length === 0) {
      // Someone else retried it between our read and the retry's lock.
      const now = (await readState(ctx, id)) ?? before;
      return answer(
        req,
        reply,
        409,
        { error: 'not_failed', message: 'the job was retried meanwhile', ...now },
        `Not retried: the job was retried meanwhile and is ${now.status} (at ${now.current_step}, ${now.step_status}).`,
        back,
      );
    }
    req.log.info({ job_id: id, requeued: r.requeued.length }, 'dashboard: job retried');
    return answer(
      req,
      reply,
      200,
      {
        retried: true,
        job_id: id,
        previous_failure_reason: r.previousFailureReason,
        requeued: r.requeued.map((q) => ({ job_variants_id: q.jobVariantsId, step: q.step, attempt: q.attempt })),
        siblings: r.siblings.length,
      },
      `Retried: ${r.requeued.length} step${r.requeued.length === 1 ? '' : 's'} queued again (was: ${r.previousFailureReason ?? 'failed'}).`,
      back,
    );
  });

  app.post<{ Params: { id: string } }>('/jobs/:id/cancel', guarded, async (req, reply) => {
    const id = req.params.id;
    if (!isUuid(id)) throw new FilterError('id', 'not a job id');
    const back = h.url(`/jobs/${id}`);
    const before = await readState(ctx, id);
    if (!before) return answer(req, reply, 404, { error: 'no such job', job_id: id }, `No job ${id}.`, h.url('/'));
    const r = await cancelJob(ctx.pool(), id);
    if (!r.cancelled) {
      const now = (await readState(ctx, id)) ?? before;
      return answer(
        req,
        reply,
        409,
        { error: 'not_running', message: 'only a running job can be cancelled', ...now },
        `Not cancelled: the job is ${now.status}${now.failure_reason ? ` (${now.failure_reason})` : ''}.`,
        back,
      );
    }
    req.log.info({ job_id: id }, 'dashboard: job cancelled');
    return answer(
      req,
      reply,
      200,
      { cancelled: true, job_id: id, current_step: r.currentStep },
      `Cancelled at ${r.currentStep}: nothing more of this job is dispatched.`,
      back,
    );
  });

  /** The count of a bulk retry, shown before confirming it. */
  app.get('/retry-failed', async (req, reply) => {
    const filters = parseJobsQuery(req.query as Record<string, unknown>);
    const sel = await selectFailedJobs(ctx.pool(), filters, BULK_RETRY_MAX);
    const preview = await retryFailedJobs(ctx.pool(), {
      failedSince: new Date(0),
      jobIds: sel.jobIds,
      limit: BULK_RETRY_MAX,
      dryRun: true,
    });
    const data = { count: preview.matched, more: sel.more, max: BULK_RETRY_MAX, filters: filterParams(filters) };
    if (wantsJson(req)) return data;
    const html = await ctx.render('partials/bulk-confirm', {
      h,
      ...data,
      csrf: ctx.csrfToken(reply),
      back: h.url('/', data.filters),
    });
    return reply.type('text/html; charset=utf-8').send(html);
  });

  app.post('/retry-failed', guarded, async (req, reply) => {
    const filters = bulkFilters(req);
    const back = h.url('/', filterParams(filters));
    const sel = await selectFailedJobs(ctx.pool(), filters, BULK_RETRY_MAX);
    if (sel.jobIds.length === 0) {
      return answer(
        req,
        reply,
        200,
        { retried: 0, errors: [], more: false },
        'No failed job matches these filters.',
        back,
      );
    }
    const r = await retryFailedJobs(ctx.pool(), {
      failedSince: new Date(0),
      jobIds: sel.jobIds,
      limit: BULK_RETRY_MAX,
    });
    const retried = r.retried.filter((x) => x.previousFailureReason !== null).length;
    req.log.info({ retried, errors: r.errors.length, more: sel.more }, 'dashboard: bulk retry');
    const parts = [`Retried ${retried} job${retried === 1 ? '' : 's'}.`];
    if (r.errors.length) parts.push(`${r.errors.length} could not be retried: ${r.errors[0]?.error ?? ''}`);
    if (sel.more) parts.push(`More than ${BULK_RETRY_MAX} matched: run it again for the rest.`);
    return answer(
      req,
      reply,
      200,
      { retried, job_ids: r.retried.map((x) => x.jobId), errors: r.errors, more: sel.more },
      parts.join(' '),
      back,
    );
  });
};
