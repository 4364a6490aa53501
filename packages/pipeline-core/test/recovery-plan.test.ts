// The recovery sweep must stay index scans however many finished or parked
// rows exist (docs/healing.md, "recovery that cannot be starved"): 100k
// finished jobs and variants, 10k variants parked upstream at
// (user_img_input,*) and (img_gen,'queued'), a few live ones. EXPLAIN of every
// recovery query must show its partial index and no sequential scan, and a
// keyset walk must reach the live rows without reading the parked ones.
import t from 'tap';
import {
  fanInPageSql,
  jobPageSql,
  scanQueued,
  scanVariantPage,
  type ScanCursor,
  variantPageSql,
} from '../src/sql/recoveryScan.js';
import { seedJob, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());

await db.pool.query(`
  INSERT INTO jobs (job_id, tenant_id, current_step, status, updated_at, completed_at)
  SELECT gen_random_uuid(), 'bulk', 'instagram_feed_gen', 'done', now() - (g % 48) * interval '1 hour', now()
    FROM generate_series(1, 100000) g`);
await db.pool.query(`
  INSERT INTO jobs_variants (job_id, current_step, status, updated_at)
  SELECT job_id, 'iou_eval', 'done', updated_at FROM jobs WHERE tenant_id = 'bulk'`);
// Parked upstream, aged 5 min - 23 h: older than every live row, so an "oldest first, LIMIT n" scan would see only them.
await db.pool.query(`
  INSERT INTO jobs (job_id, tenant_id, current_step, status, updated_at)
  SELECT gen_random_uuid(), 'parked', 'img_gen', 'queued', now() - interval '23 hours' FROM generate_series(1, 3334)`);
await db.pool.query(`
  INSERT INTO jobs_variants (job_id, current_step, status, updated_at)
  SELECT j.job_id, CASE WHEN g % 2 = 0 THEN 'user_img_input' ELSE 'img_gen' END,
         CASE WHEN g % 2 = 0 THEN 'done' ELSE 'queued' END,
         now() - interval '5 minutes' - (g % 1000) * interval '1 minute'
    FROM jobs j CROSS JOIN generate_series(1, 3) g WHERE j.tenant_id = 'parked'`);
const live: Array<{ variantIds: string[] }> = [];
for (let i = 0; i < 5; i++)
  live.push(await seedJob(db.pool, { variants: 3, variantStep: 'planner', variantStatus: 'done' }));
await db.pool.query('ANALYZE jobs');
await db.pool.query('ANALYZE jobs_variants');

async function plan(sql: string, params: unknown[]): Promise<string> {
  const r = await db.pool.query(`EXPLAIN ${sql}`, params);
  return r.rows.map((x: { 'QUERY PLAN': string }) => x['QUERY PLAN']).join('\n');
}

const cases: Array<[string, string, unknown[], RegExp]> = [
  ['variant page', variantPageSql(false), [86400, 1000, null, null], /jobs_variants_recovery_idx/],
  [
    'variant page (after a cursor)',
    variantPageSql(false),
    [86400, 1000, new Date(Date.now() - 3600_000).toISOString(), '00000000-0000-0000-0000-000000000000'],
    /jobs_variants_recovery_idx/,
  ],
  // Since the dashboard's partial indexes of unfinished jobs (migrations 6 and 7), the planner may walk those
  // instead (a bitmap of the unfinished jobs, then a sort of what matches): still no Seq Scan, and bounded by the
  // unfinished jobs, not the history.
  [
    'job-level page',
    jobPageSql(false),
    [86400, 1000, null, null],
    /jobs_job_phase_recovery_idx|jobs_running_created_idx|jobs_unfinished_created_idx/,
  ],
  ['fan-in page', fanInPageSql(false), [86400, 'all', 1000, null], /jobs_variant_phase_idx|jobs_active_idx/],
];

for (const [name, sql, params, index] of cases) {
  t.test(`${name} uses its partial index, no Seq Scan`, async (t) => {
    const p = await plan(sql, params);
    t.match(p, index, `plan uses the index:\n${p}`);
    t.notMatch(p, /Seq Scan on jobs_variants|Seq Scan on jobs\b/, `no sequential scan:\n${p}`);
  });
}

t.test('the keyset walk reaches every live row and never reads a parked one', async (t) => {
  const seen = new Set<string>();
  let cursor: ScanCursor | null = null;
  let pages = 0;
  do {
    const p = await scanVariantPage(db.pool, { windowSeconds: 86400, runningOlderThanMs: 60000, cursor, pageSize: 4 });
    pages++;
    for (const r of p.rows) {
      t.not(r.step, 'user_img_input', 'user_img_input is never read');
      t.not(r.step, 'img_gen', 'img_gen (not done) is never read');
      seen.add(r.jobVariantsId as string);
    }
    cursor = p.next;
  } while (cursor && pages < 100);
  const expected = live.flatMap((j) => j.variantIds);
  t.same([...seen].sort(), [...expected].sort(), 'every live variant found, in pages of 4');
  t.ok(pages >= 4, `walked ${pages} pages`);
});

t.test('the queued scan uses the claimer index', async (t) => {
  const p = await plan(
    `SELECT 1 FROM jobs_variants x WHERE x.status = 'queued' AND x.current_step NOT IN ('user_img_input', 'img_gen')
       AND x.claimed_by = ANY($1::text[])`,
    [['gone']],
  );
  t.match(p, /jobs_variants_queued_claimer_idx/, p);
  const rows = await scanQueued(db.pool, { self: 'me', claimers: 'all-but-live-peers', live: ['me'] });
  t.same(rows, [], '10k parked queued rows are not claims');
});
