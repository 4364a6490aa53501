/**
 * The pipeline monitor of seed 003: a snapshot of one job (job and variant
 * states, per-step timings from pipeline_step_runs, the planner image, the
 * overlay images, the ad copy, the Instagram caption and hashtags) and three
 * renderings of it: a frame redrawn in place on a terminal, plain lines (one
 * per change) otherwise, and JSON.
 */
import { resolve as resolvePath } from 'node:path';
import {
  AUTOMATIC_STEPS,
  FINAL_STEP,
  JOB_STEPS,
  progressIndex,
  type Step,
  VARIANT_STEPS,
  isStep,
} from '@feedlyai/pipeline-core';
import type pg from 'pg';
import { LISTENER_APPLICATION_NAME, TRIGGERS } from './status.js';

type Db = Pick<pg.Pool, 'query'>;

export interface StepTiming {
  step: string;
  attempt: number;
  trigger: string;
  state: string;
  claimedAt: string;
  finishedAt: string | null;
  /** finished - claimed, or now - claimed while the step is still open. */
  elapsedMs: number;
  open: boolean;
}

export interface VariantView {
  id: string;
  order: number;
  step: string;
  status: string;
  attempt: number;
  lastError: string | null;
  givenUp: boolean;
  /** Steps done out of the 10 automatic steps (the job-level ones counted once the job reaches them). */
  progress: number;
  timings: StepTiming[];
}

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
  variants: VariantView[];
  jobTimings: StepTiming[];
  outputs: MonitorOutputs;
  /** 'done', 'failed' (failed for good: given up or cancelled), or null while running. */
  outcome: 'done' | 'failed' | null;
  hints: string[];
}

export const TOTAL_STEPS = AUTOMATIC_STEPS.length;

function stepsDoneAt(step: string, status: string): number {
  if (!isStep(step)) return 0;
  const idx = progressIndex(step as Step);
  if (idx === 0) return 0;
  return status === 'done' ? idx : idx - 1;
}

function iso(d: Date | string | null): string | null {
  if (d === null) return null;
  return d instanceof Date ? d.toISOString() : new Date(d).toISOString();
}

export interface SnapshotOptions {
  /** Where relative storage keys live (STORAGE_DIR, default .data/storage). */
  storageDir?: string;
}

export class JobNotFoundError extends Error {
  override name = 'JobNotFoundError';
}

/** One consistent-enough read of everything the monitor shows. */
export async function monitorSnapshot(db: Db, jobId: string, o: SnapshotOptions = {}): Promise<MonitorSnapshot> {
  const storageDir = resolvePath(o.storageDir ?? '.data/storage');
  const toPath = (key: string) => (/^https?:\/\//.test(key) ? key : resolvePath(storageDir, key));
  const jr = await db.query(
    `SELECT job_id, tenant_id, current_step, status, attempt, last_error, failure_reason,
            created_at, updated_at, completed_at, now() AS now
       FROM jobs WHERE job_id = $1`,
    [jobId],
  );
  const j = jr.rows[0];
  if (!j) throw new JobNotFoundError(`job ${jobId} not found`);
  const now = new Date(j.now).getTime();
  const vr = await db.query(
    `SELECT job_variants_id, creation_order, current_step, status, attempt, last_error, given_up_at
       FROM jobs_variants WHERE job_id = $1 ORDER BY creation_order, job_variants_id`,
    [jobId],
  );
  const runs = await db.query(
    `SELECT DISTINCT ON (coalesce(job_variants_id::text, ''), step)
            job_variants_id, step, attempt, trigger, state, claimed_at, finished_at
       FROM pipeline_step_runs WHERE job_id = $1
      ORDER BY coalesce(job_variants_id::text, ''), step, claimed_at DESC, run_id DESC`,
    [jobId],
  );
  const timing = (r: Record<string, unknown>): StepTiming => {
    const claimed = new Date(r.claimed_at as Date).getTime();
    const finished = r.finished_at ? new Date(r.finished_at as Date).getTime() : null;
    return {
      step: String(r.step),
      attempt: Number(r.attempt),
      trigger: String(r.trigger),
      state: String(r.state),
      claimedAt: iso(r.claimed_at as Date) as string,
      finishedAt: iso((r.finished_at as Date | null) ?? null),
      elapsedMs: Math.max(0, (finished ?? now) - claimed),
      open: finished === null,
    };
  };
  const order = (s: string) => (isStep(s) ? progressIndex(s as Step) : 99);
  const byVariant = new Map<string, StepTiming[]>();
  const jobTimings: StepTiming[] = [];
  for (const r of runs.rows) {
    const t = timing(r);
    if (r.job_variants_id) {
      const list = byVariant.get(r.job_variants_id) ?? [];
      list.push(t);
      byVariant.set(r.job_variants_id, list);
    } else jobTimings.push(t);
  }
  for (const list of byVariant.values()) list.sort((a, b) => order(a.step) - order(b.step));
  jobTimings.sort((a, b) => order(a.step) - order(b.step));

  const jobPhase = (JOB_STEPS as readonly string[]).includes(j.current_step);
  const jobDone = jobPhase ? stepsDoneAt(j.current_step, j.status) - VARIANT_STEPS.length : 0;
  const variants: VariantView[] = vr.rows.map((v) => {
    const variantDone = Math.min(VARIANT_STEPS.length, stepsDoneAt(v.current_step, v.status));
    return {
      id: v.job_variants_id,
      order: v.creation_order,
      step: v.current_step,
      status: v.status,
      attempt: v.attempt,
      lastError: v.last_error,
      givenUp: v.given_up_at !== null,
      progress: variantDone + (variantDone === VARIANT_STEPS.length ? Math.max(0, jobDone) : 0),
      timings: byVariant.get(v.job_variants_id) ?? [],
    };
  });
  const progress = jobPhase
    ? VARIANT_STEPS.length + Math.max(0, jobDone)
    : variants.length
      ? variants.reduce((n, v) => n + v.progress, 0) / variants.length
      : 0;

  const outputs = await loadOutputs(db, jobId, variants, toPath);
  const outcome: MonitorSnapshot['outcome'] =
    j.current_step === FINAL_STEP && j.status === 'done' ? 'done' : j.failure_reason ? 'failed' : null;
  const endMs = j.completed_at ? new Date(j.completed_at).getTime() : now;
  return {
    at: new Date(now).toISOString(),
    job: {
      id: j.job_id,
      tenantId: j.tenant_id,
      step: j.current_step,
      status: j.status,
      attempt: j.attempt,
      lastError: j.last_error,
      failureReason: j.failure_reason,
      createdAt: iso(j.created_at) as string,
      updatedAt: iso(j.updated_at) as string,
      completedAt: iso(j.completed_at),
      progress: Math.round(progress * 10) / 10,
      elapsedMs: Math.max(0, endMs - new Date(j.created_at).getTime()),
    },
    variants,
    jobTimings,
    outputs,
    outcome,
    hints: [],
  };
}

async function loadOutputs(
  db: Db,
  jobId: string,
  variants: VariantView[],
  toPath: (key: string) => string,
): Promise<MonitorOutputs> {
  const orderOf = new Map(variants.map((v) => [v.id, v.order]));
  const planner = await db.query(
    `SELECT DISTINCT ON (job_variants_id) job_variants_id, preview_image_key
       FROM stage_planner_proposals
      WHERE job_id = $1 AND chosen AND preview_image_key IS NOT NULL
      ORDER BY job_variants_id, created_at DESC, id DESC`,
    [jobId],
  );
  const overlays = await db.query(
    `SELECT DISTINCT ON (job_variants_id) job_variants_id, image_key
       FROM stage_overlays WHERE job_id = $1
      ORDER BY job_variants_id, created_at DESC, id DESC`,
    [jobId],
  );
  const copy = await db.query('SELECT headline_eng, tagline_kor, ad_copy_kor FROM job_ad_copies WHERE job_id = $1', [
    jobId,
  ]);
  const feed = await db.query(
    `SELECT caption, hashtags, feed_image_key, chosen_variant_id FROM stage_instagram_feeds
      WHERE job_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
    [jobId],
  );
  const byOrder = (a: { order: number }, b: { order: number }) => a.order - b.order;
  const c = copy.rows[0];
  const f = feed.rows[0];
  return {
    plannerImages: planner.rows
      .map((r) => ({
        variantId: r.job_variants_id as string,
        order: orderOf.get(r.job_variants_id) ?? 0,
        path: toPath(r.preview_image_key),
      }))
      .sort(byOrder),
    overlayImages: overlays.rows
      .map((r) => ({
        variantId: r.job_variants_id as string,
        order: orderOf.get(r.job_variants_id) ?? 0,
        path: toPath(r.image_key),
      }))
      .sort(byOrder),
    adCopy: c ? { headlineEng: c.headline_eng, taglineKor: c.tagline_kor, adCopyKor: c.ad_copy_kor } : null,
    caption: f?.caption ?? null,
    hashtags: Array.isArray(f?.hashtags) ? f.hashtags.map(String) : [],
    feedImage: f ? toPath(f.feed_image_key) : null,
    chosenVariantId: f?.chosen_variant_id ?? null,
  };
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

/**
 * The stage server's own timing of each step of a job (table
 * stage_run_timings, docs/stage-api.md, "Admission"): for each variant (by
 * creation order; null for the job-level steps) and step, the latest run's
 * admission wait and work, in ms.
 */
export interface StageRunTiming {
  variantOrder: number | null;
  step: string;
  attempt: number;
  outcome: string;
  waitMs: number;
  workMs: number;
}

export async function stageRunTimings(db: Db, jobId: string): Promise<StageRunTiming[]> {
  const r = await db.query(
    `SELECT DISTINCT ON (coalesce(t.job_variants_id::text, ''), t.step)
            v.creation_order, t.step, t.attempt, t.outcome, t.wait_ms, t.work_ms
       FROM stage_run_timings t LEFT JOIN jobs_variants v ON v.job_variants_id = t.job_variants_id
      WHERE t.job_id = $1
      ORDER BY coalesce(t.job_variants_id::text, ''), t.step, t.finished_at DESC, t.id DESC`,
    [jobId],
  );
  return r.rows.map((x) => ({
    variantOrder: x.creation_order === null || x.creation_order === undefined ? null : Number(x.creation_order),
    step: String(x.step),
    attempt: Number(x.attempt),
    outcome: String(x.outcome),
    waitMs: Number(x.wait_ms),
    workMs: Number(x.work_ms),
  }));
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
