/**
 * A database without our schema (fresh, or the API server's before its first
 * migration): the commands that need it exit 1 with one line saying to
 * migrate, instead of PostgreSQL's `relation "…" does not exist`.
 */
import { migrate } from '@feedlyai/pipeline-core';
import { createTestDatabase } from '@feedlyai/test-helpers';
import t from 'tap';
import { cleanEnv, runCliInProcess, seedJob } from './helpers.js';

const ID = '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a';
const NOT_MIGRATED = 'database not migrated: run feedly-pipeline migrate';

const empty = await createTestDatabase({}); // no migrate: an empty database
t.teardown(() => empty.close());

t.test('an empty database: one line, exit 1, no raw PostgreSQL error', async (t) => {
  const env = cleanEnv({ DATABASE_URL: empty.url });
  for (const args of [
    ['seed', '--once'],
    ['seed-ye'],
    ['analyze', '--tenant-id', 'x'],
    ['analyze', '--job-id', ID],
    ['verify-trigger', ID],
    ['monitor', ID, '1', '0.2'],
    ['retry', ID],
    ['cancel', ID],
  ]) {
    const r = await runCliInProcess(args, { env });
    t.equal(r.code, 1, `${args.join(' ')} exits 1`);
    t.equal(r.stderr.trim(), NOT_MIGRATED, `${args[0]} says to migrate`);
    t.notMatch(r.stdout + r.stderr, /does not exist/);
  }
  const status = await runCliInProcess(['status', '--stage-api-url', 'http://127.0.0.1:1'], { env });
  t.equal(status.code, 1);
  t.match(status.stdout, /FAIL listener enabled: .*not migrated; source: database/);
  t.notMatch(status.stdout + status.stderr, /does not exist|\n\s+at /);
});

t.test('a schema behind this CLI says where it is; migrate brings it up to date', async (t) => {
  await migrate(empty.url, { upTo: 3 });
  const env = cleanEnv({ DATABASE_URL: empty.url });
  const behind = await runCliInProcess(['seed-ye'], { env });
  t.equal(behind.code, 1);
  t.match(
    behind.stderr.trim(),
    /^database not migrated: its schema is at migration 3, this feedly-pipeline needs \d+: run feedly-pipeline migrate$/,
  );
  const m = await runCliInProcess(['migrate'], { env });
  t.equal(m.code, 0, 'migrate works on it');
  const after = await runCliInProcess(['seed-ye', '--json'], { env });
  t.equal(after.code, 0, 'then seed-ye works');
});

t.test('a table missing at run time (dropped): the same line, exit 1', async (t) => {
  const job = await seedJob(empty.pool, { tenantId: 'dropped' });
  await empty.pool.query('DROP TABLE job_ad_copies');
  const r = await runCliInProcess(['analyze', '--job-id', job.jobId], { env: cleanEnv({ DATABASE_URL: empty.url }) });
  t.equal(r.code, 1);
  t.equal(r.stderr.trim(), NOT_MIGRATED);
});

t.test(
  "the engine's set alone (a host that ran pipeline-core's migrate): analyze and monitor name the stage server's set",
  async (t) => {
    const engineOnly = await createTestDatabase({ migrate: (url) => migrate(url), template: 'engine_only' });
    t.teardown(() => engineOnly.close());
    const env = cleanEnv({ DATABASE_URL: engineOnly.url });
    const job = await seedJob(engineOnly.pool, { tenantId: 'engine_only' });
    for (const args of [
      ['analyze', '--job-id', job.jobId],
      ['monitor', job.jobId, '1', '0.2'],
    ]) {
      const r = await runCliInProcess(args, { env });
      t.equal(r.code, 1, `${args[0]} exits 1`);
      t.match(
        r.stderr.trim(),
        /^database not migrated: the stage server's tables are at migration 0 of their set, this feedly-pipeline needs \d+: run feedly-pipeline migrate$/,
      );
    }
    const m = await runCliInProcess(['migrate', '--json'], { env });
    t.equal(m.code, 0);
    const sets = JSON.parse(m.stdout).sets as Array<{ set: string; applied: number[] }>;
    t.same(
      sets.map((s) => [s.set, s.applied.length > 0]),
      [
        ['pipeline-core', false],
        ['stage-api', true],
      ],
      "migrate applies the stage server's set",
    );
    const a = await runCliInProcess(['analyze', '--job-id', job.jobId, '--json'], { env });
    t.equal(a.code, 0, 'then analyze works');
  },
);
