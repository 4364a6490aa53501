import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import { samplePhotoPath } from '../src/assets.js';
import { cleanEnv, runCliInProcess, startCli, tempDir, testDb, waitFor } from './helpers.js';

t.test('seed and seed-ye create exactly the rows they should', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  const storage = await tempDir();
  t.teardown(() => storage.remove());
  const env = cleanEnv({ DATABASE_URL: db.url, STORAGE_DIR: storage.path });
  const count = async (sql: string, args: unknown[] = []) =>
    (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, args)).rows[0]?.n;

  t.test('seed --once: job img_gen/queued, inputs, stored image, 3 variants marked img_gen/done', async (t) => {
    const r = await runCliInProcess(['seed', '--once', '--json'], { env });
    t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
    const summary = JSON.parse(r.stdout);
    t.equal(summary.created.length, 1);
    const job = summary.created[0];
    const j = await db.pool.query('SELECT * FROM jobs WHERE job_id = $1', [job.jobId]);
    t.match(j.rows[0], { tenant_id: 'pipeline_test_tenant_v2', current_step: 'img_gen', status: 'queued' });
    const inputs = await db.pool.query(
      `SELECT i.*, t.code FROM job_inputs i JOIN tone_styles t USING (tone_style_id) WHERE job_id = $1`,
      [job.jobId],
    );
    t.equal(inputs.rowCount, 1);
    t.match(inputs.rows[0], { code: 'friendly', img_asset_id: job.imageAssetId });
    t.match(inputs.rows[0].desc_kor, /커피/);
    t.ok(inputs.rows[0].ad_copy_eng, 'English copy has a default');
    t.ok(inputs.rows[0].tagline_kor, 'Korean tagline has a default');
    const asset = await db.pool.query('SELECT * FROM image_assets WHERE image_asset_id = $1', [job.imageAssetId]);
    t.match(asset.rows[0], { image_type: 'product', mime_type: 'image/png', tenant_id: 'pipeline_test_tenant_v2' });
    const key = asset.rows[0].image_url as string;
    t.notOk(key.startsWith('/'), 'image_url is a key relative to STORAGE_DIR');
    t.same(readFileSync(join(storage.path, key)), readFileSync(samplePhotoPath()), 'the stored bytes are the photo');
    const v = await db.pool.query(
      'SELECT creation_order, current_step, status, img_asset_id FROM jobs_variants WHERE job_id = $1 ORDER BY 1',
      [job.jobId],
    );
    t.same(
      v.rows.map((x) => [x.creation_order, x.current_step, x.status, x.img_asset_id]),
      [1, 2, 3].map((n) => [n, 'img_gen', 'done', job.imageAssetId]),
    );
  });

  t.test('seed --no-img-gen with options leaves the variants at img_gen/queued', async (t) => {
    const r = await runCliInProcess(
      [
        'seed',
        '--once',
        '--no-img-gen',
        '--tenant-id',
        'tenant_a',
        '--variants-count',
        '2',
        '--tone',
        'premium',
        '--desc-kor',
        '고소한 원두',
        '--ad-copy',
        'Bold beans',
        '--tagline',
        '진한 한 잔',
        '--image',
        samplePhotoPath('chelsea.png'),
      ],
      { env },
    );
    t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
    t.match(r.stdout, /created job [0-9a-f-]{36} \(tenant tenant_a, 2 variants/);
    t.match(r.stdout, /summary: 1 job\(s\) created/);
    const jobId = (await db.pool.query(`SELECT job_id FROM jobs WHERE tenant_id = 'tenant_a'`)).rows[0].job_id;
    t.same(
      (
        await db.pool.query(
          'SELECT creation_order, current_step, status FROM jobs_variants WHERE job_id = $1 ORDER BY 1',
          [jobId],
        )
      ).rows,
      [
        { creation_order: 1, current_step: 'img_gen', status: 'queued' },
        { creation_order: 2, current_step: 'img_gen', status: 'queued' },
      ],
    );
    const inp = await db.pool.query(
      'SELECT desc_kor, ad_copy_eng, tagline_kor, t.code FROM job_inputs JOIN tone_styles t USING (tone_style_id) WHERE job_id = $1',
      [jobId],
    );
    t.same(inp.rows[0], {
      desc_kor: '고소한 원두',
      ad_copy_eng: 'Bold beans',
      tagline_kor: '진한 한 잔',
      code: 'premium',
    });
  });

  t.test('seed --max-jobs 2 --create-interval 0 creates two jobs', async (t) => {
    const before = await count(`jobs WHERE tenant_id = 'tenant_b'`);
    const r = await runCliInProcess(['seed', '--tenant-id', 'tenant_b', '--max-jobs', '2', '--create-interval', '0'], {
      env,
    });
    t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
    t.equal((await count(`jobs WHERE tenant_id = 'tenant_b'`)) - (before ?? 0), 2);
    t.equal(await count(`jobs_variants v JOIN jobs j USING (job_id) WHERE j.tenant_id = 'tenant_b'`), 6);
  });

  t.test('bad inputs: unknown tone, unreadable image -> exit 1 with one line, nothing created', async (t) => {
    const before = await count('jobs');
    const tone = await runCliInProcess(['seed', '--once', '--tone', 'grumpy'], { env });
    t.equal(tone.code, 1);
    t.match(tone.stderr, /unknown tone style 'grumpy' \(known: bold, friendly, minimal, playful, premium\)/);
    const img = await runCliInProcess(['seed', '--once', '--image', '/nonexistent.png'], { env });
    t.equal(img.code, 1);
    t.match(img.stderr, /cannot read image \/nonexistent\.png: no such file/);
    const notImage = await runCliInProcess(['seed', '--once', '--image', join(import.meta.dirname, 'helpers.ts')], {
      env,
    });
    t.equal(notImage.code, 1);
    t.match(notImage.stderr, /is not a PNG, JPEG or WebP image/);
    t.equal(await count('jobs'), before, 'no job rows left behind');
  });

  t.test('Ctrl-C stops the seeder cleanly between jobs: summary, exit 0', async (t) => {
    const c = startCli(['seed', '--tenant-id', 'tenant_c', '--create-interval', '60'], { env });
    await waitFor(() => /next job in/.test(c.stdout()), { timeoutMs: 30_000, message: 'first job created' });
    c.child.kill('SIGINT');
    const r = await c.done;
    t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
    t.match(r.stdout, /summary: 1 job\(s\) created \(stopped by Ctrl-C\)/);
    t.equal(await count(`jobs WHERE tenant_id = 'tenant_c'`), 1);
    t.equal(await count(`jobs_variants v JOIN jobs j USING (job_id) WHERE j.tenant_id = 'tenant_c'`), 3);
  });

  t.test('seed-ye: user_img_input/done, one shared image asset, and no notification at all', async (t) => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    t.teardown(() => listener.end());
    const got: string[] = [];
    listener.on('notification', (n) => got.push(`${n.channel}:${n.payload}`));
    await listener.query('LISTEN job_variant_state_changed');
    await listener.query('LISTEN job_state_changed');
    const r = await runCliInProcess(
      ['seed-ye', '--count', '2', '--variants-count', '4', '--tenant-id', 'ye', '--json'],
      {
        env,
      },
    );
    t.equal(r.code, 0, 'exit code 0', { stdout: r.stdout, stderr: r.stderr });
    const { created } = JSON.parse(r.stdout);
    t.equal(created.length, 2);
    for (const job of created) {
      const j = await db.pool.query('SELECT current_step, status FROM jobs WHERE job_id = $1', [job.jobId]);
      t.same(j.rows[0], { current_step: 'user_img_input', status: 'done' });
      const v = await db.pool.query(
        'SELECT DISTINCT current_step, status, img_asset_id FROM jobs_variants WHERE job_id = $1',
        [job.jobId],
      );
      t.same(
        v.rows,
        [{ current_step: 'user_img_input', status: 'done', img_asset_id: job.imageAssetId }],
        'shared asset',
      );
      t.equal(await count('jobs_variants WHERE job_id = $1', [job.jobId]), 4);
    }
    // A sentinel sent after the seeding: when it arrives, anything the seeding
    // could have notified would have arrived before it (same server, in order).
    await db.pool.query(`SELECT pg_notify('job_state_changed', 'sentinel')`);
    await waitFor(() => got.includes('job_state_changed:sentinel'), { message: 'sentinel' });
    t.same(got, ['job_state_changed:sentinel'], 'seed-ye fired nothing');
    t.ok(existsSync(storage.path));
  });
});
