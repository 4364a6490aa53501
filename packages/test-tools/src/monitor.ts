/**
 * The pipeline monitor of seed 003: a snapshot of one job (its view from
 * @feedlyai/pipeline-views: job and variant states, per-step timings from
 * pipeline_step_runs, the planner image, the overlay images, the ad copy, the
 * Instagram caption and hashtags) and three renderings of it: a frame redrawn
 * in place on a terminal, plain lines (one per change) otherwise, and JSON.
 */
import { AUTOMATIC_STEPS } from '@feedlyai/pipeline-core';
import { type JobView, type Queryable, readJobView, type StepRun, type VariantView } from '@feedlyai/pipeline-views';
import { LISTENER_APPLICATION_NAME, TRIGGERS } from './status.js';

type Db = Queryable;

/** The latest run of a step (the view model's StepRun). */
export type StepTiming = StepRun;
export type { VariantView };

export interface MonitorOutputs {
  plannerImages: Array<{ variantId: string; order: number; path: string }>;
  overlayImages: Array<{ variantId: string; order: number; path: string }>;
  adCopy: { headlineEng: string; taglineKor: string | null; adCopyKor: string | null } | null;
  caption: string | null;
  hashtags: string[];
  feedImage: string | null;
  chosenVariantId: string | null;
}

export interface MonitorSnapshot {
  at: string;
  job: {
    id: string;
    tenantId: string;
    step: string;
    status: string;
    attempt: number;
    lastError: string | null;
    failureReason: string | null;
    createdAt: string;
    updatedAt: string;
    completedAt: string | null;
    /** Steps done out of 10, averaged over the variants. */
    progress: number;
    elapsedMs: number;
  };
  /** The view model's variants (@feedlyai/pipeline-views): state, results, scores, timings. */
  variants: VariantView[];
  jobTimings: StepTiming[];
  outputs: MonitorOutputs;
  /** 'done', 'failed' (failed for good: given up or cancelled), or null while running. */
  outcome: 'done' | 'failed' | null;
  hints: string[];
}

export const TOTAL_STEPS = AUTOMATIC_STEPS.length;

export interface SnapshotOptions {
  /** Where relative storage keys live (STORAGE_DIR, default .data/storage). */
  storageDir?: string;
}

export class JobNotFoundError extends Error {
  override name = 'JobNotFoundError';
}

/** The monitor's snapshot of a job's view. */
export function snapshotOf(view: JobView): MonitorSnapshot {
  const byOrder = (a: { order: number }, b: { order: number }) => a.order - b.order;
  const images = (pick: (v: VariantView) => string | null | undefined) =>
    view.variants
      .flatMap((v) => {
        const path = pick(v);
        return path ? [{ variantId: v.id, order: v.order, path }] : [];
      })
      .sort(byOrder);
  return {
    at: view.readAt,
    job: {
      id: view.id,
      tenantId: view.tenantId,
      step: view.step,
      status: view.status,
      attempt: view.attempt,
      lastError: view.lastError,
      failureReason: view.failureReason,
      createdAt: view.createdAt,
      updatedAt: view.updatedAt,
      completedAt: view.completedAt,
      progress: view.progress,
      elapsedMs: view.elapsedMs,
    },
    variants: view.variants,
    jobTimings: view.timings,
    outputs: {
      plannerImages: images((v) => v.planner?.previewPath),
      overlayImages: images((v) => v.overlay?.imagePath),
      adCopy: view.adCopy
        ? { headlineEng: view.adCopy.headlineEng, taglineKor: view.adCopy.taglineKor, adCopyKor: view.adCopy.adCopyKor }
        : null,
      caption: view.feed?.caption ?? null,
      hashtags: view.feed?.hashtags ?? [],
      feedImage: view.feed?.feedImagePath ?? null,
      chosenVariantId: view.feed?.chosenVariantId ?? null,
    },
    outcome: view.outcome,
    hints: [],
  };
}

/** One read of everything the monitor shows. */
export async function monitorSnapshot(db: Db, jobId: string, o: SnapshotOptions = {}): Promise<MonitorSnapshot> {
  const view = await readJobView(db, jobId, o.storageDir === undefined ? {} : { storageDir: o.storageDir });
  if (!view) throw new JobNotFoundError(`job ${jobId} not found`);
  return snapshotOf(view);
}

/** Why nothing moves: listener connection, triggers, failed variants, waiting inputs. */
export async function stallHints(db: Db, s: MonitorSnapshot): Promise<string[]> {
  const hints: string[] = [];
  if (s.job.failureReason)
    hints.push(`the job failed for good: ${s.job.failureReason} (feedly-pipeline retry <job_id>)`);
  const l = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
    [LISTENER_APPLICATION_NAME],
  );
  if ((l.rows[0]?.n ?? 0) === 0) {
    hints.push(
      `no '${LISTENER_APPLICATION_NAME}' connection in pg_stat_activity: is the listener running? (feedly-pipeline status)`,
    );
  }
  for (const t of TRIGGERS) {
    const r = await db.query<{ tgenabled: string }>(
      'SELECT tgenabled FROM pg_trigger WHERE tgname = $1 AND tgrelid = to_regclass($2)',
      [t.trigger, t.table],
    );
    const row = r.rows[0];
    if (!row) hints.push(`trigger ${t.trigger} on ${t.table} is missing: run feedly-pipeline migrate --reapply`);
    else if (row.tgenabled === 'D')
      hints.push(`trigger ${t.trigger} is disabled: ALTER TABLE ${t.table} ENABLE TRIGGER ${t.trigger}`);
  }
  for (const v of s.variants) {
    if (v.status === 'failed') {
      hints.push(
        `variant #${v.order} failed at ${v.step} (attempt ${v.attempt}${v.givenUp ? ', given up' : ''}): ${v.lastError ?? 'no error stored'}`,
      );
    }
  }
  if (s.job.status === 'failed' && !s.job.failureReason) {
    hints.push(`job step ${s.job.step} failed (attempt ${s.job.attempt}): ${s.job.lastError ?? 'no error stored'}`);
  }
  const waiting = s.variants.filter((v) => v.step === 'img_gen' && v.status !== 'done').length;
  if (waiting > 0) {
    hints.push(
      `${waiting} variant(s) wait at img_gen/${s.variants.find((v) => v.step === 'img_gen')?.status}: the YE part has not marked them done (feedly-pipeline verify-trigger <job_variants_id>)`,
    );
  }
  const user = s.variants.filter((v) => v.step === 'user_img_input').length;
  if (user > 0) hints.push(`${user} variant(s) at user_img_input: they wait for the YE part's img_gen`);
  return hints;
}

// ---------------------------------------------------------------- rendering

export function progressBar(done: number, total: number, width = 20): string {
  const ratio = total > 0 ? Math.max(0, Math.min(1, done / total)) : 0;
  const full = Math.round(ratio * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

const short = (id: string) => id.slice(0, 8);

function timingsLine(ts: StepTiming[]): string {
  if (ts.length === 0) return 'no steps dispatched yet';
  return ts.map((t) => `${t.step} ${formatDuration(t.elapsedMs)}${t.open ? '…' : ''}`).join(' · ');
}

/** The frame drawn in place on a terminal. */
export function renderFrame(s: MonitorSnapshot, footer = ''): string {
  const lines: string[] = [];
  const j = s.job;
  const state = s.outcome === 'done' ? 'DONE' : s.outcome === 'failed' ? `FAILED (${j.failureReason})` : '';
  lines.push(`Job ${j.id}  tenant ${j.tenantId}  ${state}`);
  lines.push(
    `  ${progressBar(j.progress, TOTAL_STEPS, 30)} ${j.progress.toFixed(1)}/${TOTAL_STEPS}  ${j.step}/${j.status}` +
      `  attempt ${j.attempt}  elapsed ${formatDuration(j.elapsedMs)}`,
  );
  for (const v of s.variants) {
    lines.push(
      `  #${v.order} ${short(v.id)} ${progressBar(v.progress, TOTAL_STEPS)} ${String(v.progress).padStart(2)}/${TOTAL_STEPS}` +
        `  ${v.step}/${v.status}${v.attempt > 1 ? ` (attempt ${v.attempt})` : ''}${v.givenUp ? ' given up' : ''}`,
    );
    lines.push(`       ${timingsLine(v.timings)}`);
  }
  if (s.jobTimings.length) lines.push(`  job steps: ${timingsLine(s.jobTimings)}`);
  lines.push(...outputLines(s));
  if (s.hints.length) {
    lines.push('Hints (nothing moved for 2+ checks):');
    for (const h of s.hints) lines.push(`  - ${h}`);
  }
  if (footer) lines.push(footer);
  return lines.join('\n');
}

function outputLines(s: MonitorSnapshot): string[] {
  const o = s.outputs;
  const lines: string[] = [];
  for (const p of o.plannerImages) lines.push(`Planner image #${p.order}: ${p.path}`);
  for (const p of o.overlayImages) lines.push(`Overlay image #${p.order}: ${p.path}`);
  if (o.adCopy) {
    lines.push(`Ad copy (eng): ${o.adCopy.headlineEng}${o.adCopy.taglineKor ? ` / ${o.adCopy.taglineKor}` : ''}`);
    if (o.adCopy.adCopyKor) lines.push(`Ad copy (kor): ${o.adCopy.adCopyKor}`);
  }
  if (o.caption) lines.push(`Caption: ${o.caption.replace(/\s*\n\s*/g, ' ')}`);
  if (o.hashtags.length) lines.push(`Hashtags: ${o.hashtags.join(' ')}`);
  if (o.feedImage) lines.push(`Feed image: ${o.feedImage}`);
  return lines;
}

/**
 * Plain-line rendering: compares two snapshots and returns one line per
 * change (job state, each variant's state, each newly available output, hints).
 */
export function diffLines(prev: MonitorSnapshot | null, s: MonitorSnapshot): string[] {
  const out: string[] = [];
  const t = `[+${formatDuration(s.job.elapsedMs)}]`;
  const pj = prev?.job;
  if (!pj || pj.step !== s.job.step || pj.status !== s.job.status || pj.attempt !== s.job.attempt) {
    out.push(
      `${t} job ${s.job.id}: ${s.job.step}/${s.job.status}${s.job.attempt > 1 ? ` (attempt ${s.job.attempt})` : ''}` +
        `${s.job.failureReason ? ` failed: ${s.job.failureReason}` : ''} ${progressBar(s.job.progress, TOTAL_STEPS, 10)} ${s.job.progress.toFixed(1)}/${TOTAL_STEPS}`,
    );
  }
  for (const v of s.variants) {
    const pv = prev?.variants.find((x) => x.id === v.id);
    if (!pv || pv.step !== v.step || pv.status !== v.status || pv.attempt !== v.attempt) {
      const took = v.timings.find((x) => x.step === v.step && !x.open);
      out.push(
        `${t} variant #${v.order} ${short(v.id)}: ${v.step}/${v.status}${v.attempt > 1 ? ` (attempt ${v.attempt})` : ''}` +
          `${took && v.status === 'done' ? ` in ${formatDuration(took.elapsedMs)}` : ''}` +
          `${v.status === 'failed' && v.lastError ? `: ${v.lastError}` : ''} ${v.progress}/${TOTAL_STEPS}`,
      );
    }
  }
  const before = new Set(prev ? outputLines(prev) : []);
  for (const l of outputLines(s)) if (!before.has(l)) out.push(`${t} ${l}`);
  const prevHints = new Set(prev?.hints ?? []);
  for (const h of s.hints) if (!prevHints.has(h)) out.push(`${t} hint: ${h}`);
  return out;
}

/** A fingerprint of everything that counts as movement (state changes and new outputs). */
export function movementKey(s: MonitorSnapshot): string {
  return JSON.stringify([
    s.job.step,
    s.job.status,
    s.job.attempt,
    s.variants.map((v) => [v.step, v.status, v.attempt]),
    s.outputs.overlayImages.length,
    s.outputs.plannerImages.length,
    s.outputs.caption,
  ]);
}

export type MonitorMode = 'tty' | 'plain' | 'json';

export interface MonitorRunOptions extends SnapshotOptions {
  maxIterations?: number;
  /** Seconds between checks (fractions allowed). */
  checkIntervalS?: number;
  mode: MonitorMode;
  write: (text: string) => void;
  /** For 'tty': a redraw-in-place function (log-update); defaults to write. */
  redraw?: { draw(frame: string): void; done(): void };
  signal?: AbortSignal;
}

export interface MonitorResult {
  outcome: 'done' | 'failed' | 'exhausted' | 'interrupted';
  iterations: number;
  last: MonitorSnapshot;
}

/**
 * The monitor loop: one snapshot per check; hints once nothing moved for 2+
 * checks; stops when the job is done or failed for good, after
 * `maxIterations` checks, or when the signal aborts.
 */
export async function runMonitor(db: Db, jobId: string, o: MonitorRunOptions): Promise<MonitorResult> {
  const max = o.maxIterations ?? 120;
  const intervalMs = (o.checkIntervalS ?? 10) * 1000;
  let prev: MonitorSnapshot | null = null;
  let lastKey = '';
  let still = 0;
  let i = 0;
  let s: MonitorSnapshot | null = null;
  let outcome: MonitorResult['outcome'] = 'exhausted';
  for (i = 1; i <= max; i++) {
    s = await monitorSnapshot(db, jobId, o);
    const key = movementKey(s);
    still = key === lastKey ? still + 1 : 0;
    lastKey = key;
    if (still >= 2 || s.outcome === 'failed') s.hints = await stallHints(db, s);
    const final = s.outcome !== null || i === max || o.signal?.aborted;
    if (o.mode === 'json') o.write(JSON.stringify({ iteration: i, maxIterations: max, ...s }));
    else if (o.mode === 'plain') for (const line of diffLines(prev, s)) o.write(line);
    else {
      const footer = final
        ? ''
        : `check ${i}/${max}, every ${o.checkIntervalS ?? 10} s${still >= 1 ? `, no change for ${still} check(s)` : ''} (Ctrl-C to stop)`;
      const frame = renderFrame(s, footer);
      if (o.redraw) o.redraw.draw(frame);
      else o.write(frame);
    }
    prev = s;
    if (s.outcome) {
      outcome = s.outcome;
      break;
    }
    if (o.signal?.aborted) {
      outcome = 'interrupted';
      break;
    }
    if (i === max) break;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, intervalMs);
      function done() {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', done);
        resolve();
      }
      o.signal?.addEventListener('abort', done, { once: true });
    });
  }
  o.redraw?.done();
  return { outcome, iterations: Math.min(i, max), last: s as MonitorSnapshot };
}
