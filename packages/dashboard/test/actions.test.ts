/**
 * Actions (docs/dashboard.md, "Actions") against a real PostgreSQL: every
 * POST needs the CSRF cookie and a token of it (403 otherwise, nothing
 * changed); Retry of a job that is not failed is 409 with its state; Retry
 * and Cancel go through pipeline-core's retryJob and cancelJob; the bulk
 * retry shows its count first, acts on at most 1,000 of the filtered failed
 * jobs and answers with the number actually retried.
 */
import t from 'tap';
import { buildApp, csrf, jobState, seedJob, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url });
t.teardown(() => app.close());
const session = await csrf(app);

const JSON_ACCEPT = { accept: 'application/json' };

/** A job failed for good at planner (its variant given up), as the engine leaves it. */
async function failedJob(
  tenantId = 'actions_tenant',
  reason = 'planner failed after 3 attempts: boom',
): Promise<string> {
  const s = await seedJob(db.pool, { tenantId, variants: 1, variantStep: 'planner', variantStatus: 'failed' });
  await db.pool.query(`UPDATE jobs_variants SET given_up_at = now(), attempt = 3 WHERE job_id = $1`, [s.jobId]);
  await db.pool.query(`UPDATE jobs SET status = 'failed', failure_reason = $2 WHERE job_id = $1`, [s.jobId, reason]);
  return s.jobId;
}

function post(url: string, o: { token?: string | null; cookie?: string | null; body?: string; form?: boolean } = {}) {
  const headers: Record<string, string> = { ...JSON_ACCEPT };
  const cookie = o.cookie === undefined ? session.cookie : o.cookie;
  const token = o.token === undefined ? session.token : o.token;
  if (cookie) headers.cookie = cookie;
  if (token && !o.form) headers['x-csrf-token'] = token;
  if (o.form) headers['content-type'] = 'application/x-www-form-urlencoded';
  return app.inject({ method: 'POST', url, headers, ...(o.body !== undefined ? { payload: o.body } : {}) });
}

t.test('CSRF: a missing or wrong token, or no cookie, is 403 and changes nothing', async (t) => {
  const id = await failedJob();
  const before = await jobState(db.pool, id);
  const url = `/pipeline/jobs/${id}/retry`;
  for (const [what, o] of [
    ['no token', { token: null }],
    ['a wrong token', { token: 'not-a-token' }],
    ['no cookie', { cookie: null }],
    ["another browser's cookie", { cookie: 'pipeline_dashboard_csrf=somebody-else' }],
  ] as const) {
    const res = await post(url, o);
    t.equal(res.statusCode, 403, what);
    t.match(res.json(), { error: /CSRF token/, code: 'csrf' }, `${what}: says why`);
  }
  const html = await app.inject({ method: 'POST', url, headers: { cookie: session.cookie } });
  t.equal(html.statusCode, 403);
  t.match(html.body, /missing or wrong CSRF token/, 'a browser gets a page saying so');
  t.same(await jobState(db.pool, id), before, 'nothing changed');
  for (const u of [`/pipeline/jobs/${id}/cancel`, '/pipeline/retry-failed']) {
    t.equal((await post(u, { token: null })).statusCode, 403, `${u} is protected too`);
  }
  const form = await post(url, { form: true, body: `_csrf=${encodeURIComponent(session.token)}` });
  t.equal(form.statusCode, 200, 'the token may come in the form body (no script)');
});

t.test('Retry: a failed job starts again; a job that is not failed is 409 with its state', async (t) => {
  const id = await failedJob();
  const res = await post(`/pipeline/jobs/${id}/retry`);
  t.equal(res.statusCode, 200);
  t.match(res.json(), {
    retried: true,
    job_id: id,
    previous_failure_reason: 'planner failed after 3 attempts: boom',
    requeued: [{ step: 'planner', attempt: 4 }],
  });
  const j = await jobState(db.pool, id);
  t.equal(j.failure_reason, null, "the job's failure is cleared (retryJob)");

  const again = await post(`/pipeline/jobs/${id}/retry`);
  t.equal(again.statusCode, 409, 'retrying a job that is not failed');
  t.match(again.json(), {
    error: 'not_failed',
    job_id: id,
    status: 'running',
    current_step: 'img_gen',
    failure_reason: null,
  });

  const done = await seedJob(db.pool, { variants: 1, jobStep: 'instagram_feed_gen', jobStatus: 'done' });
  const r = await post(`/pipeline/jobs/${done.jobId}/retry`);
  t.equal(r.statusCode, 409);
  t.match(r.json(), { status: 'done', current_step: 'instagram_feed_gen', step_status: 'done' });
  const htmx = await app.inject({
    method: 'POST',
    url: `/pipeline/jobs/${done.jobId}/retry`,
    headers: { cookie: session.cookie, 'x-csrf-token': session.token, 'hx-request': 'true' },
  });
  t.equal(htmx.statusCode, 409);
  t.match(htmx.body, /Not retried: the job is done \(at instagram_feed_gen, done\)/, 'the page is told why');
  t.notMatch(htmx.body, /<html/, 'a fragment for htmx');
  t.notMatch(htmx.body, />Back</, 'no link back to the page htmx shows it on');
  const plain = await app.inject({
    method: 'POST',
    url: `/pipeline/jobs/${done.jobId}/retry`,
    headers: { cookie: session.cookie, 'x-csrf-token': session.token },
  });
  t.equal(plain.statusCode, 409);
  t.match(plain.body, new RegExp(`<a href="/pipeline/jobs/${done.jobId}">Back</a>`), 'a page of its own links back');

  t.equal((await post('/pipeline/jobs/00000000-0000-4000-8000-000000000000/retry')).statusCode, 404);
  t.equal((await post('/pipeline/jobs/not-a-uuid/retry')).statusCode, 400);
});

t.test('Cancel: a running job is cancelled; a finished or failed one is 409', async (t) => {
  const s = await seedJob(db.pool, { variants: 1 });
  const res = await post(`/pipeline/jobs/${s.jobId}/cancel`);
  t.equal(res.statusCode, 200);
  t.match(res.json(), { cancelled: true, job_id: s.jobId });
  t.match(await jobState(db.pool, s.jobId), { status: 'failed', failure_reason: 'cancelled' });
  const again = await post(`/pipeline/jobs/${s.jobId}/cancel`);
  t.equal(again.statusCode, 409);
  t.match(again.json(), { error: 'not_running', status: 'failed', failure_reason: 'cancelled' });
});

t.test('bulk retry: the count first, then at most 1,000, answered with the number retried', async (t) => {
  const tenant = 'bulk_tenant';
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(await failedJob(tenant));
  await failedJob(tenant, 'cancelled');
  await seedJob(db.pool, { tenantId: tenant, variants: 1 });
  await failedJob('another_tenant');

  const preview = await app.inject({ url: `/pipeline/retry-failed?tenant=${tenant}`, headers: JSON_ACCEPT });
  t.equal(preview.statusCode, 200);
  t.match(preview.json(), { count: 3, more: false, max: 1000 }, 'failed jobs of the filter, cancelled ones left out');
  const html = await app.inject({
    url: `/pipeline/retry-failed?tenant=${tenant}`,
    headers: { cookie: session.cookie },
  });
  t.match(html.body, /<b>3<\/b> failed jobs match/, 'the count, shown before confirming');
  t.match(html.body, /<input type="hidden" name="tenant" value="bulk_tenant">/, 'the confirmation carries the filters');
  t.match(html.body, /Retry 3 jobs<\/button>/);
  t.match(
    (await app.inject({ url: `/pipeline/retry-failed?tenant=${tenant}&status=running`, headers: JSON_ACCEPT })).json(),
    { count: 0 },
    'a status filter other than failed selects none',
  );
  t.equal((await app.inject({ url: '/pipeline/retry-failed?status=stuck', headers: JSON_ACCEPT })).statusCode, 400);

  const run = await post('/pipeline/retry-failed', {
    form: true,
    body: `_csrf=${encodeURIComponent(session.token)}&tenant=${tenant}`,
  });
  t.equal(run.statusCode, 200);
  t.match(run.json(), { retried: 3, errors: [], more: false });
  t.same(new Set(run.json().job_ids), new Set(ids));
  for (const id of ids) t.equal((await jobState(db.pool, id)).failure_reason, null, 'retried');
  t.match((await post(`/pipeline/retry-failed?tenant=${tenant}`)).json(), { retried: 0 }, 'nothing left to retry');
});

t.test('bulk retry acts on 1,000 jobs at most and says more remain', async (t) => {
  const tenant = 'bulk_many';
  // 1,001 failed jobs with a variant given up at planner, in three statements.
  await db.pool.query(
    `INSERT INTO jobs (tenant_id, current_step, status, failure_reason)
     SELECT $1, 'img_gen', 'failed', 'planner failed after 3 attempts' FROM generate_series(1, 1001)`,
    [tenant],
  );
  await db.pool.query(
    `INSERT INTO jobs_variants (job_id, creation_order, current_step, status, attempt, given_up_at)
     SELECT job_id, 1, 'planner', 'failed', 3, now() FROM jobs WHERE tenant_id = $1`,
    [tenant],
  );
  const preview = await app.inject({ url: `/pipeline/retry-failed?tenant=${tenant}`, headers: JSON_ACCEPT });
  t.match(preview.json(), { count: 1000, more: true });
  const html = await app.inject({
    url: `/pipeline/retry-failed?tenant=${tenant}`,
    headers: { cookie: session.cookie },
  });
  t.match(html.body, /more than 1000: this retries the 1000 oldest failures/);
  const run = await post(`/pipeline/retry-failed?tenant=${tenant}`);
  t.match(run.json(), { retried: 1000, more: true });
  const left = await db.pool.query(
    `SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND failure_reason IS NOT NULL`,
    [tenant],
  );
  t.equal(left.rows[0].n, 1, 'one left for the next action');
});
