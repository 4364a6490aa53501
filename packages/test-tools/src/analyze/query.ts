/**
 * The analyzer's query: the jobs it was asked for, as views
 * (@feedlyai/pipeline-views), in one report.
 */
import { DEFAULT_TENANT_LIMIT, type Queryable, readJobViews } from '@feedlyai/pipeline-views';
import { type AnalyzeReport, toAnalyzedJob } from './model.js';

export interface AnalyzeOptions {
  jobId?: string;
  tenantId?: string;
  /** With `tenantId`: how many of its newest jobs (default 5). */
  limit?: number;
  /** Where relative storage keys live (STORAGE_DIR, default .data/storage). */
  storageDir?: string;
}

/** Everything the stage server stored for a job, or for a tenant's newest jobs. */
export async function analyzeJobs(db: Queryable, o: AnalyzeOptions): Promise<AnalyzeReport> {
  let query: AnalyzeReport['query'];
  if (o.jobId) query = { jobId: o.jobId };
  else if (o.tenantId) query = { tenantId: o.tenantId, limit: o.limit ?? DEFAULT_TENANT_LIMIT };
  else throw new Error('analyze needs a job id or a tenant id');
  const views = await readJobViews(
    db,
    o.jobId ? { jobIds: [o.jobId] } : { tenantId: query.tenantId as string, limit: query.limit as number },
    o.storageDir === undefined ? {} : { storageDir: o.storageDir },
  );
  return { generatedAt: new Date().toISOString(), query, jobs: views.map(toAnalyzedJob) };
}
