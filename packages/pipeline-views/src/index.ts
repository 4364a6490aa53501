/**
 * @feedlyai/pipeline-views: the view model of a pipeline job and its
 * variants (state, stage results, scores, the chosen variant, timings), read
 * from PostgreSQL in a fixed number of statements. The monitor, the analyzer
 * and the dashboard all read through it. See README.md.
 */
import { buildJobViews, type ViewOptions } from './model.js';
import { type JobSelection, jobOfVariant, type Queryable, readJobRows } from './query.js';
import type { JobView, VariantView } from './types.js';

export type * from './types.js';
export {
  SCORE_CAP,
  type ScoreBreakdown,
  type ScorePart,
  scoreBreakdown,
  type VariantScore,
} from './breakdown.js';
export { type Timeline, type TimelineEntry, timelineOf } from './timeline.js';
export { buildJobViews, imagePath, latestPerStep, scoresOf, stepsDoneAt, type ViewOptions } from './model.js';
export {
  DEFAULT_TENANT_LIMIT,
  type JobRows,
  type JobSelection,
  type Queryable,
  readJobRows,
  type Row,
  VARIANT_RESULT_TABLES,
} from './query.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkUuid(what: string, id: string): void {
  if (typeof id !== 'string' || !UUID.test(id))
    throw new TypeError(`${what} must be a UUID, got ${JSON.stringify(id)}`);
}

/**
 * The views of the selected jobs: `{ jobIds }` in the order given (ids that
 * match no job are left out), or `{ tenantId, limit }` newest first
 * (`limit` default 5).
 *
 * @throws TypeError when a job id is not a UUID or the limit is not a positive integer.
 */
export async function readJobViews(
  db: Queryable,
  selection: JobSelection,
  options: ViewOptions = {},
): Promise<JobView[]> {
  if ('jobIds' in selection) for (const id of selection.jobIds) checkUuid('job id', id);
  else if (selection.limit !== undefined && !(Number.isInteger(selection.limit) && selection.limit > 0)) {
    throw new TypeError(`limit must be a positive integer, got ${selection.limit}`);
  }
  return buildJobViews(await readJobRows(db, selection), options);
}

/**
 * One job's view, or null when there is no such job.
 *
 * @throws TypeError when `jobId` is not a UUID.
 */
export async function readJobView(db: Queryable, jobId: string, options: ViewOptions = {}): Promise<JobView | null> {
  const [view] = await readJobViews(db, { jobIds: [jobId] }, options);
  return view ?? null;
}

/**
 * One variant's view with its job (the chosen flag and the job-level
 * progress need it), or null when there is no such variant.
 *
 * @throws TypeError when `variantId` is not a UUID.
 */
export async function readVariantView(
  db: Queryable,
  variantId: string,
  options: ViewOptions = {},
): Promise<{ job: JobView; variant: VariantView } | null> {
  checkUuid('variant id', variantId);
  const jobId = await jobOfVariant(db, variantId);
  if (jobId === null) return null;
  const job = await readJobView(db, jobId, options);
  const variant = job?.variants.find((v) => v.id === variantId);
  return job && variant ? { job, variant } : null;
}
