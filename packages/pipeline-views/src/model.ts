/**
 * From rows to views (types.ts): pure functions, no database. The progress
 * rule, the newest-result rule and the scores live here, once, for every
 * reader of the pipeline (monitor, analyzer, dashboard).
 */
import { resolve as resolvePath } from 'node:path';
import { FINAL_STEP, isStep, JOB_STEPS, progressIndex, VARIANT_STEPS } from '@feedlyai/pipeline-core/steps';
import type { JobRows, Row } from './query.js';
import type { Box, Evaluations, JobView, StageTiming, StepRun, VariantScores, VariantView } from './types.js';

export interface ViewOptions {
  /**
   * Where relative storage keys live, for the `...Path` fields (`STORAGE_DIR`;
   * default `.data/storage`, resolved against the working directory).
   */
  storageDir?: string;
}

const num = (v: unknown): number => (v === null || v === undefined ? Number.NaN : Number(v));
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const arr = <T>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);
const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const iso = (v: unknown): string | null => (v === null || v === undefined ? null : new Date(v as string).toISOString());
const ms = (v: unknown): number => new Date(v as string).getTime();

/** Sort rank of a step in the graph; unknown steps last. */
function stepOrder(step: string): number {
  return isStep(step) ? progressIndex(step) : 99;
}
const byStep = <T extends { step: string }>(a: T, b: T) => stepOrder(a.step) - stepOrder(b.step);

/** Automatic steps done at (step, status): 0 before vlm_analyze, 10 at (instagram_feed_gen, done). */
export function stepsDoneAt(step: string, status: string): number {
  if (!isStep(step)) return 0;
  const idx = progressIndex(step);
  if (idx === 0) return 0;
  return status === 'done' ? idx : idx - 1;
}

/** The image path of a storage key: an `http(s)` URL unchanged, else under the storage folder. */
export function imagePath(storageDir: string, key: string): string {
  return /^https?:\/\//i.test(key) ? key : resolvePath(storageDir, key);
}

function stepRun(r: Row, now: number): StepRun {
  const claimed = ms(r.claimed_at);
  const finished = r.finished_at ? ms(r.finished_at) : null;
  return {
    step: String(r.step),
    attempt: Number(r.attempt),
    trigger: String(r.trigger),
    state: String(r.state),
    instanceId: String(r.instance_id),
    claimedAt: iso(r.claimed_at) as string,
    sentAt: iso(r.sent_at),
    finishedAt: iso(r.finished_at),
    elapsedMs: Math.max(0, (finished ?? now) - claimed),
    durationMs: numOrNull(r.duration_ms) ?? (finished === null ? null : Math.max(0, finished - claimed)),
    open: finished === null,
    httpStatus: numOrNull(r.http_status),
    error: str(r.error),
  };
}

/** The latest run of each step (runs oldest first), in step order. */
export function latestPerStep(runs: readonly StepRun[]): StepRun[] {
  const latest = new Map<string, StepRun>();
  for (const r of runs) latest.set(r.step, r);
  return [...latest.values()].sort(byStep);
}

function stageTiming(r: Row): StageTiming {
  return {
    step: String(r.step),
    attempt: Number(r.attempt),
    outcome: String(r.outcome),
    waitMs: Number(r.wait_ms),
    workMs: Number(r.work_ms),
    finishedAt: iso(r.finished_at) as string,
  };
}

/** The headline numbers of the evaluations. */
export function scoresOf(e: Evaluations): VariantScores {
  return {
    judge: e.judge ? e.judge.score : null,
    ocrMeanCer: e.ocr ? e.ocr.meanCer : null,
    readabilityPass: e.readability ? e.readability.pass : null,
    minContrast: e.readability ? e.readability.minContrast : null,
    maxIou: e.iou ? e.iou.maxIou : null,
  };
}

function groupBy(rows: readonly Row[], key: string): Map<string, Row[]> {
  const out = new Map<string, Row[]>();
  for (const row of rows) {
    const k = String(row[key]);
    const list = out.get(k) ?? [];
    list.push(row);
    out.set(k, list);
  }
  return out;
}

/** The newest row of a run (the highest id). */
function newest(rows: Row[] | undefined): Row | undefined {
  if (!rows || rows.length === 0) return undefined;
  return rows.reduce((a, b) => (num(b.id) > num(a.id) ? b : a));
}

interface VariantResultRows {
  vlm?: Row[];
  det?: Row[];
  plan?: Row[];
  ovl?: Row[];
  judge?: Row[];
  ocr?: Row[];
  read?: Row[];
  iou?: Row[];
}

function variantResults(
  r: VariantResultRows,
  toPath: (key: string) => string,
): Pick<VariantView, 'vlmAnalysis' | 'detections' | 'planner' | 'overlay' | 'evaluations'> {
  const a = newest(r.vlm);
  const d = newest(r.det);
  const proposals = r.plan ?? [];
  const chosenProposal = proposals.find((p) => p.chosen);
  const o = newest(r.ovl);
  const jg = newest(r.judge);
  const ocrLines = r.ocr ?? [];
  const rd = newest(r.read);
  const io = newest(r.iou);
  const layout = (o?.layout ?? {}) as { lines?: unknown[] };
  const previewKey = str(chosenProposal?.preview_image_key);
  return {
    vlmAnalysis: a
      ? {
          method: String(a.method),
          model: str(a.model),
          usable: Boolean(a.usable),
          description: String(a.description),
          dominantColors: arr<string>(a.dominant_colors),
          problems: arr<string>(a.problems),
        }
      : null,
    detections: d
      ? {
          method: String(d.method),
          model: str(d.model),
          count: Number(d.detection_count),
          items: arr<{ label: string; score: number; box: Box }>(d.detections).map((x) => ({
            label: x.label,
            score: x.score,
            box: x.box,
          })),
        }
      : null,
    planner: proposals.length
      ? {
          method: String(proposals[0]?.method),
          proposals: proposals
            .map((p) => ({
              rank: Number(p.rank),
              score: num(p.score),
              components: (p.components ?? {}) as Record<string, number>,
              rejected: str(p.rejected_reason),
              chosen: Boolean(p.chosen),
              region: p.region as Box,
            }))
            .sort((x, y) => x.rank - y.rank),
          chosenRank: chosenProposal ? Number(chosenProposal.rank) : null,
          previewKey,
          previewPath: previewKey ? toPath(previewKey) : null,
          previewAssetId: str(chosenProposal?.preview_asset_id),
        }
      : null,
    overlay: o
      ? {
          method: String(o.method),
          headline: String(o.headline),
          tagline: str(o.tagline),
          treatment: o.treatment,
          lines: arr<{ role: string; text: string; box: Box; fontSize: number; color: string }>(layout.lines).map(
            (l) => ({ role: l.role, text: l.text, box: l.box, fontSize: l.fontSize, color: l.color }),
          ),
          proposalRank: numOrNull(o.proposal_rank),
          imageKey: String(o.image_key),
          imagePath: toPath(String(o.image_key)),
          imageAssetId: str(o.image_asset_id),
          width: Number(o.width),
          height: Number(o.height),
        }
      : null,
    evaluations: {
      ocr: ocrLines.length
        ? {
            method: String(ocrLines[0]?.method),
            lines: ocrLines.map((l) => ({
              role: String(l.role),
              lang: String(l.lang),
              expected: String(l.expected),
              read: String(l.read),
              cer: num(l.cer),
              confidence: num(l.confidence),
            })),
            meanCer: ocrLines.reduce((n, l) => n + num(l.cer), 0) / ocrLines.length,
          }
        : null,
      readability: rd
        ? {
            method: String(rd.method),
            pass: Boolean(rd.pass),
            minContrast: numOrNull(rd.min_contrast),
            maxClutter: numOrNull(rd.max_clutter),
            thresholds: rd.thresholds,
            lines: arr(rd.lines),
          }
        : null,
      iou: io
        ? { method: String(io.method), maxIou: num(io.max_iou), maxIoText: num(io.max_io_text), pairs: arr(io.pairs) }
        : null,
      judge: jg
        ? {
            method: String(jg.method),
            model: str(jg.model),
            score: num(jg.score),
            problems: arr<string>(jg.problems),
            rationale: String(jg.rationale ?? ''),
          }
        : null,
    },
  };
}

/** Builds the views of the jobs in `rows`, in the order of `rows.jobs`. */
export function buildJobViews(rows: JobRows, options: ViewOptions = {}): JobView[] {
  const storageDir = resolvePath(options.storageDir ?? '.data/storage');
  const toPath = (key: string) => imagePath(storageDir, key);
  const now = rows.now.getTime();
  const variantsOf = groupBy(rows.variants, 'job_id');
  const runsOf = groupBy(rows.runs, 'job_id');
  const timingsOf = groupBy(rows.stageTimings, 'job_id');
  const res = rows.results;
  const vlm = groupBy(res.stage_vlm_analyses, 'job_variants_id');
  const det = groupBy(res.stage_detections, 'job_variants_id');
  const plan = groupBy(res.stage_planner_proposals, 'job_variants_id');
  const ovl = groupBy(res.stage_overlays, 'job_variants_id');
  const judge = groupBy(res.stage_vlm_judgements, 'job_variants_id');
  const ocr = groupBy(res.stage_ocr_evals, 'job_variants_id');
  const read = groupBy(res.stage_readability_evals, 'job_variants_id');
  const iou = groupBy(res.stage_iou_evals, 'job_variants_id');

  return rows.jobs.map((j): JobView => {
    const jobId = String(j.job_id);
    const feed = rows.feeds.find((f) => String(f.job_id) === jobId);
    const copy = rows.adCopies.find((c) => String(c.job_id) === jobId);
    const input = rows.inputs.find((i) => String(i.job_id) === jobId);
    const chosenVariantId = str(feed?.chosen_variant_id);
    const runs = (runsOf.get(jobId) ?? []).map((r) => ({
      variantId: str(r.job_variants_id),
      run: stepRun(r, now),
    }));
    const stageTimings = timingsOf.get(jobId) ?? [];
    const jobStep = String(j.current_step);
    const jobStatus = String(j.status);
    const jobPhase = (JOB_STEPS as readonly string[]).includes(jobStep);
    const jobStepsDone = jobPhase ? Math.max(0, stepsDoneAt(jobStep, jobStatus) - VARIANT_STEPS.length) : 0;

    const variants = (variantsOf.get(jobId) ?? []).map((v): VariantView => {
      const id = String(v.job_variants_id);
      const results = variantResults(
        {
          vlm: vlm.get(id),
          det: det.get(id),
          plan: plan.get(id),
          ovl: ovl.get(id),
          judge: judge.get(id),
          ocr: ocr.get(id),
          read: read.get(id),
          iou: iou.get(id),
        },
        toPath,
      );
      const own = runs.filter((r) => r.variantId === id).map((r) => r.run);
      const variantDone = Math.min(VARIANT_STEPS.length, stepsDoneAt(String(v.current_step), String(v.status)));
      return {
        id,
        jobId,
        order: Number(v.creation_order),
        step: String(v.current_step),
        status: String(v.status),
        attempt: Number(v.attempt),
        lastError: str(v.last_error),
        givenUp: v.given_up_at !== null && v.given_up_at !== undefined,
        updatedAt: iso(v.updated_at) as string,
        progress: variantDone + (variantDone === VARIANT_STEPS.length ? jobStepsDone : 0),
        chosen: chosenVariantId === id,
        ...results,
        scores: scoresOf(results.evaluations),
        timings: latestPerStep(own),
        runs: own,
        stageTimings: stageTimings
          .filter((t) => String(t.job_variants_id) === id)
          .map(stageTiming)
          .sort(byStep),
      };
    });
    const jobRuns = runs.filter((r) => r.variantId === null).map((r) => r.run);
    const progress = jobPhase
      ? VARIANT_STEPS.length + jobStepsDone
      : variants.length
        ? variants.reduce((n, v) => n + v.progress, 0) / variants.length
        : 0;
    const created = ms(j.created_at);
    const completed = j.completed_at ? ms(j.completed_at) : null;
    const done = jobStep === FINAL_STEP && jobStatus === 'done';
    return {
      id: jobId,
      tenantId: String(j.tenant_id),
      step: jobStep,
      status: jobStatus,
      attempt: Number(j.attempt),
      lastError: str(j.last_error),
      failureReason: str(j.failure_reason),
      createdAt: iso(j.created_at) as string,
      updatedAt: iso(j.updated_at) as string,
      completedAt: iso(j.completed_at),
      done,
      outcome: done ? 'done' : j.failure_reason ? 'failed' : null,
      progress: Math.round(progress * 10) / 10,
      elapsedMs: Math.max(0, (completed ?? now) - created),
      durationMs: completed === null ? null : completed - created,
      inputs: input
        ? {
            descKor: str(input.desc_kor),
            tone: str(input.tone_code),
            adCopyEng: str(input.ad_copy_eng),
            taglineKor: str(input.tagline_kor),
            productName: str(input.product_name),
            imageKey: str(input.image_url),
            imageAssetId: str(input.img_asset_id),
          }
        : null,
      variants,
      adCopy: copy
        ? {
            headlineEng: String(copy.headline_eng),
            engMethod: String(copy.eng_method),
            taglineKor: str(copy.tagline_kor),
            adCopyKor: str(copy.ad_copy_kor),
            korMethod: str(copy.kor_method),
            korModel: str(copy.kor_model),
          }
        : null,
      feed: feed
        ? {
            method: String(feed.method),
            model: str(feed.model),
            caption: String(feed.caption),
            hashtags: arr<unknown>(feed.hashtags).map(String),
            chosenVariantId,
            scores: feed.scores,
            feedImageKey: String(feed.feed_image_key),
            feedImagePath: toPath(String(feed.feed_image_key)),
            feedAssetId: str(feed.feed_asset_id),
          }
        : null,
      timings: latestPerStep(jobRuns),
      runs: jobRuns,
      stageTimings: stageTimings
        .filter((t) => t.job_variants_id === null || t.job_variants_id === undefined)
        .map(stageTiming)
        .sort(byStep),
      readAt: new Date(now).toISOString(),
    };
  });
}
