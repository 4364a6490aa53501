/**
 * The pages (docs/dashboard.md): the jobs list with its filters, the job
 * page, the help, their fragments for live updates, the throughput chart's
 * data, and the same lists as JSON for API clients.
 */
import { AUTOMATIC_STEPS, JOB_STEPS, STEP_GRAPH, STEPS } from '@feedlyai/pipeline-core';
import { readJobView, scoreBreakdown, timelineOf } from '@feedlyai/pipeline-views';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { type DashboardContext, isHtmx, wantsJson } from '../context.js';
import {
  FilterError,
  filterParams,
  formatCursor,
  isUuid,
  type JobsQuery,
  parseJobsQuery,
  queryString,
} from '../filters.js';
import { errorText, formatAge, formatDuration, formatTime, iso, num, pct, shortId } from '../format.js';
import { type JobListRow, jobListRow, listJobs } from '../sql/jobsPage.js';
import { StageTables } from '../sql/stageTables.js';
import { throughput } from '../sql/throughput.js';
import { JOB_STATUSES, jobStatusOf, progressOf, progressSegments, stepsPassed } from '../vocabulary.js';

/** Helpers every template gets as `it.h`. */
export function helpers(base: string) {
  return {
    url: (path: string, params: Record<string, string> = {}) => `${base}${path}${queryString(params)}`,
    age: (d: Date | string) => formatAge(d),
    duration: formatDuration,
    errorText,
    time: formatTime,
    iso,
    num,
    pct,
    shortId,
    stepTitle: (s: string) => (s in STEP_GRAPH ? STEP_GRAPH[s as keyof typeof STEP_GRAPH].title : s),
  };
}

/** The select options of the step filter: variant steps, then job steps. */
const STEP_OPTIONS = STEPS.map((s) => ({
  value: s,
  title: STEP_GRAPH[s].title,
  level: (JOB_STEPS as readonly string[]).includes(s) ? 'job' : 'variant',
}));

/** A row of the jobs table, ready for the template. */
function rowModel(r: JobListRow) {
  const segments = progressSegments(r.progress);
  return {
    id: r.jobId,
    tenant: r.tenantId,
    product: r.productName,
    status: r.jobStatus,
    failureReason: r.failureReason,
    lastError: r.lastError,
    progress: r.progress,
    segments,
    passed: stepsPassed(r.progress),
    variants: r.variants.length,
    variantsFailed: r.variants.filter((v) => v.status === 'failed').length,
    jobStep: r.currentStep,
    jobRowStatus: r.status,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    completedAt: r.completedAt,
    thumb: r.chosenAssetId,
    thumbKind: r.chosenAssetId ? 'chosen' : r.inputAssetId ? 'input' : null,
    thumbAsset: r.chosenAssetId ?? r.inputAssetId,
  };
}

/** The form's values: what the user typed, even when invalid (so the page can show it back). */
function formValues(query: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['tenant', 'status', 'step', 'from', 'to']) {
    const v = query[k];
    if (typeof v === 'string') out[k] = v;
  }
  return out;
}

export const pageRoutes: FastifyPluginAsync<{ ctx: DashboardContext }> = async (app, { ctx }) => {
  const h = helpers(ctx.base);
  const stageTables = new StageTables();

  async function page(q: JobsQuery) {
    const db = ctx.pool();
    return await listJobs(db, q, await stageTables.available(db));
  }

  /** The jobs list and the links around it. */
  async function listModel(q: JobsQuery) {
    const result = await page(q);
    const filters = filterParams(q);
    return {
      rows: result.rows.map(rowModel),
      filters,
      firstUrl: h.url('/', filters),
      nextUrl: result.next ? h.url('/', { ...filters, cursor: formatCursor(result.next) }) : null,
      fragmentUrl: h.url('/fragments/jobs', { ...filters, ...(q.cursor ? { cursor: formatCursor(q.cursor) } : {}) }),
      onFirstPage: q.cursor === null,
    };
  }

  async function sendHtml(reply: FastifyReply, template: string, data: Record<string, unknown>) {
    const html = await ctx.render(template, { h, ...data });
    return reply.type('text/html; charset=utf-8').send(html);
  }

  app.get('/', async (req, reply) => {
    const query = req.query as Record<string, unknown>;
    const common = {
      title: 'Jobs',
      page: 'jobs',
      csrf: ctx.csrfToken(reply),
      since: ctx.hub.currentId(),
      form: formValues(query),
      steps: STEP_OPTIONS,
      statuses: JOB_STATUSES,
      live: ctx.liveSource(),
    };
    let q: JobsQuery;
    try {
      q = parseJobsQuery(query);
    } catch (err) {
      if (!(err instanceof FilterError)) throw err;
      reply.code(400);
      return sendHtml(reply, 'jobs', { ...common, error: err.message, errorParam: err.param, list: null });
    }
    const list = await listModel(q);
    return sendHtml(reply, 'jobs', {
      ...common,
      error: null,
      errorParam: null,
      list,
      bulkUrl: h.url('/retry-failed', list.filters),
    });
  });

  /** The table body and pager alone, for the live updates (and the filters, with htmx). */
  app.get('/fragments/jobs', async (req, reply) => {
    const q = parseJobsQuery(req.query as Record<string, unknown>);
    return sendHtml(reply, 'partials/jobs-list', { list: await listModel(q) });
  });

  app.get<{ Params: { id: string } }>('/jobs/:id/row', async (req, reply) => {
    if (!isUuid(req.params.id)) throw new FilterError('id', 'not a job id');
    const db = ctx.pool();
    const row = await jobListRow(db, req.params.id, await stageTables.available(db));
    if (!row) return reply.code(404).send({ error: 'no such job' });
    return sendHtml(reply, 'partials/job-row', { r: rowModel(row) });
  });

  app.get('/api/jobs', async (req) => {
    const q = parseJobsQuery(req.query as Record<string, unknown>);
    const result = await page(q);
    return {
      jobs: result.rows.map((r) => ({
        job_id: r.jobId,
        tenant_id: r.tenantId,
        status: r.jobStatus,
        failure_reason: r.failureReason,
        job_step: r.currentStep,
        job_step_status: r.status,
        progress: { step: r.progress.current_step, status: r.progress.status, steps_passed: stepsPassed(r.progress) },
        variants: r.variants,
        created_at: r.createdAt.toISOString(),
        updated_at: r.updatedAt.toISOString(),
        chosen_variant_id: r.chosenVariantId,
        chosen_asset_id: r.chosenAssetId,
        input_asset_id: r.inputAssetId,
        product_name: r.productName,
      })),
      next_cursor: result.next ? formatCursor(result.next) : null,
    };
  });

  async function jobModel(id: string) {
    const view = await readJobView(ctx.pool(), id);
    if (!view) return null;
    const variants = view.variants.map((v) => ({ current_step: v.step, status: v.status }));
    const progress = progressOf({ current_step: view.step, status: view.status }, variants);
    return {
      view,
      status: jobStatusOf({ current_step: view.step, status: view.status, failure_reason: view.failureReason }),
      progress,
      segments: progressSegments(progress),
      passed: stepsPassed(progress),
      breakdown: scoreBreakdown(view),
      timeline: timelineOf(view),
    };
  }

  async function jobPage(req: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply, fragment: boolean) {
    if (!isUuid(req.params.id)) throw new FilterError('id', 'not a job id');
    const model = await jobModel(req.params.id);
    if (!model) {
      reply.code(404);
      return sendHtml(reply, fragment ? 'partials/message' : 'message', {
        title: '404',
        kind: 'error',
        message: `no job ${req.params.id}`,
      });
    }
    const data = { ...model, csrf: ctx.csrfToken(reply), steps: AUTOMATIC_STEPS };
    if (fragment) return sendHtml(reply, 'partials/job-live', data);
    return sendHtml(reply, 'job', {
      ...data,
      title: `Job ${shortId(model.view.id)}`,
      page: 'job',
      since: ctx.hub.currentId(),
      live: ctx.liveSource(),
    });
  }

  app.get<{ Params: { id: string } }>('/jobs/:id', async (req, reply) => {
    if (wantsJson(req)) {
      if (!isUuid(req.params.id)) throw new FilterError('id', 'not a job id');
      const model = await jobModel(req.params.id);
      if (!model) return reply.code(404).send({ error: 'no such job' });
      return {
        job: model.view,
        status: model.status,
        progress: model.progress,
        breakdown: model.breakdown,
        timeline: model.timeline,
      };
    }
    return jobPage(req, reply, isHtmx(req));
  });
  app.get<{ Params: { id: string } }>('/jobs/:id/live', async (req, reply) => jobPage(req, reply, true));

  app.get('/help', async (_req, reply) =>
    sendHtml(reply, 'help', { title: 'Help', page: 'help', steps: AUTOMATIC_STEPS.map((s) => STEP_GRAPH[s]) }),
  );

  app.get('/throughput', async () => await throughput(ctx.pool()));
};
