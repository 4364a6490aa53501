/**
 * The two migration sets (docs/migrations.md): a database migrated by the
 * code of before the split (pipeline-core's five migrations, stage tables
 * included, from a frozen copy in fixtures/) upgrades in place when today's
 * migrator applies both sets: nothing lost, each set's tracking table right,
 * the same schema as a fresh database, and a second run changes nothing.
 */
import { CORE_MIGRATION_SET, latestMigration, migrate } from '@feedlyai/pipeline-core';
import { createTestDatabase, seedJob } from '@feedlyai/test-helpers';
import type pg from 'pg';
import t from 'tap';
import { STAGE_MIGRATION_SET } from '../src/migrations/index.js';
import { MIGRATIONS_BEFORE_SPLIT } from './fixtures/core-migrations-before-split/index.js';

const coreIds = CORE_MIGRATION_SET.migrations.map((m) => m.id);
const stageIds = STAGE_MIGRATION_SET.migrations.map((m) => m.id);

/** What pipeline-core's migrate() did before the split: one table, one transaction, each row then its SQL. */
async function migrateBeforeSplit(db: pg.Pool): Promise<void> {
  const c = await db.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1, $2)', [0x0feed1a1, 1]);
    await c.query(`CREATE TABLE IF NOT EXISTS feedly_migrations (
      id integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    for (const m of MIGRATIONS_BEFORE_SPLIT) {
      await c.query('INSERT INTO feedly_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
      await c.query(m.sql);
    }
    await c.query('COMMIT');
  } finally {
    c.release();
  }
}

/** The schema as rows: columns, indexes, constraints, triggers, functions of the public schema. */
async function schema(db: pg.Pool): Promise<Record<string, string[]>> {
  const rows = async (sql: string) => (await db.query<{ x: string }>(sql)).rows.map((r) => r.x);
  return {
    columns: await rows(
      `SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') AS x
         FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1`,
    ),
    indexes: await rows(`SELECT indexdef AS x FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`),
    constraints: await rows(
      `SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) AS x FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace ORDER BY 1`,
    ),
    triggers: await rows(
      `SELECT tgrelid::regclass::text || ' ' || pg_get_triggerdef(oid) AS x FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`,
    ),
    functions: await rows(
      `SELECT pg_get_functiondef(p.oid) AS x FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1`,
    ),
  };
}

async function tracked(db: pg.Pool, table: string): Promise<number[]> {
  return (await db.query<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`)).rows.map((r) => r.id);
}

async function migrateBoth(url: string) {
  return [await migrate(url), await migrate(url, { set: STAGE_MIGRATION_SET })];
}

t.test('in place: a database migrated before the split keeps every row and ends like a fresh one', async (t) => {
  const old = await createTestDatabase({}); // empty, no migration
  t.teardown(() => old.close());
  await migrateBeforeSplit(old.pool);
  t.same(await tracked(old.pool, 'feedly_migrations'), [1, 2, 3, 4, 5], 'the old state: five ids, one table');

  // Rows in the engine's tables and in the stage server's.
  const job = await seedJob(old.pool, { variants: 1, imageUrl: 'inputs/coffee.png' });
  const v = job.variantIds[0] as string;
  await old.pool.query(
    `INSERT INTO stage_vlm_analyses (job_id, job_variants_id, attempt, method, usable, description) VALUES ($1, $2, 1, 'heuristic', true, 'kept')`,
    [job.jobId, v],
  );
  await old.pool.query(
    `INSERT INTO job_ad_copies (job_id, headline_eng, eng_method) VALUES ($1, 'Kept headline', 'input')`,
    [job.jobId],
  );
  await old.pool.query(
    `INSERT INTO stage_run_timings (job_id, job_variants_id, step, attempt, outcome, received_at, admitted_at, wait_ms, work_ms)
     VALUES ($1, $2, 'vlm_analyze', 1, 'done', now(), now(), 5, 50)`,
    [job.jobId, v],
  );
  await old.pool.query(`UPDATE image_assets SET job_id = $1, job_variants_id = $2 WHERE image_asset_id = $3`, [
    job.jobId,
    v,
    job.imageAssetId,
  ]);
  const before = await schema(old.pool);

  const [core, stage] = await migrateBoth(old.url);
  t.same(
    core?.applied,
    coreIds.filter((id) => id > 5),
    "the engine's set applies only what came after 5",
  );
  t.same(stage?.applied, stageIds, "the stage server's set records its migrations (their tables already exist)");
  t.same(await tracked(old.pool, 'feedly_migrations'), coreIds, "the engine's tracking: every id, 2 and 5 kept");
  t.same(await tracked(old.pool, 'stage_api_migrations'), stageIds, "the stage server's tracking");

  const after = await schema(old.pool);
  for (const [kind, list] of Object.entries(before)) {
    const now = new Set(after[kind]);
    t.same(
      list.filter((x) => !now.has(x)),
      [],
      `no ${kind} lost`,
    );
  }
  const kept = await old.pool.query(
    `SELECT (SELECT description FROM stage_vlm_analyses WHERE job_variants_id = $2) AS description,
            (SELECT headline_eng FROM job_ad_copies WHERE job_id = $1) AS headline,
            (SELECT work_ms FROM stage_run_timings WHERE job_id = $1) AS work_ms,
            (SELECT job_variants_id FROM image_assets WHERE image_asset_id = $3) AS asset_variant,
            (SELECT count(*)::int FROM jobs_variants WHERE job_id = $1) AS variants`,
    [job.jobId, v, job.imageAssetId],
  );
  t.same(kept.rows[0], { description: 'kept', headline: 'Kept headline', work_ms: 50, asset_variant: v, variants: 1 });

  const fresh = await createTestDatabase({});
  t.teardown(() => fresh.close());
  await migrateBoth(fresh.url);
  const want = await schema(fresh.pool);
  t.same(after, want, 'the upgraded schema is the schema of a fresh database');

  const again = await migrateBoth(old.url);
  t.same(
    again.map((r) => r.applied),
    [[], []],
    're-running is a no-op',
  );
  t.same(await schema(old.pool), want, 'and changes nothing');
});

t.test('a fresh database: both sets, each tracked apart; the stage tables come from the stage set', async (t) => {
  const db = await createTestDatabase({});
  t.teardown(() => db.close());
  const core = await migrate(db.url);
  t.same(core.applied, coreIds);
  const noStage = await db.pool.query("SELECT to_regclass('stage_overlays') IS NULL AS missing");
  t.equal(noStage.rows[0]?.missing, true, "the engine's set alone creates no stage table");
  const stage = await migrate(db.url, { set: STAGE_MIGRATION_SET });
  t.same(stage, { set: 'stage-api', applied: stageIds, current: latestMigration(STAGE_MIGRATION_SET) });
  t.same(await tracked(db.pool, 'feedly_migrations'), coreIds);
  t.same(await tracked(db.pool, 'stage_api_migrations'), stageIds);
  const tables = await db.pool.query<{ name: string }>(
    `SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'
        AND (tablename LIKE 'stage\\_%' OR tablename = 'job_ad_copies') ORDER BY 1`,
  );
  t.same(
    tables.rows.map((r) => r.name),
    [
      'job_ad_copies',
      'stage_api_migrations',
      'stage_detections',
      'stage_instagram_feeds',
      'stage_iou_evals',
      'stage_ocr_evals',
      'stage_overlays',
      'stage_planner_proposals',
      'stage_readability_evals',
      'stage_run_timings',
      'stage_vlm_analyses',
      'stage_vlm_judgements',
    ],
    'the result tables, the ad copy, the timings and the tracking table',
  );
  t.same((await migrate(db.url, { set: STAGE_MIGRATION_SET })).applied, [], 're-running is a no-op');
});

t.test('several processes migrating both sets at once: each migration applied once', async (t) => {
  const db = await createTestDatabase({});
  t.teardown(() => db.close());
  const results = await Promise.all(Array.from({ length: 4 }, () => migrateBoth(db.url)));
  const applied = (i: number) =>
    results
      .flatMap((r) => r[i]?.applied ?? [])
      .slice()
      .sort((a, b) => a - b);
  t.same(applied(0), coreIds, "each of the engine's ids once");
  t.same(applied(1), stageIds, "each of the stage server's ids once");
});
