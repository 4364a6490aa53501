/**
 * The monitor's renderings (terminal frame, plain lines) and the demo's
 * timings table, on a hand-built snapshot: pure functions, no database.
 */
import t from 'tap';
import { timingsTable } from '../src/demo/run.js';
import {
  diffLines,
  type MonitorSnapshot,
  progressBar,
  renderFrame,
  type StepTiming,
  type VariantView,
} from '../src/monitor.js';
import { runCliInProcess } from './helpers.js';

const timing = (step: string, ms: number, open = false): StepTiming => ({
  step,
  attempt: 1,
  trigger: 'notify',
  state: open ? 'dispatched' : 'done',
  instanceId: 'test',
  claimedAt: '2026-01-01T00:00:00.000Z',
  finishedAt: open ? null : '2026-01-01T00:00:01.000Z',
  elapsedMs: ms,
  durationMs: open ? null : ms,
  open,
  httpStatus: open ? null : 200,
  error: null,
});

/** A variant with no stage results yet: the renderings show states and timings only. */
const variant = (
  v: Pick<VariantView, 'id' | 'order' | 'step' | 'status' | 'attempt' | 'lastError' | 'progress' | 'timings'>,
): VariantView => ({
  ...v,
  jobId: '11111111-1111-4111-8111-111111111111',
  givenUp: false,
  updatedAt: '2026-01-01T00:00:04.000Z',
  chosen: false,
  vlmAnalysis: null,
  detections: null,
  planner: null,
  overlay: null,
  evaluations: { ocr: null, readability: null, iou: null, judge: null },
  scores: { judge: null, ocrMeanCer: null, readabilityPass: null, minContrast: null, maxIou: null },
  runs: v.timings,
  stageTimings: [],
});

function snapshot(over: Partial<MonitorSnapshot> = {}): MonitorSnapshot {
  return {
    at: '2026-01-01T00:00:05.000Z',
    job: {
      id: '11111111-1111-4111-8111-111111111111',
      tenantId: 'tenant_x',
      step: 'img_gen',
      status: 'queued',
      attempt: 1,
      lastError: null,
      failureReason: null,
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
      completedAt: null,
      progress: 2.5,
      elapsedMs: 5000,
    },
    variants: [
      variant({
        id: '22222222-2222-4222-8222-222222222222',
        order: 1,
        step: 'planner',
        status: 'running',
        attempt: 1,
        lastError: null,
        progress: 2,
        timings: [timing('vlm_analyze', 1200), timing('yolo_detect', 300), timing('planner', 150, true)],
      }),
      variant({
        id: '33333333-3333-4333-8333-333333333333',
        order: 2,
        step: 'overlay',
        status: 'failed',
        attempt: 2,
        lastError: 'font missing',
        progress: 3,
        timings: [timing('vlm_analyze', 900)],
      }),
    ],
    jobTimings: [],
    outputs: {
      plannerImages: [{ variantId: '22222222-2222-4222-8222-222222222222', order: 1, path: '/s/planner/a.png' }],
      overlayImages: [],
      adCopy: { headlineEng: 'Slow mornings', taglineKor: '오늘의 한 잔', adCopyKor: null },
      caption: null,
      hashtags: [],
      feedImage: null,
      chosenVariantId: null,
    },
    outcome: null,
    hints: ['variant #2 failed at overlay (attempt 2): font missing'],
    ...over,
  };
}

t.test('progress bar', async (t) => {
  t.equal(progressBar(0, 10, 10), '[..........]');
  t.equal(progressBar(5, 10, 10), '[#####.....]');
  t.equal(progressBar(10, 10, 10), '[##########]');
  t.equal(progressBar(12, 10, 4), '[####]', 'clamped');
});

t.test('terminal frame: job and variant bars, step times, outputs, hints, footer', async (t) => {
  const frame = renderFrame(snapshot(), 'check 3/120');
  t.match(frame, /^Job 11111111-1111-4111-8111-111111111111 {2}tenant tenant_x/);
  t.match(frame, /\[########\.{22}\] 2\.5\/10 {2}img_gen\/queued {2}attempt 1 {2}elapsed 5\.0 s/);
  t.match(frame, /#1 22222222 \[####\.{16}\] {2}2\/10 {2}planner\/running/);
  t.match(frame, /vlm_analyze 1\.2 s · yolo_detect 300 ms · planner 150 ms…/);
  t.match(frame, /#2 33333333 .* overlay\/failed \(attempt 2\)/);
  t.match(frame, /Planner image #1: \/s\/planner\/a\.png/);
  t.match(frame, /Ad copy \(eng\): Slow mornings \/ 오늘의 한 잔/);
  t.match(frame, /Hints \(nothing moved for 2\+ checks\):\n {2}- variant #2 failed at overlay/);
  t.match(frame, /check 3\/120$/);
});

t.test('plain lines: everything on the first check, then only what changed', async (t) => {
  const first = diffLines(null, snapshot());
  t.ok(first.some((l) => /job 11111111-.*: img_gen\/queued/.test(l)));
  t.ok(first.some((l) => /variant #1 22222222: planner\/running/.test(l)));
  t.ok(first.some((l) => /variant #2 33333333: overlay\/failed \(attempt 2\): font missing/.test(l)));
  t.ok(first.some((l) => /Planner image #1/.test(l)));
  t.ok(first.some((l) => /hint: variant #2 failed/.test(l)));
  const prev = snapshot();
  const next = snapshot();
  t.same(diffLines(prev, next), [], 'nothing changed, nothing printed');
  const moved = snapshot();
  moved.variants[0] = {
    ...(moved.variants[0] as MonitorSnapshot['variants'][number]),
    step: 'overlay',
    status: 'queued',
  };
  moved.outputs = { ...moved.outputs, caption: 'A caption' };
  const lines = diffLines(prev, moved);
  t.equal(lines.length, 2, 'one line per change');
  t.match(lines[0], /variant #1 22222222: overlay\/queued/);
  t.match(lines[1], /Caption: A caption/);
});

t.test('demo timings table: one row per step, a wait and a work column per variant plus the job', async (t) => {
  const table = timingsTable(
    [
      { variantOrder: 1, step: 'vlm_analyze', waitMs: 0, workMs: 1500 },
      { variantOrder: 2, step: 'vlm_analyze', waitMs: 320, workMs: 700 },
      { variantOrder: null, step: 'instagram_feed_gen', waitMs: 3, workMs: 450 },
    ],
    [1, 2],
  );
  const rows = table.split('\n');
  t.equal(rows.length, 12, 'two header lines and ten steps');
  t.match(rows[0], /step\s+variant #1\s+variant #2\s+job$/);
  t.match(rows[1], /^\s+wait\s+work\s+wait\s+work\s+wait\s+work$/);
  t.match(rows[2], /vlm_analyze\s+0 ms\s+1\.5 s\s+320 ms\s+700 ms$/);
  t.match(rows[11], /instagram_feed_gen\s+3 ms\s+450 ms$/);
  const titles = ['variant #1', 'variant #2', 'job'].map((x) => (rows[0] as string).indexOf(x));
  const waits = [...(rows[1] as string).matchAll(/wait/g)].map((m) => m.index);
  t.same(titles, waits, 'each title above its wait and work columns');
});

t.test('runCli in-process: exit codes returned, output captured, no process.exit', async (t) => {
  const usage = await runCliInProcess(['seed', '--variants-count', 'x'], { env: {} });
  t.equal(usage.code, 2);
  t.match(usage.stderr, /expected a positive integer, got 'x'/);
  t.match(usage.stderr, /Usage: feedly-pipeline seed \[options\]/);
  const none = await runCliInProcess(['seed-ye'], { env: {} });
  t.equal(none.code, 1, 'no database configured');
  t.match(none.stderr, /no database configured/);
  const help = await runCliInProcess(['monitor', '--help'], { env: {} });
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: feedly-pipeline monitor \[options\] <job_id> \[max_iterations\] \[check_interval\]/);
});
