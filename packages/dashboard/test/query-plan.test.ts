/**
 * The jobs page stays fast at any size (docs/dashboard.md, "How the jobs page
 * stays fast"): on 100,000 jobs (300,000 variants), the first and the next
 * page of every filter are planned through an index: no sequential scan of
 * jobs or jobs_variants, and no sort of a large set. Most filters walk an
 * index in page order and stop after a page; where the planner expects few
 * matches (a tenant's failed jobs, the jobs with a variant at one unfinished
 * step) it may fetch them all through their index and sort those few, which
 * is as fast: a sort is allowed over at most SORT_BOUND estimated rows.
 * The time of a page at 1,000,000 jobs is measured by `pnpm bench -- --only
 * dashboard` (docs/benchmarks.md), not asserted here.
 */
import t from 'tap';
import { type JobsQuery, parseJobsQuery } from '../src/filters.js';
import { pageIdsSql } from '../src/sql/jobsPage.js';
import { seedBulkVariants } from '@feedlyai/test-helpers';
import { testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

const JOBS = 100_000;

/** Most rows a plan may sort (estimated): a handful of pages, never the table. */
const SORT_BOUND = 5_000;

// 97 tenants; 95 % done, 3 % failed for good, 1 % in the job-level phase, 1 % in the variant phase.
await db.pool.query(
  `INSERT INTO jobs (tenant_id, current_step, status, failure_reason, created_at)
   SELECT 'tenant_' || (g % 97),
          CASE WHEN g % 100 < 95 THEN 'instagram_feed_gen' WHEN g % 100 = 97 THEN 'ad_copy_gen_kor' ELSE 'img_gen' END,
          CASE WHEN g % 100 < 95 THEN 'done' WHEN g % 100 < 98 AND g % 100 <> 97 THEN 'failed' ELSE 'running' END,
          CASE WHEN g % 100 IN (95, 96, 98) THEN 'planner failed after 3 attempts' END,
          timestamptz '2026-01-01' + g * interval '7 seconds'
     FROM generate_series(1, $1::int) g`,
  [JOBS],
);
await seedBulkVariants(db.pool);
await db.pool.query('ANALYZE jobs');
await db.pool.query('ANALYZE jobs_variants');

interface PlanNode {
  'Node Type': string;
  'Plan Rows': number;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodes(n: PlanNode): PlanNode[] {
  return [n, ...(n.Plans ?? []).flatMap(nodes)];
}

async function plan(q: JobsQuery): Promise<PlanNode[]> {
  const params: unknown[] = [];
  const sql = pageIdsSql(q, params);
  const r = await db.pool.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
  return nodes((r.rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0]?.Plan as PlanNode);
}

/** The cursor of the 50th row of a page (the next page starts after it). */
async function cursorAfterFirstPage(q: JobsQuery): Promise<string | null> {
  const params: unknown[] = [];
  const r = await db.pool.query(pageIdsSql(q, params), params);
  const last = r.rows[q.limit - 1];
  if (!last) return null;
  const at = await db.pool.query(
    `SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`,
    [last.created_at],
  );
  return `${at.rows[0].at}~${last.job_id}`;
}

const CASES: Array<[string, Record<string, string>]> = [
  ['no filter', {}],
  ['a tenant', { tenant: 'tenant_42' }],
  ['status done', { status: 'done' }],
  ['status failed', { status: 'failed' }],
  ['status running', { status: 'running' }],
  ['a tenant, failed', { tenant: 'tenant_7', status: 'failed' }],
  ['a tenant, running', { tenant: 'tenant_8', status: 'running' }],
  ['a time range', { from: '2026-01-03T00:00:00Z', to: '2026-01-05T00:00:00Z' }],
  ['a job step', { step: 'ad_copy_gen_kor' }],
  ['a variant step', { step: 'planner' }],
  ['iou_eval', { step: 'iou_eval' }],
  ['a tenant and a variant step', { tenant: 'tenant_9', step: 'overlay' }],
  ['a tenant, done, a time range', { tenant: 'tenant_3', status: 'done', from: '2026-01-02T00:00:00Z' }],
];

for (const [name, query] of CASES) {
  t.test(`${name}: first and next page through an index`, async (t) => {
    const first = parseJobsQuery(query);
    const cursor = await cursorAfterFirstPage(first);
    const pages: Array<[string, JobsQuery]> = [['first page', first]];
    if (cursor) pages.push(['next page', parseJobsQuery({ ...query, cursor })]);
    else t.comment('fewer than one page of matches: first page only');
    for (const [which, q] of pages) {
      const p = await plan(q);
      const described = p.map((n) => `${n['Node Type']}${n['Index Name'] ? `(${n['Index Name']})` : ''}`).join(' > ');
      const seq = p.filter(
        (n) => n['Node Type'] === 'Seq Scan' && ['jobs', 'jobs_variants'].includes(n['Relation Name'] ?? ''),
      );
      t.same(seq, [], `${which}: no sequential scan of jobs or jobs_variants (${described})`);
      t.ok(
        p.some((n) => (n['Index Name'] ?? '').length > 0),
        `${which}: an index is used (${described})`,
      );
      const sorted = p
        .filter((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort')
        .map((n) => Math.max(0, ...(n.Plans ?? []).map((c) => c['Plan Rows'])));
      t.ok(
        sorted.every((rows) => rows <= SORT_BOUND),
        `${which}: no sort of more than ${SORT_BOUND} rows (${sorted.length ? `sorts ${sorted.join(', ')}` : 'none'}; ${described})`,
      );
    }
  });
}
