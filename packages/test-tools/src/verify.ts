/**
 * The img_gen trigger test of seed 003: mark one variant (img_gen, done) the
 * way the YE part does and check that the pipeline picks it up (moves it on
 * to vlm_analyze or further) within a timeout.
 */
import { progressIndex, type Step, isStep } from '@feedlyai/pipeline-core';
import type pg from 'pg';

export interface VariantSnapshot {
  job_variants_id: string;
  job_id: string;
  current_step: string;
  status: string;
  attempt: number;
  last_error: string | null;
  updated_at: Date;
}

export interface VerifyResult {
  before: VariantSnapshot;
  /** The state our UPDATE wrote: (img_gen, done). */
  marked: VariantSnapshot;
  after: VariantSnapshot;
  moved: boolean;
  elapsedMs: number;
}

async function snapshot(db: Pick<pg.Pool, 'query'>, id: string): Promise<VariantSnapshot | null> {
  const r = await db.query<VariantSnapshot>(
    `SELECT job_variants_id, job_id, current_step, status, attempt, last_error, updated_at
       FROM jobs_variants WHERE job_variants_id = $1`,
    [id],
  );
  return r.rows[0] ?? null;
}

/** Has the variant reached vlm_analyze (any status) or a later step? */
export function movedPastImgGen(step: string): boolean {
  return isStep(step) && progressIndex(step as Step) >= progressIndex('vlm_analyze');
}

export class VariantNotFoundError extends Error {
  override name = 'VariantNotFoundError';
}

export async function verifyTrigger(
  db: Pick<pg.Pool, 'query'>,
  variantId: string,
  o: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<VerifyResult> {
  const before = await snapshot(db, variantId);
  if (!before) throw new VariantNotFoundError(`variant ${variantId} not found`);
  if (before.current_step === 'img_gen' && before.status === 'done') {
    // Already (img_gen, done): setting the same values would notify nothing,
    // so pass through (img_gen, queued) first; the pipeline ignores that state.
    await db.query(`UPDATE jobs_variants SET status = 'queued' WHERE job_variants_id = $1`, [variantId]);
  }
  // RETURNING: the state our UPDATE wrote (a listener may move the row on right after).
  const set = await db.query<VariantSnapshot>(
    `UPDATE jobs_variants SET current_step = 'img_gen', status = 'done' WHERE job_variants_id = $1
     RETURNING job_variants_id, job_id, current_step, status, attempt, last_error, updated_at`,
    [variantId],
  );
  const marked = set.rows[0] as VariantSnapshot;
  const started = Date.now();
  const deadline = started + (o.timeoutMs ?? 10_000);
  let after = marked;
  for (;;) {
    after = (await snapshot(db, variantId)) ?? after;
    if (movedPastImgGen(after.current_step)) break;
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 100));
  }
  return { before, marked, after, moved: movedPastImgGen(after.current_step), elapsedMs: Date.now() - started };
}
