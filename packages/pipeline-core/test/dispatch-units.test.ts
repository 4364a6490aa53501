// Pure pieces of the dispatcher and the notification boundary (no database needed).
import t from 'tap';
import { parseRetryAfter } from '../src/engine/stage-client.js';
import { parseJobNotification, parseVariantNotification } from '../src/notifications.js';
import { Semaphore, sleep } from '../src/semaphore.js';

t.test('Retry-After: delta seconds, HTTP date, garbage', async (t) => {
  t.equal(parseRetryAfter('3'), 3000);
  t.equal(parseRetryAfter('0.5'), 500);
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now), 10_000);
  t.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0, 'a date in the past means now');
  t.equal(parseRetryAfter('soon'), undefined);
  t.equal(parseRetryAfter(undefined), undefined);
});

t.test('semaphore: bounded, FIFO, later callers wait instead of being dropped', async (t) => {
  const s = new Semaphore(2);
  const order: number[] = [];
  const r1 = await s.acquire();
  const r2 = await s.acquire();
  const waiting = [3, 4].map((n) =>
    s.acquire().then((release) => {
      order.push(n);
      return release;
    }),
  );
  await sleep(10);
  t.equal(s.inUse, 2);
  t.equal(s.waiting, 2);
  r1();
  r1(); // releasing twice is harmless
  const r3 = await waiting[0]!;
  t.same(order, [3]);
  r2();
  const r4 = await waiting[1]!;
  t.same(order, [3, 4]);
  r3();
  r4();
  t.equal(s.inUse, 0);
  t.throws(() => new Semaphore(0));
});

t.test('sleep ends at once when aborted and leaves no timer', async (t) => {
  const ac = new AbortController();
  const p = sleep(60_000, ac.signal);
  ac.abort();
  await p;
  t.pass('resolved');
});

t.test('notification payloads are validated at the boundary', async (t) => {
  const id = '2b1c6f55-8a49-4c3e-9e43-0a5b4c1d2e3f';
  const ok = parseVariantNotification(
    JSON.stringify({ job_variants_id: id, job_id: id, current_step: 'planner', status: 'done', attempt: 2, extra: 1 }),
  );
  t.match(ok, { ok: true, value: { current_step: 'planner', attempt: 2 } });
  t.match(parseVariantNotification('{'), { ok: false, error: /bad JSON/ });
  t.match(
    parseVariantNotification(JSON.stringify({ job_variants_id: id, job_id: id, current_step: 'x', status: 'done' })),
    {
      ok: false,
      error: /current_step/,
    },
  );
  t.match(parseVariantNotification('x'.repeat(9000)), { ok: false, error: /too large/ });
  t.match(parseVariantNotification(42), { ok: false });
  t.match(parseJobNotification(JSON.stringify({ job_id: id, current_step: 'ad_copy_gen_kor', status: 'done' })), {
    ok: true,
  });
  t.match(parseJobNotification(JSON.stringify({ job_id: 'nope', current_step: 'ad_copy_gen_kor', status: 'done' })), {
    ok: false,
    error: /job_id/,
  });
});
