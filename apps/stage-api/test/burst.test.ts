/**
 * A small burst through the real stage server with its hosted listener
 * (test/measure/burst.ts measures a big one): every job completes, and no
 * call is refused while its queue has room (no `deadline` or `max_wait`
 * 429s). Timings are printed, never asserted (the machine is shared).
 */
import t from 'tap';
import { burstStorage, runBurst } from './measure/burst.js';
import { testDb } from './helpers.js';

t.test('a burst of 3 jobs x 3 variants: all complete, no refusal while a queue has room', async (t) => {
  const db = await testDb(t);
  const storage = await burstStorage();
  t.teardown(() => storage.remove());
  const report = await runBurst({
    url: db.url,
    pool: db.pool,
    storageDir: storage.dir,
    jobs: 3,
    variants: 3,
    timeoutMs: 240_000,
    app: { cpuWorkers: 1 },
  });
  t.comment(JSON.stringify(report));
  t.equal(report.completed, 3, 'every job done');
  t.equal(report.failed, 0, 'none failed');
  t.equal(report.refusals.whileRoom, 0, 'no 429 while a queue had room');
  t.equal(report.steps.vlm_analyze?.runs, 9, 'every variant timed');
  // The hosted listener sends at most what the server can run (2 here: the renderer on its one thread, and OCR).
  t.equal(report.maxQueued.render, 0, 'no call waited for the renderer');
});
