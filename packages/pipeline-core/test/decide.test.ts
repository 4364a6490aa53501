// The per-row decision table (docs/healing.md, "the decision table") and the
// answer table ("what each answer means"), as pure functions: no database.
import t from 'tap';
import { type AnswerAction, classifyAnswer, needsReread, type StageAnswer } from '../src/engine/answers.js';
import { type DecideContext, type Decision, decide, type RowFacts, targetStep } from '../src/engine/decide.js';
import type { SubjectState } from '../src/sql/readSubject.js';
import { STEP_GRAPH, type Step } from '../src/steps.js';

const SELF = 'me';

function row(p: Partial<RowFacts> & Pick<RowFacts, 'step' | 'status'>): RowFacts {
  return { attempt: 1, attemptBase: 0, ageMs: 0, claimedBy: null, dispatchRequested: false, variant: true, ...p };
}

function ctx(r: RowFacts, p: Partial<DecideContext> = {}): DecideContext {
  return {
    def: STEP_GRAPH[r.step],
    fanInPolicy: 'all',
    self: SELF,
    live: new Set([SELF, 'peer']),
    deadAfterMs: 10_000,
    circuit: 'closed',
    freeSlots: 5,
    inFlight: false,
    ...p,
  };
}

const planner = STEP_GRAPH.planner;
const cases: Array<[string, RowFacts, Partial<DecideContext>, Decision]> = [
  // done
  ['done: claim the next step', row({ step: 'planner', status: 'done' }), {}, { kind: 'claim-next', next: 'overlay' }],
  [
    'img_gen done: claim vlm_analyze',
    row({ step: 'img_gen', status: 'done' }),
    {},
    { kind: 'claim-next', next: 'vlm_analyze' },
  ],
  ['iou_eval done: fan-in', row({ step: 'iou_eval', status: 'done' }), {}, { kind: 'fan-in' }],
  [
    'job ad_copy done: claim instagram_feed_gen',
    row({ step: 'ad_copy_gen_kor', status: 'done', variant: false }),
    {},
    { kind: 'claim-next', next: 'instagram_feed_gen' },
  ],
  [
    'job instagram_feed_gen done: finished',
    row({ step: 'instagram_feed_gen', status: 'done', variant: false }),
    {},
    { kind: 'wait', reason: 'finished' },
  ],
  [
    'user_img_input done: the YE part’s, not ours',
    row({ step: 'user_img_input', status: 'done' }),
    {},
    { kind: 'wait', reason: 'not-ours' },
  ],
  [
    'done, circuit open: wait',
    row({ step: 'planner', status: 'done' }),
    { circuit: 'open' },
    { kind: 'wait', reason: 'circuit-open' },
  ],
  [
    'done, no free slot: wait',
    row({ step: 'planner', status: 'done' }),
    { freeSlots: 0 },
    { kind: 'wait', reason: 'no-free-slot' },
  ],
  [
    'done, half-open with the probe free: claim (the probe)',
    row({ step: 'planner', status: 'done' }),
    { circuit: 'half-open', freeSlots: 1 },
    { kind: 'claim-next', next: 'overlay' },
  ],
  [
    'done, half-open with the probe taken: wait',
    row({ step: 'planner', status: 'done' }),
    { circuit: 'half-open', freeSlots: 0 },
    { kind: 'wait', reason: 'circuit-open' },
  ],
  // failed
  [
    'failed under the limit, backoff over: retry',
    row({ step: 'planner', status: 'failed', ageMs: 60_000 }),
    {},
    { kind: 'retry' },
  ],
  [
    'failed under the limit, backoff not over: wait',
    row({ step: 'planner', status: 'failed', ageMs: 10 }),
    {},
    { kind: 'wait', reason: 'backoff' },
  ],
  [
    'failed at the limit: give up',
    row({ step: 'planner', status: 'failed', attempt: planner.retry.maxAttempts }),
    {},
    { kind: 'give-up', timedOut: false },
  ],
  [
    'failed at the limit counted from attempt_base: retry',
    row({ step: 'planner', status: 'failed', attempt: 5, attemptBase: 4, ageMs: 60_000 }),
    {},
    { kind: 'retry' },
  ],
  [
    'failed, circuit open: wait (no retry while the stage is away)',
    row({ step: 'planner', status: 'failed', ageMs: 60_000 }),
    { circuit: 'open' },
    { kind: 'wait', reason: 'circuit-open' },
  ],
  [
    'failed at the limit, circuit open: still given up (no call)',
    row({ step: 'planner', status: 'failed', attempt: 3 }),
    { circuit: 'open' },
    { kind: 'give-up', timedOut: false },
  ],
  [
    'img_gen failed: the YE part’s',
    row({ step: 'img_gen', status: 'failed' }),
    {},
    { kind: 'wait', reason: 'not-ours' },
  ],
  // queued
  [
    'img_gen queued: parked upstream',
    row({ step: 'img_gen', status: 'queued', ageMs: 9e7 }),
    {},
    { kind: 'wait', reason: 'parked-upstream' },
  ],
  [
    'user_img_input queued: parked upstream',
    row({ step: 'user_img_input', status: 'queued' }),
    {},
    { kind: 'wait', reason: 'parked-upstream' },
  ],
  [
    'own queued, call in flight: wait',
    row({ step: 'planner', status: 'queued', claimedBy: SELF, ageMs: 9e7 }),
    { inFlight: true },
    { kind: 'wait', reason: 'in-flight' },
  ],
  [
    'own queued, no call in flight: re-send it (same attempt, no write)',
    row({ step: 'planner', status: 'queued', claimedBy: SELF, ageMs: 9e7 }),
    {},
    { kind: 'resend-own' },
  ],
  [
    'own queued, circuit open: wait',
    row({ step: 'planner', status: 'queued', claimedBy: SELF }),
    { circuit: 'open' },
    { kind: 'wait', reason: 'circuit-open' },
  ],
  [
    'queued by a live peer, however old: never rescued by a timer',
    row({ step: 'planner', status: 'queued', claimedBy: 'peer', ageMs: 9e7 }),
    {},
    { kind: 'wait', reason: 'claimer-alive' },
  ],
  [
    'queued by a dead instance: re-dispatch',
    row({ step: 'planner', status: 'queued', claimedBy: 'gone' }),
    {},
    { kind: 're-dispatch', why: 'dead-claimer' },
  ],
  [
    'queued by a dead instance, circuit open: wait',
    row({ step: 'planner', status: 'queued', claimedBy: 'gone' }),
    { circuit: 'open' },
    { kind: 'wait', reason: 'circuit-open' },
  ],
  [
    'queued by a dead instance, no slot: wait',
    row({ step: 'planner', status: 'queued', claimedBy: 'gone' }),
    { freeSlots: 0 },
    { kind: 'wait', reason: 'no-free-slot' },
  ],
  [
    'queued without a claimer, young: the claim may be settling',
    row({ step: 'planner', status: 'queued', ageMs: 500 }),
    {},
    { kind: 'wait', reason: 'claim-settling' },
  ],
  [
    'queued without a claimer, older than deadAfterMs: re-dispatch',
    row({ step: 'planner', status: 'queued', ageMs: 20_000 }),
    {},
    { kind: 're-dispatch', why: 'no-claimer' },
  ],
  [
    'queued with a dispatch requested (manual retry): claim it at once',
    row({ step: 'planner', status: 'queued', dispatchRequested: true }),
    {},
    { kind: 're-dispatch', why: 'requested' },
  ],
  [
    'job-level queued by a dead instance: re-dispatch',
    row({ step: 'ad_copy_gen_kor', status: 'queued', claimedBy: 'gone', variant: false }),
    {},
    { kind: 're-dispatch', why: 'dead-claimer' },
  ],
  // running
  [
    'running within its deadline: the stage’s',
    row({ step: 'planner', status: 'running', ageMs: 1_000 }),
    {},
    { kind: 'wait', reason: 'stage-working' },
  ],
  [
    'running past deadline + margin: rescue',
    row({ step: 'planner', status: 'running', ageMs: planner.rescueAfterMs + 1 }),
    {},
    { kind: 'rescue' },
  ],
  [
    'running past deadline, circuit open: rescue suspended',
    row({ step: 'planner', status: 'running', ageMs: planner.rescueAfterMs + 1 }),
    { circuit: 'open' },
    { kind: 'wait', reason: 'circuit-open' },
  ],
  [
    'running past deadline at the limit: give up (timed out)',
    row({ step: 'planner', status: 'running', attempt: 3, ageMs: planner.rescueAfterMs + 1 }),
    {},
    { kind: 'give-up', timedOut: true },
  ],
  [
    'running past deadline, no slot: wait',
    row({ step: 'planner', status: 'running', ageMs: planner.rescueAfterMs + 1 }),
    { freeSlots: 0 },
    { kind: 'wait', reason: 'no-free-slot' },
  ],
];

t.test('decide(): the whole table', async (t) => {
  for (const [name, r, c, want] of cases) t.same(decide(r, ctx(r, c)), want, name);
});

t.test('targetStep: the step a decision would send', async (t) => {
  const tgt = (step: Step, status: RowFacts['status'], variant = true) => targetStep({ step, status, variant });
  t.equal(tgt('planner', 'done'), 'overlay');
  t.equal(tgt('iou_eval', 'done'), 'ad_copy_gen_kor');
  t.equal(tgt('ad_copy_gen_kor', 'done', false), 'instagram_feed_gen');
  t.equal(tgt('instagram_feed_gen', 'done', false), null);
  t.equal(tgt('user_img_input', 'done'), null);
  t.equal(tgt('planner', 'queued'), 'planner');
  t.equal(tgt('planner', 'failed'), 'planner');
});

const ours = { step: 'planner' as Step, attempt: 2 };
const at = (p: Partial<SubjectState>): SubjectState => ({
  step: 'planner',
  status: 'queued',
  attempt: 2,
  attemptBase: 0,
  claimedBy: SELF,
  jobFailed: false,
  ...p,
});
const http = (status: number, body = '{}', retryAfterMs?: number): StageAnswer => ({
  kind: 'http',
  status,
  body,
  retryAfterMs,
});
const refused: StageAnswer = { kind: 'error', error: 'ECONNREFUSED' };
const timeout: StageAnswer = { kind: 'timeout', error: 'no answer' };

const answers: Array<[string, StageAnswer, SubjectState | null | undefined, AnswerAction]> = [
  ['2xx: done', http(200), undefined, { kind: 'done' }],
  ['409: skipped, state changed meanwhile', http(409), undefined, { kind: 'conflict' }],
  ['400: bad input, give up at once', http(400), undefined, { kind: 'reject' }],
  ['422: bad input, give up at once', http(422, '{"code":"input_too_long"}'), undefined, { kind: 'reject' }],
  ['429 + Retry-After: busy for that long', http(429, '{}', 3_000), undefined, { kind: 'busy', waitMs: 3_000 }],
  ['429 + Retry-After 5 min: capped at 30 s', http(429, '{}', 300_000), undefined, { kind: 'busy', waitMs: 30_000 }],
  ['429 without Retry-After: 1 s', http(429), undefined, { kind: 'busy', waitMs: 1_000 }],
  ['404 job_not_found, row gone: drop', http(404, '{"code":"job_not_found"}'), null, { kind: 'drop' }],
  [
    '404 job_not_found, row still ours: the stage sees another database (service failure)',
    http(404, '{"code":"job_not_found"}'),
    at({}),
    { kind: 'service-failure', scope: 'url' },
  ],
  [
    '404 without the code, row ours queued: route service failure',
    http(404, '{"error":"no route"}'),
    at({}),
    { kind: 'service-failure', scope: 'route' },
  ],
  ['401, row ours queued: service failure', http(401), at({}), { kind: 'service-failure', scope: 'url' }],
  ['403, row ours queued: service failure', http(403), at({}), { kind: 'service-failure', scope: 'url' }],
  ['405, row ours queued: service failure', http(405), at({}), { kind: 'service-failure', scope: 'url' }],
  ['418, row ours queued: service failure', http(418), at({}), { kind: 'service-failure', scope: 'url' }],
  ['502, row ours queued: service failure', http(502), at({}), { kind: 'service-failure', scope: 'url' }],
  ['503, row ours queued: service failure', http(503), at({}), { kind: 'service-failure', scope: 'url' }],
  ['504, row ours queued: service failure', http(504), at({}), { kind: 'service-failure', scope: 'url' }],
  ['refused, row ours queued: service failure', refused, at({}), { kind: 'service-failure', scope: 'url' }],
  ['500, row ours failed: retry rule', http(500), at({ status: 'failed' }), { kind: 'retry-rule' }],
  [
    '500, row ours queued: service failure (the stage recorded nothing)',
    http(500),
    at({}),
    { kind: 'service-failure', scope: 'url' },
  ],
  ['reset after the stage recorded the failure: retry rule', refused, at({ status: 'failed' }), { kind: 'retry-rule' }],
  [
    'no answer by the deadline + grace, row ours running: rescue',
    timeout,
    at({ status: 'running' }),
    { kind: 'rescue' },
  ],
  [
    'no answer by the deadline + grace, row ours queued: service failure',
    timeout,
    at({}),
    { kind: 'service-failure', scope: 'url' },
  ],
  [
    'reset while the stage runs it: the stage’s (answer lost)',
    refused,
    at({ status: 'running' }),
    { kind: 'stage-owns' },
  ],
  ['an error after the stage finished it: done (answer lost)', refused, at({ status: 'done' }), { kind: 'done' }],
  ['anything, another attempt: someone else moved it', http(503), at({ attempt: 3 }), { kind: 'moved' }],
  ['anything, another step: someone else moved it', refused, at({ step: 'overlay' }), { kind: 'moved' }],
  ['anything, row gone: drop', http(500), null, { kind: 'drop' }],
  [
    'queued ours but the job failed for good (cancelled): nothing',
    http(503),
    at({ jobFailed: true }),
    { kind: 'moved' },
  ],
];

t.test('classifyAnswer(): the answer table', async (t) => {
  for (const [name, a, reread, want] of answers) {
    if (reread === undefined) t.notOk(needsReread(a), `${name}: decided without a re-read`);
    else t.ok(needsReread(a), `${name}: needs the re-read`);
    t.same(classifyAnswer(a, reread, ours), want, name);
  }
  t.throws(() => classifyAnswer(http(503), undefined, ours), /needs the re-read/);
});
