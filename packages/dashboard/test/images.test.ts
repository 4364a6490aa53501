/**
 * Images (docs/dashboard.md, "Images"), with real photos and sharp: through
 * the storage package when storageDir is set, else proxied from the real
 * stage server's GET /assets/:id with its token. Thumbnails are at most
 * 320 px, made once per asset (concurrent requests wait for the one being
 * made) and then served from the cache. Anything that is not a raster image,
 * or not there, is a 404; a stage server that refuses the token is a 502.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApp as buildStageApp } from '@feedlyai/stage-api';
import { createStorage } from '@feedlyai/storage';
import sharp from 'sharp';
import t from 'tap';
import { buildApp, testDb } from './helpers.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const db = await testDb();
t.teardown(() => db.close());
const storageDir = await mkdtemp(path.join(tmpdir(), 'dashboard-images-'));
t.teardown(() => rm(storageDir, { recursive: true, force: true }));
const storage = await createStorage({ root: storageDir });

async function asset(key: string, mime: string | null = null): Promise<string> {
  const r = await db.pool.query(
    `INSERT INTO image_assets (image_type, image_url, tenant_id, mime_type) VALUES ('upload', $1, 't', $2) RETURNING image_asset_id::text AS id`,
    [key, mime],
  );
  return r.rows[0].id;
}

const coffee = await readFile(path.join(FIXTURES, 'coffee.png'));
const rocket = await readFile(path.join(FIXTURES, 'rocket.jpg'));
const coffeeId = await asset(await storage.put(coffee, { prefix: 'uploads', ext: 'png' }));
const rocketId = await asset(await storage.put(rocket, { prefix: 'uploads', ext: 'jpg' }));
const textId = await asset(
  await storage.put(Buffer.from('<svg onload="alert(1)"></svg>'), { prefix: 'uploads', ext: 'png' }),
);
const missingId = await asset('uploads/never-written.png');

t.test('through the storage package: the image, and a thumbnail made once', async (t) => {
  const { app } = await buildApp({ allowAnonymous: true, connectionString: db.url, storageDir });
  t.teardown(() => app.close());
  const full = await app.inject({ url: `/pipeline/images/${coffeeId}` });
  t.equal(full.statusCode, 200);
  t.equal(full.headers['content-type'], 'image/png');
  t.ok(full.rawPayload.equals(coffee), 'the stored bytes');
  t.equal(full.headers['x-content-type-options'], 'nosniff');
  t.equal((await app.inject({ url: `/pipeline/images/${rocketId}` })).headers['content-type'], 'image/jpeg');

  const first = await app.inject({ url: `/pipeline/images/${coffeeId}/thumb` });
  t.equal(first.statusCode, 200);
  t.equal(first.headers['content-type'], 'image/webp');
  t.equal(first.headers['x-thumbnail'], 'made');
  const meta = await sharp(first.rawPayload).metadata();
  t.equal(meta.format, 'webp');
  t.equal(Math.max(meta.width ?? 0, meta.height ?? 0), 320, 'the 600x400 photo is 320 px on its longest side');
  t.equal(meta.height, 213, 'its proportions kept');
  const second = await app.inject({ url: `/pipeline/images/${coffeeId}/thumb` });
  t.equal(second.headers['x-thumbnail'], 'cached', 'the second request is served from the cache');
  t.ok(second.rawPayload.equals(first.rawPayload));

  const together = await Promise.all(
    Array.from({ length: 5 }, () => app.inject({ url: `/pipeline/images/${rocketId}/thumb` })),
  );
  t.same(
    together.map((r) => r.statusCode),
    [200, 200, 200, 200, 200],
  );
  t.equal(together.filter((r) => r.headers['x-thumbnail'] === 'made').length, 1, 'five requests at once: made once');
  const rm = await sharp(together[0]?.rawPayload).metadata();
  t.same([rm.width, rm.height], [320, 214], 'the 640x427 JPEG: 320 px wide, proportions kept');

  t.equal((await app.inject({ url: `/pipeline/images/${textId}` })).statusCode, 404, 'not a raster image: 404');
  t.equal((await app.inject({ url: `/pipeline/images/${textId}/thumb` })).statusCode, 404);
  t.equal((await app.inject({ url: `/pipeline/images/${missingId}` })).statusCode, 404, 'a file missing from storage');
  t.equal((await app.inject({ url: '/pipeline/images/00000000-0000-4000-8000-000000000000' })).statusCode, 404);
  t.equal((await app.inject({ url: '/pipeline/images/..%2F..%2Fetc%2Fpasswd' })).statusCode, 400, 'not an id: 400');
});

t.test('the thumbnail cache is bounded in bytes', async (t) => {
  const { app } = await buildApp({
    allowAnonymous: true,
    connectionString: db.url,
    storageDir,
    thumbnailCacheBytes: 1,
  });
  t.teardown(() => app.close());
  const a = await app.inject({ url: `/pipeline/images/${coffeeId}/thumb` });
  const b = await app.inject({ url: `/pipeline/images/${coffeeId}/thumb` });
  t.same(
    [a.headers['x-thumbnail'], b.headers['x-thumbnail']],
    ['made', 'made'],
    'too big for a 1-byte cache: not kept',
  );
});

t.test("proxied from the stage server's /assets/:id with its token", async (t) => {
  const stage = await buildStageApp({
    env: {},
    pool: db.pool,
    storageDir,
    token: 'stage-secret',
    listener: false,
    logger: false,
    cpuWorkers: 0,
  });
  t.teardown(() => stage.close());
  await stage.listen({ host: '127.0.0.1', port: 0 });
  const a = stage.server.address();
  const stageApiUrl = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;

  const { app } = await buildApp({
    allowAnonymous: true,
    connectionString: db.url,
    stageApiUrl,
    stageApiToken: 'stage-secret',
  });
  t.teardown(() => app.close());
  const full = await app.inject({ url: `/pipeline/images/${coffeeId}` });
  t.equal(full.statusCode, 200);
  t.ok(full.rawPayload.equals(coffee), 'the bytes the stage server served');
  const thumb = await app.inject({ url: `/pipeline/images/${coffeeId}/thumb` });
  t.equal(thumb.statusCode, 200);
  t.equal((await sharp(thumb.rawPayload).metadata()).width, 320);
  t.equal((await app.inject({ url: `/pipeline/images/${missingId}` })).statusCode, 404, "the stage server's 404");

  const { app: wrong } = await buildApp({
    allowAnonymous: true,
    connectionString: db.url,
    stageApiUrl,
    stageApiToken: 'nope',
  });
  t.teardown(() => wrong.close());
  const refused = await wrong.inject({ url: `/pipeline/images/${coffeeId}`, headers: { accept: 'application/json' } });
  t.equal(refused.statusCode, 502, 'a refused token is a 502 of the dashboard');
  t.match(refused.json(), { error: /answered 401 .*STAGE_API_TOKEN/ });

  const { app: down } = await buildApp({
    allowAnonymous: true,
    connectionString: db.url,
    stageApiUrl: 'http://127.0.0.1:9',
  });
  t.teardown(() => down.close());
  const gone = await down.inject({
    url: `/pipeline/images/${coffeeId}/thumb`,
    headers: { accept: 'application/json' },
  });
  t.equal(gone.statusCode, 502);
  t.match(gone.json(), { error: /did not answer/ });
});
