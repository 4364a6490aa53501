/**
 * One job's spans form one trace across two processes (docs/tracing.md): the
 * listener plugin in this process (an SDK with an in-memory exporter) and the
 * stage server as a child process running dist/server.js with an SDK
 * preloaded (`--import`) that writes its finished spans to a file. The VLM is
 * a local OpenAI-compatible double, so the model calls are real HTTP calls.
 * The span tree is printed in the test's output.
 */
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jobRootSpanId, jobTraceId } from '@feedlyai/pipeline-core';
import jobStateListener from '@feedlyai/listener-plugin';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import Fastify from 'fastify';
import t from 'tap';
import { startFakeOpenAi } from './fake-openai.js';
import { freePort, jobState, seedJob, tempStorage, testDb, waitFor } from './helpers.js';

const SERVER = fileURLToPath(new URL('../dist/server.js', import.meta.url));
const PRELOAD = fileURLToPath(new URL('./fixtures/otel-file-exporter.mjs', import.meta.url));

interface SpanRecord {
  process: 'listener' | 'stage';
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  scope: string;
  attributes: Record<string, unknown>;
  status: number;
  startMs: number;
  durationMs: number;
}

function spanRecord(s: ReadableSpan): SpanRecord {
  const ctx = s.spanContext();
  return {
    process: 'listener',
    name: s.name,
    kind: s.kind,
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    parentSpanId: s.parentSpanContext?.spanId ?? null,
    scope: s.instrumentationScope.name,
    attributes: { ...s.attributes },
    status: s.status.code,
    startMs: s.startTime[0] * 1e3 + s.startTime[1] / 1e6,
    durationMs: s.duration[0] * 1e3 + s.duration[1] / 1e6,
  };
}

async function stageSpans(file: string): Promise<SpanRecord[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as SpanRecord);
}

/** The tree under the job's root, one line per span, children by start time. */
function renderTree(spans: SpanRecord[], rootId: string): string[] {
  const children = new Map<string, SpanRecord[]>();
  for (const s of spans) {
    const k = s.parentSpanId ?? '';
    children.set(k, [...(children.get(k) ?? []), s]);
  }
  const lines: string[] = [`job ${spans[0]?.attributes['pipeline.job_id'] ?? ''} (trace root ${rootId}, not exported)`];
  const walk = (id: string, depth: number) => {
    for (const s of (children.get(id) ?? []).sort((a, b) => a.startMs - b.startMs)) {
      const a = s.attributes;
      const tags = [
        a['pipeline.job_variants_id'] ? `variant ${String(a['pipeline.job_variants_id']).slice(0, 8)}` : null,
        a['pipeline.attempt'] !== undefined ? `attempt ${a['pipeline.attempt']}` : null,
        a['http.response.status_code'] !== undefined ? `HTTP ${a['http.response.status_code']}` : null,
      ].filter(Boolean);
      lines.push(
        `${'  '.repeat(depth)}${s.name} [${s.process}] ${tags.join(', ')}${tags.length ? ', ' : ''}${Math.round(s.durationMs)} ms`,
      );
      walk(s.spanId, depth + 1);
    }
  };
  walk(rootId, 1);
  return lines;
}

const ANALYSIS = {
  usable: true,
  description: 'A cup of coffee on a saucer.',
  dominant_colors: ['#5a3d2b'],
  problems: [],
};
const JUDGEMENT = { score: 8, problems: [], rationale: 'The text is readable and covers nothing.' };

t.test("one job's spans from the listener and the stage server form a single trace", async (t) => {
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  provider.register();
  t.teardown(() => provider.shutdown());

  const vlm = await startFakeOpenAi(t, [
    (req, res) => {
      const schema = req.body?.response_format?.json_schema?.name;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          model: 'fake-vlm',
          choices: [{ message: { content: JSON.stringify(schema === 'creative_judgement' ? JUDGEMENT : ANALYSIS) } }],
        }),
      );
    },
  ]);
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const port = await freePort();
  const spansFile = path.join(tmpdir(), `stage-spans-${process.pid}-${Date.now()}.jsonl`);
  t.teardown(() => rm(spansFile, { force: true }));
  const child = spawn(process.execPath, ['--import', PRELOAD, SERVER], {
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: db.url,
      PORT: String(port),
      HOST: '127.0.0.1',
      STORAGE_DIR: storage,
      ENABLE_JOB_STATE_LISTENER: 'false',
      STAGE_CPU_WORKERS: '0',
      VLM_BASE_URL: vlm.url,
      VLM_MODEL: 'fake-vlm',
      LOG_LEVEL: 'warn',
      OTEL_TEST_SPANS_FILE: spansFile,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const stageUrl = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`stage server exited: ${output}`);
      return (await fetch(`${stageUrl}/healthz`).catch(() => null))?.ok ?? false;
    },
    { timeoutMs: 240_000, intervalMs: 200, message: 'stage server up' },
  );

  const host = Fastify({ logger: false });
  await host.register(jobStateListener, {
    connectionString: db.url,
    stageApiUrl: stageUrl,
    recoveryIntervalMs: 2_000,
    reconnectDelayMs: 200,
    closeGraceMs: 2_000,
    env: {},
  });
  await host.ready();
  t.teardown(() => host.close());
  await waitFor(() => host.jobStateListener.status().connected, { message: 'listener connected' });

  const job = await seedJob(db.pool, { imageUrl: 'inputs/coffee.png', variants: 1, taglineKor: '오늘의 핸드드립' });
  await db.pool.query(`UPDATE jobs_variants SET current_step = 'img_gen', status = 'done' WHERE job_id = $1`, [
    job.jobId,
  ]);
  await waitFor(
    async () => {
      const s = await jobState(db.pool, job.jobId);
      if (s.status === 'failed') throw new Error(`job failed: ${s.failure_reason ?? s.last_error}`);
      return s.current_step === 'instagram_feed_gen' && s.status === 'done';
    },
    { timeoutMs: 240_000, intervalMs: 200, message: 'job done' },
  );

  const traceId = jobTraceId(job.jobId);
  const rootId = jobRootSpanId(job.jobId);
  const isStageRoute = (s: SpanRecord) => s.kind === 1 && String(s.attributes['http.route'] ?? '').startsWith('/api/');
  // The stage ends a request's span once its answer is sent: wait for the tenth.
  const stage = await waitFor(
    async () => {
      const all = await stageSpans(spansFile);
      return all.filter((s) => isStageRoute(s) && s.attributes['pipeline.job_id'] === job.jobId).length >= 10
        ? all
        : null;
    },
    { timeoutMs: 30_000, message: "the stage server's spans written" },
  );
  const listener = exporter.getFinishedSpans().map(spanRecord);
  const ofJob = [...listener, ...stage].filter(
    (s) => s.traceId === traceId || s.attributes['pipeline.job_id'] === job.jobId,
  );

  t.same([...new Set(ofJob.map((s) => s.traceId))], [traceId], "every span of the job is in the job's trace");
  t.equal(traceId, job.jobId.replace(/-/g, ''), 'the trace id is the job id without its dashes');
  const ids = new Set(ofJob.map((s) => s.spanId));
  const orphans = ofJob.filter((s) => s.parentSpanId !== rootId && !ids.has(s.parentSpanId ?? ''));
  t.same(
    orphans.map((s) => s.name),
    [],
    "every span's parent is another span of the trace or the job's root",
  );

  const dispatches = listener.filter((s) => s.name.startsWith('dispatch ') && s.traceId === traceId);
  const steps = [
    'vlm_analyze',
    'yolo_detect',
    'planner',
    'overlay',
    'vlm_judge',
    'ocr_eval',
    'readability_eval',
    'iou_eval',
    'ad_copy_gen_kor',
    'instagram_feed_gen',
  ];
  t.same(
    [...new Set(dispatches.map((s) => s.attributes['pipeline.step']))].sort(),
    [...steps].sort(),
    'a dispatch span for each of the ten steps',
  );
  for (const d of dispatches) {
    t.equal(d.parentSpanId, rootId, `${d.name}: its parent is the job's root`);
    t.equal(d.attributes['pipeline.job_id'], job.jobId);
    t.ok(Number(d.attributes['pipeline.attempt']) >= 1, `${d.name}: attempt`);
    const jobLevel =
      d.attributes['pipeline.step'] === 'ad_copy_gen_kor' || d.attributes['pipeline.step'] === 'instagram_feed_gen';
    t.equal(d.attributes['pipeline.job_variants_id'], jobLevel ? undefined : job.variantIds[0], `${d.name}: variant`);
  }

  const clientSpans = new Map(listener.filter((s) => s.kind === 2).map((s) => [s.spanId, s]));
  const served = stage.filter((s) => isStageRoute(s) && s.traceId === traceId);
  t.ok(served.length >= 10, 'a server span per stage request');
  for (const s of served) {
    const parent = clientSpans.get(s.parentSpanId ?? '');
    t.ok(parent, `${s.name}: its parent is the listener's request span (traceparent)`);
    t.equal(s.attributes['pipeline.step'], parent?.attributes['pipeline.step'], `${s.name}: the same step`);
    t.equal(s.attributes['pipeline.attempt'], parent?.attributes['pipeline.attempt'], `${s.name}: the same attempt`);
  }
  const servedIds = new Set(served.map((s) => s.spanId));
  const chats = stage.filter((s) => s.name === 'chat fake-vlm' && s.traceId === traceId);
  t.same(
    chats.map((s) => s.attributes['pipeline.step']).sort(),
    ['vlm_analyze', 'vlm_judge'],
    'the VLM calls are spans, with the step',
  );
  for (const c of chats) t.ok(servedIds.has(c.parentSpanId ?? ''), `${c.name}: a child of its request span`);
  const ocr = stage.filter((s) => s.name === 'ocr evaluate' && s.traceId === traceId);
  t.equal(ocr.length, 1, 'the OCR call is a span');
  t.equal(ocr[0]?.attributes['pipeline.job_variants_id'], job.variantIds[0]);
  t.ok(
    stage.some((s) => s.name === 'cpu render' && s.traceId === traceId && s.attributes['pipeline.step'] === 'overlay'),
    'the render is a span of the overlay request',
  );

  t.comment(['span tree of one job (listener and stage server):', ...renderTree(ofJob, rootId)].join('\n'));

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'the stage server stops cleanly');
});
