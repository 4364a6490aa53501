/**
 * Bulk seeding for the benchmarks: one statement per population.
 */
import type pg from 'pg';

type Db = Pick<pg.Pool, 'query'> | Pick<pg.ClientBase, 'query'>;

export interface BulkSeed {
  jobs: number;
  variantsPerJob: number;
  /** State of every variant after seeding. */
  variantStep: string;
  variantStatus: string;
  jobStep?: string;
  jobStatus?: string;
  tenantId?: string;
  /** Also insert one job_inputs row per job (the real stage server needs it). */
  withInputs?: boolean;
}

/**
 * Inserts `jobs` jobs with `variantsPerJob` variants each in ONE statement
 * (`INSERT ... SELECT generate_series` with the jobs in a CTE). INSERTs fire no
 * state-change notification.
 */
export async function bulkSeed(db: Db, o: BulkSeed): Promise<number> {
  const r = await db.query<{ n: number }>(
    `WITH j AS (
       INSERT INTO jobs (tenant_id, current_step, status, completed_at)
       SELECT $1, $2, $3, CASE WHEN $2 = 'instagram_feed_gen' AND $3 = 'done' THEN now() END
         FROM generate_series(1, $4::int)
       RETURNING job_id),
     v AS (
       INSERT INTO jobs_variants (job_id, creation_order, current_step, status)
       SELECT j.job_id, g, $5, $6 FROM j CROSS JOIN generate_series(1, $7::int) g
       RETURNING 1),
     i AS (
       INSERT INTO job_inputs (job_id, desc_kor, tone_style_id)
       SELECT j.job_id, '부드러운 산미와 고소한 향이 어우러진 핸드드립 커피',
              (SELECT tone_style_id FROM tone_styles WHERE code = 'friendly')
         FROM j WHERE $8::boolean
       RETURNING 1)
     SELECT (SELECT count(*) FROM v)::int AS n`,
    [
      o.tenantId ?? 'bench_tenant',
      o.jobStep ?? o.variantStep,
      o.jobStatus ?? 'queued',
      o.jobs,
      o.variantStep,
      o.variantStatus,
      o.variantsPerJob,
      o.withInputs ?? false,
    ],
  );
  return r.rows[0]?.n ?? 0;
}

/** Jobs at (instagram_feed_gen,'done'). */
export async function jobsDone(db: Db): Promise<number> {
  const r = await db.query<{ n: number }>(
    `/* bench_probe */ SELECT count(*)::int AS n FROM jobs WHERE current_step = 'instagram_feed_gen' AND status = 'done'`,
  );
  return r.rows[0]?.n ?? 0;
}
