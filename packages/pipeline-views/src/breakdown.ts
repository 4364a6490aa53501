/**
 * The chosen variant's score, broken down (the dashboard's job page, docs/dashboard.md):
 * which evaluation gave how many points, and why the winner won.
 *
 * instagram_feed_gen scores every variant that has a creative and its four
 * evaluations (apps/stage-api/src/vision/score.ts), 0..100:
 *
 *   100 × (0.25 judge + 0.25 ocr + 0.30 readability + 0.20 overlap)
 *
 * each part 0..1, capped at 50 when the text covers a detected object or a
 * line's contrast is below 4.5:1; the best score wins, ties going to the
 * earlier variant. The stage stores each variant's score and parts in the
 * feed row (`stage_instagram_feeds.scores`); the points here are recomputed
 * from those parts and checked against the stored score (`consistent`).
 */
import type { JobView } from './types.js';

export interface ScorePart {
  key: 'judge' | 'ocr' | 'readability' | 'overlap';
  label: string;
  /** What the part measures, for the page. */
  hint: string;
  weight: number;
  /** The part, 0..1. */
  value: number;
  /** 100 × weight × value. */
  points: number;
  /** Most points this part can give. */
  maxPoints: number;
}

export interface VariantScore {
  variantId: string;
  order: number;
  /** The score as the feed step stored it. */
  score: number;
  parts: ScorePart[];
  /** The sum of the parts before the cap. */
  uncapped: number;
  capped: boolean;
  /** Largest share of a text line over a detected object (the cap's first reason). */
  textOverObject: number | null;
  /** Mean OCR character error rate. */
  meanCer: number | null;
  /** 1 for the winner. */
  rank: number;
  chosen: boolean;
  /** The recomputed points add up to the stored score (to 0.05). */
  consistent: boolean;
}

export interface ScoreBreakdown {
  /** Every scored variant, best first. */
  variants: VariantScore[];
  /** Variants the feed step did not score, and why. */
  unscored: Array<{ variantId: string; order: number; reason: string }>;
  chosenVariantId: string | null;
  /** One sentence: why the chosen variant won. */
  why: string;
}

const PARTS: ReadonlyArray<Omit<ScorePart, 'value' | 'points' | 'maxPoints'>> = [
  { key: 'judge', label: 'VLM judge', hint: "the vision model's 0–10 verdict on the creative", weight: 0.25 },
  {
    key: 'ocr',
    label: 'OCR legibility',
    hint: 'the text read back as written, and how sure the OCR was',
    weight: 0.25,
  },
  {
    key: 'readability',
    label: 'Readability',
    hint: 'contrast of the text on its background (10:1 gives it all) and clutter behind it',
    weight: 0.3,
  },
  { key: 'overlap', label: 'Text clear of objects', hint: 'no text line over a detected object', weight: 0.2 },
];

/** The cap of a score whose text covers an object or whose worst line is below 4.5:1. */
export const SCORE_CAP = 50;

interface StoredScore {
  job_variants_id?: unknown;
  creation_order?: unknown;
  score?: unknown;
  components?: Record<string, unknown>;
}

const finite = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const round2 = (v: number) => Math.round(v * 100) / 100;

function unscoredReason(v: JobView['variants'][number]): string {
  if (v.givenUp) return `given up at ${v.step}`;
  if (!(v.step === 'iou_eval' && v.status === 'done')) return `not evaluated yet (at ${v.step}, ${v.status})`;
  if (!v.overlay) return 'no creative';
  return 'an evaluation is missing';
}

export function scoreBreakdown(job: JobView): ScoreBreakdown {
  const stored = Array.isArray(job.feed?.scores) ? (job.feed?.scores as StoredScore[]) : [];
  const chosenVariantId = job.feed?.chosenVariantId ?? null;
  const scored: VariantScore[] = [];
  for (const s of stored) {
    const variantId = typeof s.job_variants_id === 'string' ? s.job_variants_id : null;
    const score = finite(s.score);
    if (variantId === null || score === null) continue;
    const c = s.components ?? {};
    const parts = PARTS.map((p) => {
      const value = Math.max(0, Math.min(1, finite(c[p.key]) ?? 0));
      return { ...p, value, points: round2(100 * p.weight * value), maxPoints: 100 * p.weight };
    });
    const uncapped = round2(parts.reduce((n, p) => n + 100 * p.weight * p.value, 0));
    const capped = finite(c.capped) === 1;
    const expected = capped ? Math.min(uncapped, SCORE_CAP) : uncapped;
    const variant = job.variants.find((v) => v.id === variantId);
    scored.push({
      variantId,
      order: variant?.order ?? finite(s.creation_order) ?? 0,
      score,
      parts,
      uncapped,
      capped,
      textOverObject: finite(c.maxTextOverObject),
      meanCer: finite(c.meanCer),
      rank: 0,
      chosen: variantId === chosenVariantId,
      consistent: Math.abs(expected - score) <= 0.05,
    });
  }
  // The feed step's order: best score first, ties to the earlier variant.
  scored.sort((a, b) => b.score - a.score || a.order - b.order);
  scored.forEach((v, i) => {
    v.rank = i + 1;
  });
  const scoredIds = new Set(scored.map((v) => v.variantId));
  const unscored = job.variants
    .filter((v) => !scoredIds.has(v.id))
    .map((v) => ({ variantId: v.id, order: v.order, reason: job.feed ? unscoredReason(v) : 'not scored yet' }));
  return { variants: scored, unscored, chosenVariantId, why: explain(job, scored) };
}

function capReason(v: VariantScore): string {
  return v.textOverObject !== null && v.textOverObject > 0
    ? 'its text covers a detected object'
    : 'a text line has less than 4.5:1 contrast';
}

function explain(job: JobView, scored: VariantScore[]): string {
  if (!job.feed) return 'No variant is chosen until the Instagram feed step has scored them.';
  const winner = scored.find((v) => v.chosen) ?? scored[0];
  if (!winner) return 'The feed step stored no scores for this job.';
  const name = `Variant #${winner.order}`;
  const runnerUp = scored.find((v) => v !== winner);
  if (!runnerUp) return `${name} won as the only variant with a creative and all four evaluations.`;
  const margin = round2(winner.score - runnerUp.score);
  if (margin === 0) {
    return `${name} tied with #${runnerUp.order} at ${winner.score.toFixed(2)} points; ties go to the earlier variant.`;
  }
  const lead = `${name} scored ${winner.score.toFixed(2)}, ${margin.toFixed(2)} points ahead of #${runnerUp.order}`;
  if (runnerUp.capped && !winner.capped) {
    return `${lead}: #${runnerUp.order} was capped at ${SCORE_CAP} because ${capReason(runnerUp)}.`;
  }
  const gains = winner.parts
    .map((p, i) => ({ label: p.label, diff: round2(p.points - (runnerUp.parts[i]?.points ?? 0)) }))
    .filter((g) => g.diff > 0)
    .sort((a, b) => b.diff - a.diff)
    .slice(0, 2)
    .map((g) => `${g.label} +${g.diff.toFixed(2)}`);
  return gains.length ? `${lead}, mostly on ${gains.join(' and ')}.` : `${lead}.`;
}
