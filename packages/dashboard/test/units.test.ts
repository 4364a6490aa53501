/**
 * The pure parts: what a job's status and progress mean, the jobs page's
 * filters and their errors, and the live events' ring buffer and replay
 * rules (no database).
 */
import t from 'tap';
import { FilterError, formatCursor, parseJobsQuery, parseMoment } from '../src/filters.js';
import { errorText } from '../src/format.js';
import { formatEvent, LiveHub, type LiveEventData, RingBuffer, type StreamSink } from '../src/live/hub.js';
import { parseNotification } from '../src/live/notifications.js';
import { resolveOptions } from '../src/options.js';
import { jobStatusOf, progressOf, progressSegments, stepFilterKind, stepsPassed } from '../src/vocabulary.js';

t.test('status: done, failed with a reason, running otherwise', async (t) => {
  t.equal(jobStatusOf({ current_step: 'instagram_feed_gen', status: 'done', failure_reason: null }), 'done');
  t.equal(jobStatusOf({ current_step: 'img_gen', status: 'failed', failure_reason: 'planner failed' }), 'failed');
  t.equal(jobStatusOf({ current_step: 'instagram_feed_gen', status: 'done', failure_reason: 'cancelled' }), 'failed');
  t.equal(
    jobStatusOf({ current_step: 'ad_copy_gen_kor', status: 'failed', failure_reason: null }),
    'running',
    'a failed attempt waiting for its automatic retry is running',
  );
  t.equal(jobStatusOf({ current_step: 'img_gen', status: 'queued', failure_reason: null }), 'running');
});

t.test('progress: the least advanced variant, the job row in the job-level phase', async (t) => {
  const job = { current_step: 'img_gen', status: 'queued' };
  t.same(
    progressOf(job, [
      { current_step: 'ocr_eval', status: 'running' },
      { current_step: 'planner', status: 'done' },
      { current_step: 'planner', status: 'failed' },
    ]),
    { current_step: 'planner', status: 'failed' },
    'the least advanced step; at the same step a failure shows first',
  );
  t.same(progressOf(job, []), job, 'no variants: the job row');
  const jobPhase = { current_step: 'ad_copy_gen_kor', status: 'running' };
  t.same(
    progressOf(jobPhase, [{ current_step: 'iou_eval', status: 'done' }]),
    jobPhase,
    'job-level phase: the job row',
  );

  const segs = progressSegments({ current_step: 'planner', status: 'running' });
  t.equal(segs.length, 10, 'ten automatic steps');
  t.same(
    segs.map((s) => s.state),
    ['done', 'done', 'current', 'todo', 'todo', 'todo', 'todo', 'todo', 'todo', 'todo'],
  );
  t.equal(segs[2]?.status, 'running');
  t.equal(stepsPassed({ current_step: 'planner', status: 'done' }), 3, 'a done step counts as passed');
  t.equal(stepsPassed({ current_step: 'img_gen', status: 'done' }), 0, 'before vlm_analyze nothing is passed');
  t.equal(stepsPassed({ current_step: 'instagram_feed_gen', status: 'done' }), 10);
  t.equal(stepFilterKind('planner'), 'variant');
  t.equal(stepFilterKind('ad_copy_gen_kor'), 'job');
});

t.test('filters: values, blanks, and a clear error naming each bad parameter', async (t) => {
  const q = parseJobsQuery({ tenant: ' acme ', status: 'failed', step: 'planner', from: '', to: '', limit: '20' });
  t.match(q, { tenant: 'acme', status: 'failed', step: 'planner', from: null, to: null, cursor: null, limit: 20 });
  t.same(parseJobsQuery({}), {
    tenant: null,
    status: null,
    step: null,
    from: null,
    to: null,
    cursor: null,
    limit: 50,
  });
  t.equal(
    parseJobsQuery({ from: '2026-03-01T09:30', tz: '+09:00' }).from?.toISOString(),
    '2026-03-01T00:30:00.000Z',
    'a datetime field without zone is read at the browser offset',
  );
  t.equal(parseMoment('from', '2026-03-01', 0).toISOString(), '2026-03-01T00:00:00.000Z');
  t.equal(parseMoment('to', '2026-03-01T09:30:15.5Z', 540).toISOString(), '2026-03-01T09:30:15.500Z');
  const cursor = { createdAt: '2026-03-01T09:30:15.123456Z', jobId: '0b7e5d36-3c2b-4a55-9a1e-6a1f0f9c8d11' };
  t.same(parseJobsQuery({ cursor: formatCursor(cursor) }).cursor, cursor, 'a cursor round-trips to the microsecond');

  const bad: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ status: 'stuck' }, 'status', /expected one of running, done, failed, got 'stuck'/],
    [{ step: 'img_make' }, 'step', /expected one of user_img_input, img_gen/],
    [{ tenant: 't'.repeat(201) }, 'tenant', /at most 200 characters/],
    [{ from: 'yesterday' }, 'from', /expected a date or date and time/],
    [{ from: '2026-02-30' }, 'from', /not a valid date/],
    [{ to: '2026-03-01T25:00' }, 'to', /not a valid date/],
    [{ from: '2026-03-02', to: '2026-03-01' }, 'to', /must be after from/],
    [{ tz: 'KST' }, 'tz', /UTC offset/],
    [{ cursor: 'abc' }, 'cursor', /not a cursor/],
    [{ limit: '0' }, 'limit', /from 1 to 200/],
    [{ limit: '1e3' }, 'limit', /from 1 to 200/],
    [{ status: ['failed', 'done'] }, 'status', /more than once/],
  ];
  for (const [query, param, message] of bad) {
    t.throws(() => parseJobsQuery(query), FilterError, `${param}: ${JSON.stringify(query)}`);
    try {
      parseJobsQuery(query);
    } catch (err) {
      t.equal((err as FilterError).param, param);
      t.match((err as Error).message, message);
    }
  }
});

t.test('options: an auth hook or an explicit allowAnonymous, named in the error', async (t) => {
  t.throws(() => resolveOptions({}), /onRequest .* allowAnonymous: true/);
  t.throws(() => resolveOptions({ allowAnonymous: false }), /onRequest .* allowAnonymous: true/);
  t.throws(() => resolveOptions({ onRequest: async () => {}, allowAnonymous: true }), /contradict/);
  t.throws(() => resolveOptions({ allowAnonymous: true, ringSize: 0 }), /option ringSize/);
  t.throws(() => resolveOptions({ allowAnonymous: true, stageApiUrl: 'ftp://x' }), /option stageApiUrl/);
  t.equal(resolveOptions({ allowAnonymous: true, env: {} }).ringSize, 10_000, 'a ring of 10,000 events by default');
});

function collector(): StreamSink & {
  text: string;
  ended: boolean;
  pendingBytes: number;
  events(): Array<{ id: string; event: string; data: string }>;
} {
  const c = {
    text: '',
    ended: false,
    pendingBytes: 0,
    write(chunk: string) {
      c.text += chunk;
    },
    end() {
      c.ended = true;
    },
    events() {
      return c.text
        .split('\n\n')
        .filter((b) => b.includes('event: '))
        .map((b) => {
          const get = (k: string) =>
            b
              .split('\n')
              .find((l) => l.startsWith(`${k}: `))
              ?.slice(k.length + 2) ?? '';
          return { id: get('id'), event: get('event'), data: get('data') };
        });
    },
  };
  return c;
}

const data = (n: number, job = '0b7e5d36-3c2b-4a55-9a1e-6a1f0f9c8d11'): LiveEventData => ({
  job_id: job,
  tenant_id: 't',
  current_step: 'planner',
  status: 'running',
  attempt: n,
  updated_at: null,
});

t.test('ring buffer: keeps the newest `capacity` items, finds those after a seq', async (t) => {
  const r = new RingBuffer<{ seq: number }>(3);
  for (let i = 1; i <= 5; i++) r.push({ seq: i });
  t.equal(r.size, 3);
  t.same(
    r.after(0).map((x) => x.seq),
    [3, 4, 5],
  );
  t.same(
    r.after(3).map((x) => x.seq),
    [4, 5],
  );
  t.same(r.after(5), []);
});

t.test('replay: 10,000 events by default; an older, malformed or foreign id gets a reset', async (t) => {
  const hub = new LiveHub({ ringSize: 10_000, boot: 'abcd0123' });
  t.equal(hub.currentId(), 'abcd0123-0');
  for (let i = 1; i <= 10_001; i++) hub.publish('variant', data(i));
  t.equal(hub.buffered, 10_000, 'the ring holds the last 10,000 events');

  const fromOne = collector();
  hub.open(fromOne, {}, 'abcd0123-1');
  const replayed = fromOne.events();
  t.equal(replayed.length, 10_000, 'a browser that saw event 1 gets the 10,000 after it');
  t.equal(replayed[0]?.id, 'abcd0123-2');
  t.equal(replayed.at(-1)?.id, 'abcd0123-10001');

  for (const [id, why] of [
    ['abcd0123-0', /older than the buffer/],
    ['nonsense', /malformed/],
    ['ffff0000-5', /another server start/],
    ['abcd0123-99999', /not handed out yet/],
  ] as const) {
    const c = collector();
    hub.open(c, {}, id);
    const ev = c.events();
    t.equal(ev.length, 1, `${id}: one event`);
    t.equal(ev[0]?.event, 'reset', `${id}: reset`);
    t.match(ev[0]?.data ?? '', why);
    t.equal(ev[0]?.id, 'abcd0123-10001', 'the reset carries the current id');
  }
});

t.test('live streams: filters, gaps, slow readers, close', async (t) => {
  const hub = new LiveHub({ ringSize: 100, boot: 'b0', maxPendingBytes: 1000 });
  const A = '11111111-1111-4111-8111-111111111111';
  const B = '22222222-2222-4222-8222-222222222222';
  const all = collector();
  const onlyA = collector();
  hub.open(all, {}, undefined);
  hub.open(onlyA, { jobId: A }, undefined);
  hub.publish('job', data(1, A));
  hub.publish('job', data(2, B));
  t.equal(all.events().length, 2);
  t.same(
    onlyA.events().map((e) => JSON.parse(e.data).job_id),
    [A],
    'a job page gets its job only',
  );
  t.ok(all.text.startsWith('retry: 2000\n\n'), 'the reconnect delay first');

  const seen = hub.currentId();
  hub.gap('the LISTEN connection was lost and came back');
  t.equal(all.events().at(-1)?.event, 'reset', 'a gap resets every open stream');
  const late = collector();
  hub.open(late, {}, seen);
  t.equal(late.events()[0]?.event, 'reset', 'an id from before the gap cannot be replayed');
  const fresh = collector();
  hub.open(fresh, {}, hub.currentId());
  t.same(fresh.events(), [], 'the id current after the gap replays fine (nothing missed)');

  const slow = collector();
  hub.open(slow, {}, undefined);
  slow.pendingBytes = 5000;
  hub.publish('job', data(3, A));
  t.ok(slow.ended, 'a stream that does not read is closed (it reconnects and replays)');
  t.equal(hub.dropped, 1);

  hub.closeAll();
  t.ok(all.ended && onlyA.ended && fresh.ended, 'every stream ends when the server closes');
  t.equal(hub.streamCount, 0);
  t.equal(formatEvent({ id: 'x-1', type: 'job', data: { a: 1 } }), 'id: x-1\nevent: job\ndata: {"a":1}\n\n');
});

t.test('notifications: payloads validated, a bad one is an error not a crash', async (t) => {
  const ok = parseNotification(
    'job_variant_state_changed',
    JSON.stringify({
      job_variants_id: '22222222-2222-4222-8222-222222222222',
      job_id: '11111111-1111-4111-8111-111111111111',
      current_step: 'overlay',
      status: 'done',
      tenant_id: '테넌트',
      attempt: 2,
    }),
  );
  t.match(ok, { ok: true, type: 'variant', data: { current_step: 'overlay', tenant_id: '테넌트', attempt: 2 } });
  t.match(parseNotification('job_state_changed', '{bad json'), { ok: false, error: /bad JSON/ });
  t.match(parseNotification('job_state_changed', JSON.stringify({ job_id: 'x' })), { ok: false });
  t.match(parseNotification('other', '{}'), { ok: false, error: 'unknown channel' });
});

t.test("errorText: a stage's JSON answer shows its error field, the stored text on demand", async (t) => {
  const whole = 'stage answered 422: {"error":"image too small: 80\\u00d760","code":"input"}';
  t.same(errorText(whole), { brief: 'stage answered 422: image too small: 80×60', full: whole });
  const cut = 'stage answered 500 {"error":"internal error: the model \\"vlm\\" is lo';
  t.same(
    errorText(`${cut}aded","detail":"x`),
    { brief: 'stage answered 500 internal error: the model "vlm" is loaded', full: `${cut}aded","detail":"x` },
    'a body cut short: the field read from the text',
  );
  t.same(errorText('{"error":"bad tone"}'), { brief: 'bad tone', full: '{"error":"bad tone"}' }, 'a body alone');
  t.same(errorText('no answer within 30000 ms'), {
    brief: 'no answer within 30000 ms',
    full: 'no answer within 30000 ms',
  });
  t.same(
    errorText('stage answered 502: {"message":"x"}'),
    {
      brief: 'stage answered 502: {"message":"x"}',
      full: 'stage answered 502: {"message":"x"}',
    },
    'a JSON body without an error field as it is',
  );
  t.same(errorText('stage answered 502: <html>{oops'), {
    brief: 'stage answered 502: <html>{oops',
    full: 'stage answered 502: <html>{oops',
  });
  t.equal(errorText(null), null);
  t.equal(errorText(''), null);
});
