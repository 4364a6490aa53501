/**
 * Admission (docs/stage-api.md, "Admission"): one bounded FIFO per resource,
 * resources taken in one fixed order, 429 with a Retry-After derived from the
 * measured drain rate only when a queue is full or a wait cannot end in time,
 * rows started only once the resources are held, the wait and the work
 * recorded per run, the warm-up at boot, the variables and the metrics.
 *
 * The queue logic itself is exercised on AdmissionQueues with a clock the
 * test moves (it touches no database); everything the server does with it
 * runs against a real PostgreSQL and the real stages on the fixture photo.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { stageSlots } from '../src/app.js';
import { ConfigError, loadConfig } from '../src/config.js';
import {
  type Admission,
  AdmissionClosed,
  type AdmissionLimits,
  AdmissionQueues,
  AdmissionRefused,
} from '../src/stages/limiter.js';
import { seedJob, tempStorage, testApp, testDb, variantState, waitFor } from './helpers.js';

const VALIDATE = '/api/yh/llava/stage1/validate';
const SERVER = fileURLToPath(new URL('../dist/server.js', import.meta.url));

function limits(o: Partial<AdmissionLimits> = {}): AdmissionLimits {
  const each = <T>(v: T) => ({ vlm: v, llm: v, yolo: v, ocr: v, render: v });
  return {
    concurrency: each(1),
    queue: each(64),
    maxWaitMs: each(null),
    retryAfterCapS: 3600,
    ...o,
  };
}

/** A clock the test moves: the queues measure service times with it. */
function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const NO_LIMIT = { maxWaitMs: 3_600_000 };

/** Holds `r` for `ms` of the test clock, `times` times: the measured service time becomes `ms`. */
async function measure(q: AdmissionQueues, c: ReturnType<typeof clock>, r: 'ocr' | 'render', ms: number, times = 3) {
  for (let i = 0; i < times; i++) {
    const a = await q.acquire([r], NO_LIMIT);
    c.advance(ms);
    a.release();
  }
}

async function refusal(p: Promise<unknown>): Promise<AdmissionRefused> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AdmissionRefused) return err;
    throw err;
  }
  throw new Error('expected an AdmissionRefused');
}

t.test('FIFO per resource: slots go to the waiters in arrival order, nobody overtakes', async (t) => {
  const q = new AdmissionQueues(limits());
  const first = await q.acquire(['render'], NO_LIMIT);
  const order: string[] = [];
  const waiting = ['a', 'b', 'c'].map((name) =>
    q.acquire(['render'], NO_LIMIT).then((a) => {
      order.push(name);
      return a;
    }),
  );
  t.equal(q.snapshot().render.queued, 3, 'three waiting');
  first.release();
  const a = await waiting[0];
  // A newcomer while b and c still wait joins behind them, even though a slot frees right after.
  const late = q.acquire(['render'], NO_LIMIT).then((x) => {
    order.push('late');
    return x;
  });
  (a as Admission).release();
  ((await waiting[1]) as Admission).release();
  ((await waiting[2]) as Admission).release();
  (await late).release();
  t.same(order, ['a', 'b', 'c', 'late']);
  t.match(q.snapshot().render, { inUse: 0, limit: 1, queued: 0, queueLimit: 64 });
});

t.test('two resources are taken in one fixed order: opposite requests do not deadlock', async (t) => {
  const q = new AdmissionQueues(limits());
  t.same(AdmissionQueues.order(['render', 'ocr', 'render']), ['ocr', 'render'], 'the RESOURCES order, each once');
  // H1 holds ocr, H2 holds render. A asks for (render, ocr), B for (ocr, render). Taken in the order
  // given, A would hold render waiting for ocr while B holds ocr waiting for render: a deadlock.
  const h1 = await q.acquire(['ocr'], NO_LIMIT);
  const h2 = await q.acquire(['render'], NO_LIMIT);
  const done: string[] = [];
  const run = (name: string, rs: Array<'ocr' | 'render'>) =>
    q.acquire(rs, NO_LIMIT).then((a) => {
      done.push(name);
      t.same(a.resources, ['ocr', 'render'], `${name} holds both`);
      a.release();
    });
  const a = run('A', ['render', 'ocr']);
  const b = run('B', ['ocr', 'render']);
  t.equal(q.snapshot().ocr.queued, 2, 'both wait for ocr first');
  t.equal(q.snapshot().render.queued, 0, 'nobody holds render while waiting for ocr');
  h2.release();
  h1.release();
  await Promise.all([a, b]);
  t.same(done, ['A', 'B']);
  // Many at once, both orders, two slots each: every one completes.
  const q2 = new AdmissionQueues(limits({ concurrency: { vlm: 1, llm: 2, yolo: 1, ocr: 2, render: 2 } }));
  const many = Array.from({ length: 40 }, (_, i) =>
    q2.acquire(i % 2 ? ['render', 'llm'] : ['llm', 'render'], NO_LIMIT).then(async (x) => {
      await new Promise((r) => setImmediate(r));
      x.release();
    }),
  );
  await Promise.all(many);
  t.match(q2.snapshot(), { llm: { inUse: 0, queued: 0 }, render: { inUse: 0, queued: 0 } }, '40 done, nothing held');
});

t.test('queue full: refused at once with a Retry-After that grows with the backlog', async (t) => {
  const retryAfter = async (queue: number) => {
    const c = clock();
    const q = new AdmissionQueues(limits({ queue: { vlm: 0, llm: 0, yolo: 0, ocr: queue, render: 0 } }), null, c.now);
    await measure(q, c, 'ocr', 1000);
    await q.acquire(['ocr'], NO_LIMIT);
    const waiters = Array.from({ length: queue }, () => q.acquire(['ocr'], NO_LIMIT));
    const r = await refusal(q.acquire(['ocr'], NO_LIMIT));
    t.equal(r.reason, 'queue_full');
    t.equal(r.resource, 'ocr');
    t.same(r.queue, { waiting: queue, limit: queue, inUse: 1, concurrency: 1 });
    q.close();
    for (const w of waiters) await t.rejects(w, AdmissionClosed, 'closing sends the waiters away');
    return r.retryAfterS;
  };
  // (waiting + 1) x 1 s mean service / 1 slot.
  t.equal(await retryAfter(2), 3);
  t.equal(await retryAfter(6), 7);
  t.equal(await retryAfter(0), 1, 'at least 1 s');

  const c = clock();
  const q = new AdmissionQueues(limits({ concurrency: { vlm: 1, llm: 1, yolo: 1, ocr: 4, render: 1 } }), null, c.now);
  await measure(q, c, 'ocr', 2000);
  for (let i = 0; i < 4; i++) await q.acquire(['ocr'], NO_LIMIT);
  const waiters = Array.from({ length: 10 }, () => q.acquire(['ocr'], NO_LIMIT));
  t.equal(q.retryAfterS(['ocr']), Math.ceil((11 * 2000) / 4 / 1000), 'divided by the concurrency');
  q.close();
  await Promise.allSettled(waiters);
  await t.rejects(q.acquire(['vlm'], NO_LIMIT), AdmissionClosed, 'nothing admitted once closed');
  const capped = new AdmissionQueues(limits({ retryAfterCapS: 3 }), null, c.now);
  await measure(capped, c, 'ocr', 10_000);
  await capped.acquire(['ocr'], NO_LIMIT);
  t.equal(capped.retryAfterS(['ocr']), 3, 'at most STAGE_RETRY_AFTER_SECONDS');
});

t.test('a wait that cannot end in time is refused at once; a waiter past its longest wait gives up', async (t) => {
  const c = clock();
  const q = new AdmissionQueues(limits(), null, c.now);
  await measure(q, c, 'render', 1000);
  await q.acquire(['render'], NO_LIMIT);
  // One ahead: about 1 s. A request that may wait 1.5 s is queued; with two ahead (2 s), refused.
  const queued = q.acquire(['render'], { maxWaitMs: 3_600_000 });
  t.equal(q.estimateMs(['render']), 2000);
  const r = await refusal(q.acquire(['render'], { maxWaitMs: 1500 }));
  t.match(r, { reason: 'deadline', resource: 'render', retryAfterS: 2, waitedMs: 0 });
  t.match(r.message, /about 2000 ms at the measured rate.*longer than this request may wait \(1500 ms\)/);
  t.equal(q.snapshot().render.queued, 1, 'the refused one never joined the queue');
  q.close();
  await t.rejects(queued, AdmissionClosed);

  // The longest wait runs on a real timer: 30 ms here to test that timer. The test clock stands
  // still, so the estimate (the holder's time so far) is 0 and the request joins the queue.
  const c2 = clock();
  const q2 = new AdmissionQueues(limits(), null, c2.now);
  const holder = await q2.acquire(['render'], NO_LIMIT);
  const t0 = performance.now();
  const gaveUp = await refusal(q2.acquire(['render'], { maxWaitMs: 30 }));
  t.equal(gaveUp.reason, 'max_wait');
  t.ok(performance.now() - t0 >= 25, 'waited its longest wait');
  t.equal(q2.snapshot().render.queued, 0, 'left the queue');
  // Holding ocr while waiting for render: on giving up, ocr is given back.
  const both = await refusal(q2.acquire(['render', 'ocr'], { maxWaitMs: 30 }));
  t.match(both, { reason: 'max_wait', resource: 'render' });
  t.match(q2.snapshot(), { ocr: { inUse: 0, queued: 0 }, render: { inUse: 1, queued: 0 } }, 'ocr given back');
  holder.release();
  t.equal(q2.snapshot().render.inUse, 0);
});

t.test('the longest wait: half the deadline unless configured, never past the deadline', async (t) => {
  const q = new AdmissionQueues(limits());
  t.equal(q.maxWaitMs(['render'], 60_000, 60_000), 30_000, 'half the budget');
  t.equal(q.maxWaitMs(['render'], 60_000, 10_000), 10_000, 'what is left of the deadline');
  t.equal(q.maxWaitMs([], 60_000, 60_000), 30_000);
  const configured = new AdmissionQueues(
    limits({ maxWaitMs: { vlm: 5_000, llm: null, yolo: null, ocr: 20_000, render: 8_000 } }),
  );
  t.equal(configured.maxWaitMs(['ocr', 'render'], 60_000, 60_000), 8_000, 'the smallest of its resources');
  t.equal(configured.maxWaitMs(['llm'], 60_000, 60_000), 30_000, 'unset for llm: half the budget');
});

t.test('the variables: defaults, per resource, out of range names the variable', async (t) => {
  const DB = { DATABASE_URL: 'postgres://u:p@127.0.0.1:1/x' };
  const c = loadConfig({}, DB);
  t.same(c.queue, { vlm: 64, llm: 64, yolo: 64, ocr: 64, render: 64 });
  t.equal(c.queueMaxWaitMs, null);
  t.same(c.queueMaxWaitMsOf, { vlm: null, llm: null, yolo: null, ocr: null, render: null });
  t.equal(c.retryAfterSeconds, 30);
  const set = loadConfig(
    {},
    { ...DB, STAGE_QUEUE_OCR: '0', STAGE_QUEUE_MAX_WAIT_MS: '15000', STAGE_QUEUE_MAX_WAIT_MS_RENDER: '2500' },
  );
  t.equal(set.queue.ocr, 0);
  t.equal(set.queueMaxWaitMs, 15_000);
  t.equal(set.queueMaxWaitMsOf.render, 2_500);
  for (const [env, message] of [
    [{ STAGE_QUEUE_OCR: '-1' }, 'STAGE_QUEUE_OCR must be an integer from 0 to 100000, got "-1"'],
    [{ STAGE_QUEUE_RENDER: '100001' }, 'STAGE_QUEUE_RENDER must be an integer from 0 to 100000, got "100001"'],
    [{ STAGE_QUEUE_MAX_WAIT_MS: 'soon' }, 'STAGE_QUEUE_MAX_WAIT_MS must be an integer from 0 to 3600000, got "soon"'],
    [
      { STAGE_QUEUE_MAX_WAIT_MS_VLM: '3600001' },
      'STAGE_QUEUE_MAX_WAIT_MS_VLM must be an integer from 0 to 3600000, got "3600001"',
    ],
  ] as const) {
    t.throws(() => loadConfig({}, { ...DB, ...env }), new ConfigError(`invalid stage-api configuration: ${message}`));
  }
  t.throws(() => loadConfig({ queue: { ocr: -2 } }, DB), /option queue\.ocr must be an integer from 0 to 100000/);
});

t.test('the server refuses to start on an out-of-range queue variable, naming it', async (t) => {
  const child = spawn(process.execPath, [SERVER], {
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: 'postgres://u:p@127.0.0.1:1/x', STAGE_QUEUE_RENDER: '-5' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.equal(code, 2, 'exit 2');
  t.match(output, /STAGE_QUEUE_RENDER must be an integer from 0 to 100000, got "-5"/);
});

/** A gate the stage's beforeStart hook waits on (after admission, before the row is started). */
function gate() {
  const entered: string[] = [];
  let open: () => void = () => {};
  let opened = new Promise<void>((r) => {
    open = r;
  });
  return {
    entered,
    hooks: {
      beforeStart: async (s: { jobVariantsId?: string | undefined }) => {
        entered.push(s.jobVariantsId ?? 'job');
        await opened;
      },
    },
    open: () => open(),
    close: () => {
      opened = new Promise<void>((r) => {
        open = r;
      });
    },
  };
}

t.test('queued requests wait their turn in FIFO order without a running row; wait and work recorded', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 3,
    variantStep: 'vlm_analyze',
    variantStatus: 'queued',
  });
  const [v1, v2, v3] = job.variantIds as [string, string, string];
  const g = gate();
  const app = await testApp(t, db, storage, { concurrency: { render: 1 }, hooks: g.hooks });
  const call = (id: string) =>
    app.inject({
      method: 'POST',
      url: VALIDATE,
      payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id, attempt: 1 },
    });
  const first = call(v1);
  await waitFor(() => g.entered.length === 1, { message: 'the first holds the renderer' });
  const second = call(v2);
  await waitFor(() => app.stageContext.limiter.snapshot().render.queued === 1, { message: 'second queued' });
  const third = call(v3);
  await waitFor(() => app.stageContext.limiter.snapshot().render.queued === 2, { message: 'third queued' });
  for (const id of [v2, v3]) {
    t.match(await variantState(db.pool, id), { status: 'queued', attempt: 1 }, 'a waiter holds no running row');
  }
  g.open();
  const answers = await Promise.all([first, second, third]);
  t.same(
    answers.map((a) => a.statusCode),
    [200, 200, 200],
  );
  t.same(g.entered, [v1, v2, v3], 'started in arrival order');
  for (const a of answers) {
    const b = a.json();
    t.ok(Number.isInteger(b.wait_ms) && Number.isInteger(b.work_ms), 'wait_ms and work_ms in the answer');
  }
  // The third was queued before the gate opened and the renderer takes one at a time, so it waited
  // at least the whole of the second's work (1 ms for the two roundings). Comparing the two waits
  // instead depends on how long after the second the third arrived.
  t.ok(
    answers[2]?.json().wait_ms + 1 >= answers[1]?.json().work_ms,
    "the third waited at least the second's work (it was queued behind it)",
  );
  const rows = await db.pool.query(
    `SELECT job_variants_id, step, attempt, outcome, resources, wait_ms, work_ms, admitted_at >= received_at AS ordered
       FROM stage_run_timings WHERE job_id = $1 ORDER BY admitted_at`,
    [job.jobId],
  );
  t.same(
    rows.rows.map((r) => r.job_variants_id),
    [v1, v2, v3],
  );
  t.match(rows.rows, [
    { step: 'vlm_analyze', attempt: 1, outcome: 'done', resources: ['render'], ordered: true },
    { outcome: 'done' },
    { outcome: 'done' },
  ]);
  t.ok(rows.rows[1].wait_ms > 0, 'the second waited');
  const m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(m, /^stage_admission_wait_seconds_count\{resource="render"\} 3$/m);
  t.match(m, /^stage_admission_queue_length\{resource="render"\} 0$/m);
});

t.test('429s of admission: queue full, deadline, longest wait; the row untouched each time', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const job = await seedJob(db.pool, {
    imageUrl: 'inputs/coffee.png',
    variants: 4,
    variantStep: 'vlm_analyze',
    variantStatus: 'queued',
  });
  const [v1, v2, v3, v4] = job.variantIds as [string, string, string, string];
  const g = gate();
  const app = await testApp(t, db, storage, {
    concurrency: { render: 1 },
    queue: { render: 1 },
    // Shortened to test the longest wait itself.
    queueMaxWaitMs: 1_000,
    hooks: g.hooks,
  });
  const call = (id: string, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: VALIDATE,
      headers,
      payload: { job_id: job.jobId, tenant_id: job.tenantId, job_variants_id: id, attempt: 1 },
    });
  const untouched = async (id: string, what: string) => {
    t.match(await variantState(db.pool, id), { current_step: 'vlm_analyze', status: 'queued', attempt: 1 }, what);
    const r = await db.pool.query('SELECT count(*)::int AS n FROM stage_run_timings WHERE job_variants_id = $1', [id]);
    t.equal(r.rows[0].n, 0, `${what}: nothing ran`);
  };
  const first = call(v1);
  await waitFor(() => g.entered.length === 1, { message: 'the first holds the renderer' });

  // Queue full: one waits (the queue holds 1), the next is refused at once.
  const queued = call(v3);
  await waitFor(() => app.stageContext.limiter.snapshot().render.queued === 1, { message: 'one waiting' });
  const full = await call(v4);
  t.equal(full.statusCode, 429, 'queue full: 429', { body: full.json() });
  t.match(full.json(), {
    code: 'busy',
    reason: 'queue_full',
    resource: 'render',
    queue: { waiting: 1, limit: 1, inUse: 1 },
  });
  t.match(full.headers['retry-after'], /^[1-9][0-9]*$/, 'Retry-After in whole seconds');
  t.match(full.json().error, /vlm_analyze not started: the render queue is full/);
  await untouched(v4, 'queue full');

  // The longest wait (1 s here): the waiter got no slot in time and is refused.
  const waited = await queued;
  t.equal(waited.statusCode, 429, 'longest wait: 429', { body: waited.json() });
  t.match(waited.json(), { code: 'busy', reason: 'max_wait', resource: 'render' });
  t.ok(waited.json().waited_ms >= 900, `waited its longest wait (${waited.json().waited_ms} ms)`);
  t.ok(Number(waited.headers['retry-after']) >= 1, 'with a Retry-After');
  await untouched(v3, 'longest wait');

  // The deadline: the renderer has been held for over a second (the estimate of a wait before any
  // service time was measured); a request with 1.5 s left may wait at most 0.75 s: refused at once.
  const t0 = Date.now();
  const late = await call(v2, { 'x-pipeline-timeout-ms': '1500' });
  t.equal(late.statusCode, 429, 'deadline: 429', { body: late.json() });
  t.match(late.json(), { code: 'busy', reason: 'deadline', resource: 'render' });
  t.match(late.json().error, /is longer than this request may wait \(\d+ ms\)/);
  t.ok(Number(late.headers['retry-after']) >= 1, 'with a Retry-After');
  t.ok(Date.now() - t0 < 1_000, 'at once');
  await untouched(v2, 'deadline');

  g.open();
  t.equal((await first).statusCode, 200);
  for (const id of [v2, v3, v4]) t.equal((await call(id)).statusCode, 200, 'a refused one runs when sent again');
  const m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  for (const reason of ['deadline', 'max_wait', 'queue_full']) {
    t.match(m, new RegExp(`^stage_admission_refused_total\\{resource="render",reason="${reason}"\\} 1$`, 'm'));
  }
  t.match(m, /^stage_saturated_total\{step="vlm_analyze",resource="render"\} 3$/m);
});

t.test('/metrics: the admission series exist for every resource from the start', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage);
  const m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(m, /^# TYPE stage_admission_queue_length gauge$/m);
  t.match(m, /^# TYPE stage_admission_wait_seconds histogram$/m);
  t.match(m, /^# TYPE stage_admission_refused_total counter$/m);
  for (const r of ['vlm', 'llm', 'yolo', 'ocr', 'render']) {
    t.match(m, new RegExp(`^stage_admission_queue_length\\{resource="${r}"\\} 0$`, 'm'));
    t.match(m, new RegExp(`^stage_admission_wait_seconds_count\\{resource="${r}"\\} 0$`, 'm'));
    for (const reason of ['queue_full', 'deadline', 'max_wait']) {
      t.match(m, new RegExp(`^stage_admission_refused_total\\{resource="${r}",reason="${reason}"\\} 0$`, 'm'));
    }
  }
  const h = (await app.inject({ method: 'GET', url: '/healthz' })).json();
  t.match(h.concurrency.render, { inUse: 0, limit: 2, queued: 0, queueLimit: 64 });
  t.match(h.warmup, { enabled: false, state: 'off', finished: false });
});

t.test('warm-up at boot: every part warmed before ready, /healthz says it finished', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const app = await testApp(t, db, storage, { warm: true, cpuWorkers: 1 });
  const h = (await app.inject({ method: 'GET', url: '/healthz' })).json();
  t.match(h.warmup, {
    enabled: true,
    state: 'done',
    finished: true,
    parts: { cpu: { ok: true }, ocr: { ok: true }, main: { ok: true }, database: { ok: true } },
  });
  t.ok(h.warmup.ms > 0, `took ${h.warmup.ms} ms`);
  t.notOk('yolo' in h.warmup.parts, 'no YOLO model configured: nothing to warm');
  // The OCR engine exists already: the first ocr_eval does not create it.
  const t0 = performance.now();
  await app.stageContext.backends.ocr();
  t.ok(performance.now() - t0 < 50, 'the OCR engine was created by the warm-up');
});

t.test('the hosted listener is sent what the server can run at once (stageSlots)', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const slots = async (o: Parameters<typeof testApp>[3]) => stageSlots((await testApp(t, db, storage, o)).stageContext);
  t.equal(await slots({ cpuWorkers: 1 }), 2, 'CPU fallbacks: the renderer on one thread + OCR');
  t.equal(await slots({ cpuWorkers: 2 }), 3, 'two threads: both render slots');
  t.equal(await slots({ cpuWorkers: 0 }), 2, 'inline: one thread');
  t.equal(
    await slots({ cpuWorkers: 1, vlm: { baseUrl: 'http://127.0.0.1:9/v1' }, concurrency: { vlm: 3 } }),
    5,
    'a VLM server: its 3 slots + the renderer + OCR',
  );
});
