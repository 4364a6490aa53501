import t from 'tap';
import pg from 'pg';
import { appliedMigration, CORE_MIGRATION_SET, LATEST_MIGRATION, type MigrationSet, migrate } from '../src/migrate.js';
import { JOB_CHANNEL, NOTIFY_TRIGGERS, VARIANT_CHANNEL } from '../src/migrations/channels.js';
import { testDb, seedJob } from './helpers.js';

t.test('migrate creates the seed tables, triggers and functions exactly as named', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  const fns = await db.pool.query(
    `SELECT proname FROM pg_proc WHERE proname IN ('notify_job_variant_state_change', 'notify_job_state_change') ORDER BY 1`,
  );
  t.same(
    fns.rows.map((r) => r.proname),
    ['notify_job_state_change', 'notify_job_variant_state_change'],
  );
  const trg = await db.pool.query(
    `SELECT tgname, tgrelid::regclass::text AS tbl FROM pg_trigger
      WHERE tgname IN ('job_variant_state_change_trigger', 'job_state_change_trigger') ORDER BY 1`,
  );
  t.same(trg.rows, [
    { tgname: 'job_state_change_trigger', tbl: 'jobs' },
    { tgname: 'job_variant_state_change_trigger', tbl: 'jobs_variants' },
  ]);
  const again = await migrate(db.url);
  t.same(again.applied, [], 'a second run applies nothing');
  t.equal(again.current, LATEST_MIGRATION);
});

t.test('concurrent migrators apply each migration once', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  await db.pool.query('DROP TABLE feedly_migrations');
  const results = await Promise.all(Array.from({ length: 5 }, () => migrate(db.url)));
  const total = results.reduce((n, r) => n + r.applied.length, 0);
  t.equal(total, LATEST_MIGRATION, 'every migration applied exactly once across 5 processes');
});

t.test('runs against an existing seed database and keeps its rows', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  const seeded = await seedJob(db.pool, { variants: 2 });
  await db.pool.query('DROP TABLE feedly_migrations');
  await db.pool.query('ALTER TABLE jobs_variants DROP COLUMN given_up_at');
  await migrate(db.url);
  const n = await db.pool.query('SELECT count(*)::int AS n FROM jobs_variants WHERE job_id = $1', [seeded.jobId]);
  t.equal(n.rows[0].n, 2);
  const col = await db.pool.query(
    `SELECT 1 FROM information_schema.columns WHERE table_name = 'jobs_variants' AND column_name = 'given_up_at'`,
  );
  t.equal(col.rowCount, 1, 'missing column added back');
});

t.test('variant trigger notifies only on a state change, with the contract payload', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  const seeded = await seedJob(db.pool, { variants: 1 });
  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  t.teardown(() => listener.end());
  const got: unknown[] = [];
  listener.on('notification', (n) => got.push(JSON.parse(n.payload ?? 'null')));
  await listener.query('LISTEN job_variant_state_changed');
  const id = seeded.variantIds[0];
  await db.pool.query(`UPDATE jobs_variants SET updated_at = now() WHERE job_variants_id = $1`, [id]);
  await db.pool.query(`UPDATE jobs_variants SET current_step = 'img_gen', status = 'done' WHERE job_variants_id = $1`, [
    id,
  ]);
  await listener.query('SELECT 1');
  await new Promise((r) => setImmediate(r));
  t.equal(got.length, 1, 'one notification: the no-op update fired nothing');
  const p = got[0] as Record<string, unknown>;
  t.match(p, {
    job_variants_id: id,
    job_id: seeded.jobId,
    current_step: 'img_gen',
    status: 'done',
    tenant_id: 'pipeline_test_tenant_v2',
  });
  t.ok(p.updated_at);
});

t.test(
  "the engine's set: only the engine's tables; ids 2 and 5 (moved to the stage server's set) recorded",
  async (t) => {
    const db = await testDb();
    t.teardown(() => db.close());
    const ids = await db.pool.query<{ id: number; name: string }>('SELECT id, name FROM feedly_migrations ORDER BY id');
    t.same(
      ids.rows.map((r) => r.id),
      CORE_MIGRATION_SET.migrations.map((m) => m.id),
      'every id of the set, the moved ones too',
    );
    t.match(
      ids.rows.find((r) => r.id === 2),
      { name: 'stage_results' },
    );
    t.match(
      ids.rows.find((r) => r.id === 5),
      { name: 'stage_run_timings' },
    );
    const stage = await db.pool.query(
      `SELECT tablename FROM pg_tables WHERE schemaname = 'public'
        AND (tablename LIKE 'stage\\_%' OR tablename IN ('job_ad_copies', 'stage_api_migrations'))`,
    );
    t.same(stage.rows, [], "no table of the stage server's set");
    t.equal(await appliedMigration(db.pool), LATEST_MIGRATION);
  },
);

t.test('a migration set of its own: its tracking table, its ids, empty SQL only recorded', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  const set: MigrationSet = {
    name: 'test-set',
    trackingTable: 'test_set_migrations',
    lockKey: [0x0feed1a1, 99],
    migrations: [
      { id: 1, name: 'one', sql: 'CREATE TABLE IF NOT EXISTS test_set_one (id int)' },
      { id: 2, name: 'moved', sql: '' },
    ],
  };
  t.equal(await appliedMigration(db.pool, set), null, 'never migrated: no tracking table');
  const first = await migrate(db.url, { set, upTo: 1 });
  t.same(first, { set: 'test-set', applied: [1], current: 1 });
  const rest = await migrate(db.url, { set });
  t.same(rest.applied, [2], 'the empty one is recorded');
  t.same((await migrate(db.url, { set })).applied, [], 'then nothing');
  t.equal(await appliedMigration(db.pool, set), 2);
  const core = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM feedly_migrations WHERE id > $1', [
    LATEST_MIGRATION,
  ]);
  t.equal(core.rows[0]?.n, 0, "the engine's tracking table is untouched");
  await t.rejects(migrate(db.url, { set: { ...set, trackingTable: 'x; DROP TABLE jobs' } }), {
    name: 'TypeError',
    message: /tracking table must be a lower-case identifier/,
  });
  await t.rejects(
    migrate(db.url, {
      set: {
        ...set,
        migrations: [
          { id: 2, name: 'b', sql: '' },
          { id: 1, name: 'a', sql: '' },
        ],
      },
    }),
    { name: 'TypeError', message: /ids must be increasing/ },
  );
});

t.test('the exported notify names are the ones the migration installs', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  t.equal(NOTIFY_TRIGGERS.length, 2);
  for (const n of NOTIFY_TRIGGERS) {
    const r = await db.pool.query<{ fn: string; def: string }>(
      `SELECT p.proname AS fn, pg_get_functiondef(p.oid) AS def
         FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
        WHERE g.tgname = $1 AND g.tgrelid = to_regclass($2)`,
      [n.trigger, n.table],
    );
    t.equal(r.rows[0]?.fn, n.fn, `${n.trigger} on ${n.table} calls ${n.fn}()`);
    t.ok(r.rows[0]?.def.includes(`pg_notify('${n.channel}'`), `${n.fn}() notifies on ${n.channel}`);
  }
  t.same(
    NOTIFY_TRIGGERS.map((n) => n.channel),
    [VARIANT_CHANNEL, JOB_CHANNEL],
  );
});
