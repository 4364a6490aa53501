// The circuit breaker and the capacity check (docs/healing.md), without a
// database. Probe waits are the breaker's own timer: the tests shorten it to
// test that timer (probeBaseMs / probeMaxMs) and wait for the transition.
import t from 'tap';
import { type BreakerEvents, CircuitBreaker } from '../src/engine/breaker.js';
import { Capacity } from '../src/engine/capacity.js';
import { waitFor } from './helpers.js';

function breaker(o: Partial<{ probeBaseMs: number; probeMaxMs: number }> = {}) {
  const log: string[] = [];
  const events: BreakerEvents = {
    onOpen: (_b, cause) => log.push(`open: ${cause}`),
    onHalfOpen: () => log.push('half-open'),
    onClose: () => log.push('closed'),
    onProbeFailed: (_b, _cause, next) => log.push(`probe failed, next in ${next}`),
  };
  const b = new CircuitBreaker('http://stage', events, {
    serviceFailures: 3,
    fiveHundreds: 10,
    fiveHundredSubjects: 5,
    probeBaseMs: o.probeBaseMs ?? 20,
    probeMaxMs: o.probeMaxMs ?? 80,
  });
  return { b, log };
}

t.test('opens after 3 service failures in a row; a success in between resets the count', async (t) => {
  const { b, log } = breaker();
  t.teardown(() => b.dispose());
  b.serviceFailure('refused');
  b.serviceFailure('refused');
  b.success();
  b.serviceFailure('refused');
  b.serviceFailure('refused');
  t.equal(b.state, 'closed');
  b.serviceFailure('401');
  t.equal(b.state, 'open');
  t.match(log, [/^open: 3 service failures in a row, last: 401/]);
  b.serviceFailure('refused');
  t.equal(log.length, 1, 'one line per opening, not per failure');
  b.success();
  t.equal(b.state, 'open', 'the answer of a call sent before it opened does not close it: only the probe does');
});

t.test('opens after 10 recorded 5xx in a row across at least 5 subjects, not on one bad subject', async (t) => {
  const { b } = breaker();
  t.teardown(() => b.dispose());
  for (let i = 0; i < 20; i++) b.recordedFailure('same-subject');
  t.equal(b.state, 'closed', '20 failures of one subject: its retry rule, not an outage');
  b.success();
  for (let i = 0; i < 9; i++) b.recordedFailure(`s${i % 5}`);
  t.equal(b.state, 'closed');
  b.recordedFailure('s9');
  t.equal(b.state, 'open');
});

t.test(
  'open -> half-open after the probe wait (doubling, capped, at least Retry-After); one probe at a time',
  async (t) => {
    const { b, log } = breaker({ probeBaseMs: 20, probeMaxMs: 60 });
    t.teardown(() => b.dispose());
    for (let i = 0; i < 3; i++) b.serviceFailure('refused');
    t.notOk(b.allowsCalls);
    t.notOk(b.takeProbe(), 'no probe while open');
    await waitFor(() => b.state === 'half-open', { timeoutMs: 5_000 });
    t.ok(b.probeAvailable);
    t.ok(b.takeProbe(), 'the probe');
    t.notOk(b.takeProbe(), 'exactly one');
    b.serviceFailure('still refused');
    t.equal(b.state, 'open', 'a failed probe opens it again');
    t.match(log.at(-1), /probe failed, next in 40/, 'the wait doubled');
    await waitFor(() => b.state === 'half-open', { timeoutMs: 5_000 });
    b.takeProbe();
    b.serviceFailure('x');
    t.match(log.at(-1), /next in 60/, 'capped');
    await waitFor(() => b.state === 'half-open', { timeoutMs: 5_000 });
    b.takeProbe();
    b.serviceFailure('503', 1_000);
    t.match(log.at(-1), /next in 1000/, 'a 503 Retry-After is respected');
    b.dispose();
    const { b: b2, log: log2 } = breaker();
    for (let i = 0; i < 3; i++) b2.serviceFailure('refused');
    await waitFor(() => b2.state === 'half-open', { timeoutMs: 5_000 });
    b2.takeProbe();
    b2.success();
    t.equal(b2.state, 'closed', 'any answer that is not a service failure closes it');
    t.same(log2.slice(-1), ['closed']);
    b2.dispose();
  },
);

t.test(
  'capacity: slots = maxInFlight - in use; 0 while open; 1 (the probe) while half-open; 0 while paused',
  async (t) => {
    const { b } = breaker({ probeBaseMs: 20 });
    t.teardown(() => b.dispose());
    let paused = false;
    const cap = new Capacity(
      3,
      () => [b],
      () => 'http://stage',
      () => paused,
      2,
    );
    t.equal(cap.free('planner'), 3);
    const s1 = cap.take('planner');
    const s2 = cap.take('planner');
    t.equal(cap.free('planner'), 1);
    paused = true;
    t.equal(cap.free('planner'), 0, 'paused: nothing new');
    paused = false;
    for (let i = 0; i < 3; i++) b.serviceFailure('refused');
    t.equal(cap.free('planner'), 0, 'open circuit: 0');
    t.equal(cap.take('planner'), null);
    await waitFor(() => b.state === 'half-open', { timeoutMs: 5_000 });
    t.equal(cap.free('planner'), 1, 'half-open: the probe only');
    const probe = cap.take('planner');
    t.ok(probe?.probe, 'the slot is the probe');
    t.equal(cap.free('planner'), 0, 'probe taken');
    b.success();
    t.equal(cap.free('planner'), 0, 'all three in use');
    s1?.release();
    s1?.release();
    t.equal(cap.free('planner'), 1, 'releasing twice frees one slot');
    s2?.release();
    probe?.release();
    t.equal(cap.inUse, 0);
  },
);

t.test('capacity: waiters in FIFO order, notifications bounded and deduplicated by subject', async (t) => {
  const { b } = breaker();
  t.teardown(() => b.dispose());
  const cap = new Capacity(
    1,
    () => [b],
    () => 'http://stage',
    () => false,
    2,
  );
  const held = cap.take('planner');
  const order: string[] = [];
  const ran = (name: string) => (slot: { release(): void }) => {
    order.push(name);
    slot.release();
  };
  t.ok(cap.whenFree('planner', ran('a'), 'v:a'));
  t.ok(cap.whenFree('planner', ran('b-old'), 'v:b'));
  t.ok(cap.whenFree('planner', ran('b'), 'v:b'), 'same subject: replaced, not queued twice');
  t.notOk(cap.whenFree('planner', ran('c'), 'v:c'), 'beyond the bound: refused (left to the sweep)');
  t.equal(cap.overflow, 1);
  t.ok(cap.whenFree('planner', ran('sweep')), 'sweeps are not bounded by the notification bound');
  t.equal(cap.waiting, 3);
  held?.release();
  t.same(order, ['a', 'b', 'sweep'], 'FIFO, each with a slot');
  let dropped = false;
  const h2 = cap.take('planner');
  cap.whenFree('planner', ran('never'), null, () => {
    dropped = true;
  });
  cap.clear();
  t.ok(dropped, 'a cleared waiter is told');
  h2?.release();
});

t.test('capacity: a per-step and a per-URL limit inside the total', async (t) => {
  const gpu = breaker();
  const cpu = breaker();
  t.teardown(() => {
    gpu.b.dispose();
    cpu.b.dispose();
  });
  const urlOf = (step: string) => (step === 'vlm_analyze' || step === 'vlm_judge' ? 'http://gpu' : 'http://cpu');
  const cap = new Capacity(
    10,
    (step) => [urlOf(step) === 'http://gpu' ? gpu.b : cpu.b],
    urlOf,
    () => false,
    100,
    {
      perStep: (step) => (step === 'vlm_analyze' ? 2 : undefined),
      perUrl: (url) => (url === 'http://gpu' ? 3 : undefined),
    },
  );
  const a1 = cap.take('vlm_analyze');
  const a2 = cap.take('vlm_analyze');
  t.equal(cap.free('vlm_analyze'), 0, 'the step limit (2)');
  t.equal(cap.take('vlm_analyze'), null);
  t.equal(cap.free('vlm_judge'), 1, 'the GPU URL limit (3) leaves one for the other GPU step');
  const j = cap.take('vlm_judge');
  t.equal(cap.free('vlm_judge'), 0, 'GPU URL full');
  t.equal(cap.free('ocr_eval'), 7, 'the CPU steps keep the rest of the total (10 - 3 taken)');
  t.equal(cap.inUseBy('vlm_analyze'), 2);
  a1?.release();
  t.equal(cap.free('vlm_analyze'), 1);
  a2?.release();
  j?.release();
  t.equal(cap.inUse, 0);
});
