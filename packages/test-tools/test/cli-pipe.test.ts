/**
 * Output into a pipe arrives whole: the CLI leaves only once stdout has
 * handed everything to the OS (process.exit() right after a write cut
 * `analyze --json | jq` at 64 KiB). The real program, a real pipe, a reader
 * that takes its time, more than 1 MB of JSON.
 */
import { setTimeout as delay } from 'node:timers/promises';
import t from 'tap';
import { cleanEnv, seedJob, startCli, testDb } from './helpers.js';

const db = await testDb();
t.teardown(() => db.close());
const env = cleanEnv({ DATABASE_URL: db.url });

const JOBS = 30;
const VARIANTS = 100;
const TENANT = 'pipe_tenant';
for (let i = 0; i < JOBS; i++) {
  await seedJob(db.pool, { tenantId: TENANT, variants: VARIANTS, descKor: `설명 ${i} `.repeat(150) });
}

/** Reads the child's stdout one chunk at a time, pausing between chunks: a slow consumer at the end of a pipe. */
async function readSlowly(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(Buffer.from(chunk as string | Buffer));
    // The slowness under test, not a wait for a condition: the writer must outlast a full pipe.
    await delay(20);
  }
  return Buffer.concat(chunks);
}

t.test('analyze --json of more than 1 MB through a pipe to a slow reader: every byte, valid JSON', async (t) => {
  const c = startCli(['analyze', '--tenant-id', TENANT, '--limit', String(JOBS), '--json'], { env });
  c.child.stdout?.removeAllListeners('data'); // this test reads stdout itself, slowly
  const [bytes, run] = await Promise.all([readSlowly(c.child.stdout as NodeJS.ReadableStream), c.done]);
  t.equal(run.code, 0, 'exit 0');
  t.equal(run.stderr, '', 'nothing on stderr');
  t.ok(bytes.length > 1024 * 1024, `more than 1 MB arrived (${bytes.length} bytes)`);
  t.equal(bytes.subarray(-2).toString(), '}\n', 'the output ends where the JSON ends');
  const report = JSON.parse(bytes.toString('utf8')) as { jobs: Array<{ variants: unknown[] }> };
  t.equal(report.jobs.length, JOBS, 'every job is in it');
  t.ok(
    report.jobs.every((j) => j.variants.length === VARIANTS),
    'with every variant',
  );
});

t.test('a reader that stops early (| head): exit quietly, no stack trace', async (t) => {
  const c = startCli(['analyze', '--tenant-id', TENANT, '--limit', String(JOBS), '--json'], { env });
  c.child.stdout?.removeAllListeners('data');
  c.child.stdout?.once('data', () => c.child.stdout?.destroy());
  const run = await c.done;
  t.equal(run.code, 0, 'exit 0');
  t.notMatch(run.stderr, /EPIPE|\n\s+at /, 'no error, no stack trace');
});
