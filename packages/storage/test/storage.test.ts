import { mkdtemp, readFile, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { allowedHostsFromEnv, createStorage, isRemoteRef, StorageError } from '../src/index.js';

async function tempRoot(t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'feedly-storage-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function code(err: unknown): string | undefined {
  return err instanceof StorageError ? err.code : undefined;
}

async function rejectsWith(t: Test, p: Promise<unknown>, expected: string, name: string): Promise<void> {
  try {
    await p;
    t.fail(`${name}: expected ${expected}, resolved`);
  } catch (err) {
    t.equal(code(err), expected, `${name}: ${(err as Error).message}`);
  }
}

t.test('put stores content-addressed relative keys; read returns the bytes', async (t) => {
  const root = await tempRoot(t);
  const storage = await createStorage({ root: path.join(root, 'store') });
  const bytes = Buffer.from('hello image');
  const key = await storage.put(bytes, { prefix: 'overlay', ext: 'png' });
  t.match(key, /^overlay\/[0-9a-f]{2}\/[0-9a-f]{64}\.png$/);
  t.notOk(path.isAbsolute(key));
  t.same(await storage.read(key), bytes);
  t.equal(await storage.put(bytes, { prefix: 'overlay', ext: 'png' }), key, 'same content, same key');
  t.equal(await readFile(path.join(storage.root, key), 'utf8'), 'hello image');
  await rejectsWith(t, storage.put(bytes, { prefix: '../x', ext: 'png' }), 'invalid_key', 'bad prefix');
  await rejectsWith(t, storage.put(bytes, { prefix: 'ok', ext: 'p/ng' }), 'invalid_key', 'bad ext');
  await rejectsWith(t, storage.read('overlay/none.png'), 'not_found', 'missing file');
  await rejectsWith(t, storage.read(key, { maxBytes: 3 }), 'too_large', 'over maxBytes');
});

t.test('resolve refuses every path that leaves the root', async (t) => {
  const root = await tempRoot(t);
  const storageDir = path.join(root, 'store');
  const storage = await createStorage({ root: storageDir });
  await writeFile(path.join(root, 'secret.txt'), 'secret');
  await mkdir(path.join(storageDir, 'sub'), { recursive: true });
  await symlink(root, path.join(storageDir, 'sub', 'escape'));
  await symlink(path.join(root, 'secret.txt'), path.join(storageDir, 'link.txt'));

  const attempts: Array<[string, string]> = [
    ['../secret.txt', 'outside_root'],
    ['sub/../../secret.txt', 'outside_root'],
    ['/etc/passwd', 'outside_root'],
    [path.join(root, 'secret.txt'), 'outside_root'],
    ['sub/escape/secret.txt', 'outside_root'],
    ['link.txt', 'outside_root'],
    ['sub/escape/not-yet/file.png', 'outside_root'],
    ['ok\0.png', 'invalid_key'],
    ['..\\secret.txt', 'invalid_key'],
    ['', 'invalid_key'],
  ];
  for (const [key, expected] of attempts) {
    await rejectsWith(t, storage.resolve(key), expected, `resolve ${JSON.stringify(key)}`);
    await rejectsWith(t, storage.read(key), expected, `read ${JSON.stringify(key)}`);
  }
  t.equal(await storage.resolve('sub/new/file.png'), path.join(storage.root, 'sub/new/file.png'));
  t.equal(await storage.resolve('./sub/x.png'), path.join(storage.root, 'sub/x.png'));
});

t.test('readImageUrl: allow-list, size and time limits, via a local HTTP server', async (t) => {
  const root = await tempRoot(t);
  const storage = await createStorage({ root });
  const big = Buffer.alloc(64 * 1024, 7);
  const server: Server = createServer((req, res) => {
    if (req.url === '/small.png') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(Buffer.from('small'));
    } else if (req.url === '/big.png') {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(big.length) });
      res.end(big);
    } else if (req.url === '/chunked.png') {
      // No content-length: the limit must hold while streaming.
      res.writeHead(200, { 'content-type': 'image/png' });
      res.write(big);
      res.end(big);
    } else if (req.url === '/slow.png') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.write('x');
      // never ends: the time limit must cut it
    } else if (req.url === '/redirect.png') {
      res.writeHead(302, { location: 'http://example.invalid/x.png' });
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;
  const limits = { allowedHosts: ['127.0.0.1'], maxBytes: 10_000, timeoutMs: 1_000 };

  t.same(await storage.readImageUrl(`${base}/small.png`, limits), Buffer.from('small'));
  t.same(await storage.readRef(`${base}/small.png`, limits), Buffer.from('small'), 'readRef fetches URLs');
  await rejectsWith(
    t,
    storage.readImageUrl(`${base}/small.png`, { ...limits, allowedHosts: [] }),
    'host_not_allowed',
    'default allow-list is empty',
  );
  await rejectsWith(
    t,
    storage.readImageUrl(`${base}/small.png`, { ...limits, allowedHosts: ['example.com'] }),
    'host_not_allowed',
    'host not in the list',
  );
  t.same(
    await storage.readImageUrl(`${base}/small.png`, { ...limits, allowedHosts: [`127.0.0.1:${port}`] }),
    Buffer.from('small'),
    'host:port entries match',
  );
  await rejectsWith(t, storage.readImageUrl(`${base}/big.png`, limits), 'too_large', 'declared size over the limit');
  await rejectsWith(
    t,
    storage.readImageUrl(`${base}/chunked.png`, limits),
    'too_large',
    'streamed size over the limit',
  );
  await rejectsWith(
    t,
    storage.readImageUrl(`${base}/slow.png`, { ...limits, timeoutMs: 200 }),
    'timeout',
    'time limit',
  );
  await rejectsWith(
    t,
    storage.readImageUrl(`${base}/redirect.png`, limits),
    'fetch_failed',
    'redirects are not followed',
  );
  await rejectsWith(t, storage.readImageUrl(`${base}/missing.png`, limits), 'fetch_failed', 'HTTP 404');
  await rejectsWith(t, storage.readImageUrl('file:///etc/passwd', limits), 'invalid_url', 'file: URL');
  await rejectsWith(t, storage.readImageUrl('not a url', limits), 'invalid_url', 'garbage');
});

t.test('helpers', async (t) => {
  t.ok(isRemoteRef('https://cdn.example.com/a.png'));
  t.ok(isRemoteRef('HTTP://x/a.png'));
  t.notOk(isRemoteRef('overlay/ab/abc.png'));
  t.same(allowedHostsFromEnv({}), []);
  t.same(allowedHostsFromEnv({ IMAGE_FETCH_ALLOWED_HOSTS: 'CDN.example.com, img.example.com:8443 ' }), [
    'cdn.example.com',
    'img.example.com:8443',
  ]);
});
