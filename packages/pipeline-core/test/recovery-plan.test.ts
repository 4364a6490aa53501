// The recovery sweep must stay an index scan however many finished rows exist:
// 100k finished jobs and variants, a few live ones, and EXPLAIN of every
// recovery query must show no sequential scan of jobs or jobs_variants.
import t from 'tap';
import { fanInScanSql, jobScanSql, variantScanSql } from '../src/sql/recoveryScan.js';
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
for (let i = 0; i < 5; i++) await seedJob(db.pool, { variants: 3, variantStep: 'planner', variantStatus: 'done' });
await db.pool.query('ANALYZE jobs');
await db.pool.query('ANALYZE jobs_variants');

async function plan(sql: string, params: unknown[]): Promise<string> {
  const r = await db.pool.query(`EXPLAIN ${sql}`, params);
  return r.rows.map((x: { 'QUERY PLAN': string }) => x['QUERY PLAN']).join('\n');
}

const cases: Array<[string, string, unknown[], RegExp]> = [
  ['variant scan', variantScanSql(false), [86400, 60000, 5000], /jobs_variants_actionable_idx/],
  ['job-level scan', jobScanSql(false), [86400, 60000, 5000], /jobs_active_idx/],
  ['fan-in scan', fanInScanSql(false), [86400, 'all', 5000], /jobs_variant_phase_idx/],
];

for (const [name, sql, params, index] of cases) {
  t.test(`${name} uses its partial index, no Seq Scan`, async (t) => {
    const p = await plan(sql, params);
    t.match(p, index, `plan uses the index:\n${p}`);
    t.notMatch(p, /Seq Scan on jobs_variants|Seq Scan on jobs\b/, `no sequential scan:\n${p}`);
  });
}
