// Bounded seed input: seed and seed-ye (and the seeder functions) refuse job inputs
// longer than INPUT_CAPS, counted in characters, not bytes (docs/cli-retry.md).
import { INPUT_CAPS } from '@feedlyai/pipeline-core';
import t from 'tap';
import { createPipelineJob, createYeJob, InputTooLongError, runSeeder } from '../src/seeder.js';
import { cleanEnv, runCliInProcess, tempDir, testDb } from './helpers.js';

const UNREACHABLE = 'postgres://someone:secret@127.0.0.1:1/nothing';
const ko = (n: number) => '가나다라마바사'.repeat(Math.ceil(n / 7)).slice(0, n);

t.test('over-long options exit 2 naming the option, before any database work', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [
      ['seed', '--once', '--tenant-id', 't'.repeat(201)],
      /option '--tenant-id' must be at most 200 characters, got 201/,
    ],
    [['seed', '--once', '--product-name', ko(101)], /option '--product-name' must be at most 100 characters, got 101/],
    [['seed', '--once', '--tagline', ko(101)], /option '--tagline' must be at most 100 characters, got 101/],
    [['seed', '--once', '--ad-copy', 'a'.repeat(301)], /option '--ad-copy' must be at most 300 characters, got 301/],
    [['seed', '--once', '--desc-kor', ko(2001)], /option '--desc-kor' must be at most 2000 characters, got 2001/],
    [['seed-ye', '--desc-kor', ko(2001)], /option '--desc-kor' must be at most 2000 characters, got 2001/],
    [['seed-ye', '--tenant-id', '가'.repeat(201)], /option '--tenant-id' must be at most 200 characters, got 201/],
  ];
  for (const [args, message] of cases) {
    const name = `${args[0]} ${args[args.length - 2]}`;
    const r = await runCliInProcess(args, { env: cleanEnv({ DATABASE_URL: UNREACHABLE }) });
    t.equal(r.code, 2, `${name}: exit 2`);
    t.match(r.stderr, message, `${name}: names the option and the cap`);
    t.match(r.stderr, new RegExp(`Usage: feedly-pipeline ${args[0]}`), `${name}: usage line`);
    t.notMatch(r.stderr, /cannot connect/, `${name}: refused before connecting`);
  }
});

t.test('with a database', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  const storage = await tempDir();
  t.teardown(() => storage.remove());
  const env = cleanEnv({ DATABASE_URL: db.url, STORAGE_DIR: storage.path });
  const jobCount = async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs')).rows[0]?.n;

  t.test('a 2,000-character Korean description is accepted (6,000 bytes), 2,001 refused', async (t) => {
    const desc = ko(2000);
    t.equal(Buffer.byteLength(desc), 6000);
    const ok = await runCliInProcess(['seed', '--once', '--no-img-gen', '--tenant-id', 'caps', '--desc-kor', desc], {
      env,
    });
    t.equal(ok.code, 0, 'exit 0', { stdout: ok.stdout, stderr: ok.stderr });
    const stored = await db.pool.query(
      `SELECT char_length(i.desc_kor)::int AS n, i.desc_kor FROM job_inputs i JOIN jobs j USING (job_id)
        WHERE j.tenant_id = 'caps'`,
    );
    t.equal(stored.rows[0]?.n, 2000, 'stored whole');
    t.equal(stored.rows[0]?.desc_kor, desc);

    const before = await jobCount();
    const refused = await runCliInProcess(['seed', '--once', '--desc-kor', ko(2001)], { env });
    t.equal(refused.code, 2);
    t.match(refused.stderr, /option '--desc-kor' must be at most 2000 characters, got 2001/);
    t.equal(await jobCount(), before, 'nothing created');
  });

  t.test('every input exactly at its cap is accepted and stored whole', async (t) => {
    const tenant = `t${'x'.repeat(INPUT_CAPS.tenant_id - 1)}`;
    const r = await runCliInProcess(
      [
        'seed',
        '--once',
        '--no-img-gen',
        '--json',
        '--tenant-id',
        tenant,
        '--product-name',
        ko(100),
        '--tagline',
        ko(100),
        '--ad-copy',
        'a'.repeat(300),
        '--desc-kor',
        ko(2000),
      ],
      { env },
    );
    t.equal(r.code, 0, 'exit 0', { stdout: r.stdout, stderr: r.stderr });
    const jobId = JSON.parse(r.stdout).created[0].jobId;
    const row = await db.pool.query(
      `SELECT char_length(j.tenant_id)::int AS tenant_id, char_length(i.product_name)::int AS product_name,
              char_length(i.tagline_kor)::int AS tagline_kor, char_length(i.ad_copy_eng)::int AS ad_copy_eng,
              char_length(i.desc_kor)::int AS desc_kor
         FROM jobs j JOIN job_inputs i USING (job_id) WHERE j.job_id = $1`,
      [jobId],
    );
    t.same(row.rows[0], INPUT_CAPS);
  });

  t.test('the seeder functions refuse too, before storing or inserting anything', async (t) => {
    const store = { put: async () => t.fail('nothing is stored') as never };
    const before = await jobCount();
    await t.rejects(createPipelineJob(db.pool, store, { productName: ko(101) }), {
      name: 'InputTooLongError',
      option: 'productName',
      input: 'product_name',
      cap: 100,
      length: 101,
      message: 'productName (product_name) must be at most 100 characters, got 101',
    });
    await t.rejects(createYeJob(db.pool, store, { descKor: ko(2001) }), {
      name: 'InputTooLongError',
      option: 'descKor',
      length: 2001,
    });
    await t.rejects(runSeeder(db.pool, store, { maxJobs: 3, createIntervalS: 0, adCopy: 'a'.repeat(301) }), {
      name: 'InputTooLongError',
      option: 'adCopy',
    });
    await t.rejects(createPipelineJob(db.pool, store, { tenantId: 't'.repeat(201) }), InputTooLongError);
    await t.rejects(
      createPipelineJob(db.pool, store, { tagline: 42 as unknown as string }),
      /tagline must be a string/,
    );
    t.equal(await jobCount(), before, 'no job rows');
  });
});
