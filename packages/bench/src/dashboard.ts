/**
 * Dashboard pages (docs/benchmarks.md, "Dashboard pages"): the jobs page of
 * @feedlyai/dashboard at 1,000,000 jobs (3,000,000 variants; every finished
 * job with its feed row and its chosen creative), first page and next page,
 * for each filter the page offers. Each sample is one whole page as a browser
 * gets it (`GET /pipeline/?...` through the plugin on a Fastify host:
 * the keyset query, the row details and the HTML), after VACUUM ANALYZE, with
 * a few warm-up requests first. The target is 50 ms per page.
 */
import { performance } from 'node:perf_hooks';
import { dashboard } from '@feedlyai/dashboard';
import { seedBulkVariants } from '@feedlyai/test-helpers';
import Fastify from 'fastify';
import pg from 'pg';
import { type BenchServer, dropDatabase } from './db.js';
import { type Percentiles, percentiles, round } from './stats.js';

/** A page of the dashboard is to take at most this long (issue 11). */
export const PAGE_TARGET_MS = 50;

export interface DashboardPageResult {
  filter: string;
  query: Record<string, string>;
  /** Rows on the first page. */
  rows: number;
  /** The whole HTML page. */
  first: Percentiles;
  next: Percentiles | null;
  /** The same first page as JSON (`/api/jobs`: the query and the row details without the HTML). */
  firstJson: Percentiles;
}

export interface DashboardBenchResult {
  jobs: number;
  variants: number;
  seedSeconds: number;
  samples: number;
  targetMs: number;
  pages: DashboardPageResult[];
  /** Every first and next page's p50 within the target. */
  withinTarget: boolean;
}

/**
 * Seeds `jobs` jobs in 97 tenants, one every 7 s: 95 % done (variants at
 * ('iou_eval','done'), a feed row choosing variant 1, its creative), 3 %
 * failed for good at planner, 1 % in the job-level phase, 1 % in the variant
 * phase (variants at vlm_analyze, planner, overlay or ocr_eval).
 */
async function seed(db: pg.Pool, jobs: number): Promise<void> {
  await db.query(
    `INSERT INTO jobs (tenant_id, current_step, status, failure_reason, created_at, completed_at)
     SELECT 'tenant_' || (g % 97),
            CASE WHEN g % 100 < 95 THEN 'instagram_feed_gen' WHEN g % 100 = 97 THEN 'ad_copy_gen_kor' ELSE 'img_gen' END,
            CASE WHEN g % 100 < 95 THEN 'done' WHEN g % 100 IN (95, 96, 98) THEN 'failed' ELSE 'running' END,
            CASE WHEN g % 100 IN (95, 96, 98) THEN 'planner failed after 3 attempts' END,
            now() - ($1::int - g) * interval '7 seconds',
            CASE WHEN g % 100 < 95 THEN now() - ($1::int - g) * interval '7 seconds' + interval '40 seconds' END
       FROM generate_series(1, $1::int) g`,
    [jobs],
  );
  await seedBulkVariants(db);
  await db.query(
    `INSERT INTO stage_overlays (job_id, job_variants_id, attempt, method, headline, texts, treatment, layout, image_key, width, height)
     SELECT v.job_id, v.job_variants_id, 1, 'canvas', 'Slow mornings', '{}', '{}', '{"lines":[]}', 'overlay/x.png', 1080, 1080
       FROM jobs_variants v JOIN jobs j USING (job_id)
      WHERE j.current_step = 'instagram_feed_gen' AND v.creation_order = 1`,
  );
  await db.query(
    `INSERT INTO stage_instagram_feeds (job_id, attempt, method, chosen_variant_id, scores, caption, hashtags, feed_image_key)
     SELECT v.job_id, 1, 'template', v.job_variants_id, '[]', '오늘의 커피', '[]', 'feed/x.png'
       FROM jobs_variants v JOIN jobs j USING (job_id)
      WHERE j.current_step = 'instagram_feed_gen' AND v.creation_order = 1`,
  );
  for (const table of ['jobs', 'jobs_variants', 'stage_overlays', 'stage_instagram_feeds']) {
    await db.query(`VACUUM ANALYZE ${table}`);
  }
}

/** The filters measured; the time range is a slice in the middle of the jobs' history. */
function filters(from: string, to: string): Array<[string, Record<string, string>]> {
  return [
    ['no filter', {}],
    ['a tenant', { tenant: 'tenant_42' }],
    ['status running', { status: 'running' }],
    ['status failed', { status: 'failed' }],
    ['status done', { status: 'done' }],
    ['a tenant, failed', { tenant: 'tenant_7', status: 'failed' }],
    ['a variant step (planner)', { step: 'planner' }],
    ['a job step (ad_copy_gen_kor)', { step: 'ad_copy_gen_kor' }],
    ['a time range (mid-history)', { from, to }],
  ];
}

export async function dashboardBenchmark(
  bench: BenchServer,
  o: { jobs: number; samples: number; log?: (l: string) => void },
): Promise<DashboardBenchResult> {
  const url = await bench.freshDatabase('dashboard');
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  admin.on('error', () => {});
  const app = Fastify({ logger: false });
  try {
    const t0 = performance.now();
    await seed(admin, o.jobs);
    const seedSeconds = round((performance.now() - t0) / 1000, 1);
    o.log?.(`  dashboard: seeded ${o.jobs} jobs and ${3 * o.jobs} variants in ${seedSeconds} s`);
    const range = await admin.query<{ from: Date; to: Date }>(
      `SELECT min(created_at) + (max(created_at) - min(created_at)) / 2 AS from,
              min(created_at) + (max(created_at) - min(created_at)) * 0.6 AS to FROM jobs`,
    );
    const r = range.rows[0] as { from: Date; to: Date };

    await app.register(dashboard, { prefix: '/pipeline', allowAnonymous: true, connectionString: url, env: {} });
    await app.ready();
    const get = async (path: string): Promise<{ ms: number; status: number; body: string }> => {
      const start = performance.now();
      const res = await app.inject({ url: path });
      return { ms: performance.now() - start, status: res.statusCode, body: res.body };
    };
    const time = async (path: string): Promise<Percentiles> => {
      for (let i = 0; i < 3; i++) await get(path);
      const samples: number[] = [];
      for (let i = 0; i < o.samples; i++) {
        const r = await get(path);
        if (r.status !== 200) throw new Error(`${path} answered ${r.status}`);
        samples.push(r.ms);
      }
      return percentiles(samples);
    };

    const pages: DashboardPageResult[] = [];
    for (const [filter, query] of filters(r.from.toISOString(), r.to.toISOString())) {
      const qs = new URLSearchParams(query).toString();
      const api = JSON.parse((await get(`/pipeline/api/jobs?${qs}`)).body) as {
        jobs: unknown[];
        next_cursor: string | null;
      };
      const first = await time(`/pipeline/?${qs}`);
      const firstJson = await time(`/pipeline/api/jobs?${qs}`);
      const next = api.next_cursor
        ? await time(`/pipeline/?${new URLSearchParams({ ...query, cursor: api.next_cursor })}`)
        : null;
      pages.push({ filter, query, rows: api.jobs.length, first, next, firstJson });
      o.log?.(
        `  dashboard: ${filter}: ${api.jobs.length} rows, first page p50 ${first.p50} ms, next page p50 ${next?.p50 ?? '-'} ms`,
      );
    }
    return {
      jobs: o.jobs,
      variants: 3 * o.jobs,
      seedSeconds,
      samples: o.samples,
      targetMs: PAGE_TARGET_MS,
      pages,
      withinTarget: pages.every((p) => p.first.p50 <= PAGE_TARGET_MS && (p.next?.p50 ?? 0) <= PAGE_TARGET_MS),
    };
  } finally {
    await app.close();
    await admin.end().catch(() => {});
    await dropDatabase(bench.server, url).catch(() => {});
  }
}
