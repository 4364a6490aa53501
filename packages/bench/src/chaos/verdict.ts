/**
 * The chaos verdict (docs/chaos.md, "Verdict"):
 *
 * - at the stage double: for every (subject, step) of every job, exactly one
 *   2xx and no 409;
 * - from the run log (pipeline_step_runs): the attempts a pair used, counted
 *   as max(attempt - attempt_base) over its runs, are 1, or 2 for a pair where
 *   the double injected its one recorded 500. attempt_base is filled by the
 *   engine's claims; a run where it is NULL counts with 0 (and is reported).
 *
 * Plus what the operators would want to see: the attempts used per step and
 * per job, the service failures answered (401, 503, 429, 404) and the run
 * outcomes (refused connections, timeouts) from the run log.
 */
import { JOB_STEPS, VARIANT_STEPS } from '@feedlyai/pipeline-core';
import type pg from 'pg';
import { type AnswerRecord, emptyPairCounts, type PairCounts, type StageDouble } from '../stage-double.js';

export interface PairReport {
  key: string;
  counts: PairCounts;
  history: AnswerRecord[];
}

export interface AttemptViolation {
  key: string;
  counted: number;
  injected: boolean;
}

export interface Verdict {
  /** Every rule held. */
  ok: boolean;
  expectedPairs: number;
  /** Pairs never answered 2xx (count, then the first few). */
  missing: number;
  missingSample: string[];
  /** Pairs answered 2xx more than once. */
  duplicates: number;
  /** Pairs answered 409 at least once. */
  conflicts: number;
  /** The first few pairs with more than one 2xx or any 409, with their answers. */
  duplicateSample: PairReport[];
  /** Pairs with their one injected (recorded) 500. */
  injectedPairs: number;
  attempts: {
    /** Pairs whose counted attempts are not 1 (or 2 where a 500 was injected). */
    violations: number;
    violationSample: AttemptViolation[];
    /** Pairs of these jobs with no run in the run log. */
    notInRunLog: number;
    runs: number;
    /** Runs whose attempt_base is NULL (counted as 0: the engine does not fill it yet). */
    attemptBaseNull: number;
    /** Counted attempts per step: { step: { attempts: pairs } }. */
    perStep: Record<string, Record<string, number>>;
    /** Per job, the most attempts any of its steps used: { attempts: jobs }. */
    perJobMax: Record<string, number>;
    /** Per job, the attempts used beyond the first, all its steps together: { extra: jobs }. */
    perJobExtra: Record<string, number>;
    /** The jobs that used attempts beyond the first (the first 20): { job_id: extra }. */
    jobsWithExtra: Record<string, number>;
  };
  /** Answers by kind at the double, over all pairs of these jobs. */
  answers: PairCounts;
  /** Run outcomes from the run log: `${state} ${http_status ?? error class}` → runs. */
  runOutcomes: Record<string, number>;
}

const bump = (m: Record<string, number>, k: string | number, by = 1) => {
  m[String(k)] = (m[String(k)] ?? 0) + by;
};

/**
 * The verdict over these jobs (all jobs when `jobIds` is null). `allowInjected`:
 * a pair where the double injected its recorded 500 may use 2 attempts.
 */
export async function verdict(
  admin: pg.Pool,
  double: StageDouble,
  jobIds: readonly string[] | null,
  opts: { sample?: number } = {},
): Promise<Verdict> {
  const sample = opts.sample ?? 5;
  const { rows: variants } = await admin.query<{ v: string; j: string }>(
    `SELECT job_variants_id::text AS v, job_id::text AS j FROM jobs_variants
      WHERE $1::uuid[] IS NULL OR job_id = ANY($1::uuid[])`,
    [jobIds],
  );
  const { rows: jobs } = await admin.query<{ j: string }>(
    'SELECT job_id::text AS j FROM jobs WHERE $1::uuid[] IS NULL OR job_id = ANY($1::uuid[])',
    [jobIds],
  );
  /** pair key -> job id */
  const expected = new Map<string, string>();
  for (const r of variants) for (const s of VARIANT_STEPS) expected.set(`${r.v}|${s}`, r.j);
  for (const r of jobs) for (const s of JOB_STEPS) expected.set(`${r.j}|${s}`, r.j);

  const counts = double.pairCounts();
  const injected = double.injectedPairs();
  const answers = emptyPairCounts();
  const missingKeys: string[] = [];
  let duplicates = 0;
  let conflicts = 0;
  const duplicateSample: PairReport[] = [];
  let injectedPairs = 0;
  for (const key of expected.keys()) {
    const c = counts.get(key) ?? emptyPairCounts();
    for (const k of Object.keys(answers) as (keyof PairCounts)[]) answers[k] += c[k];
    if (injected.has(key)) injectedPairs++;
    if (c.ok === 0) missingKeys.push(key);
    if (c.ok > 1) duplicates++;
    if (c.conflict > 0) conflicts++;
    if ((c.ok > 1 || c.conflict > 0) && duplicateSample.length < sample) {
      duplicateSample.push({ key, counts: c, history: double.history(key) });
    }
  }

  const { rows: runs } = await admin.query<{
    subject: string;
    step: string;
    counted: number;
    n: number;
    nulls: number;
  }>(
    `SELECT coalesce(job_variants_id, job_id)::text AS subject, step,
            max(attempt - coalesce(attempt_base, 0))::int AS counted,
            count(*)::int AS n, count(*) FILTER (WHERE attempt_base IS NULL)::int AS nulls
       FROM pipeline_step_runs
      WHERE $1::uuid[] IS NULL OR job_id = ANY($1::uuid[])
      GROUP BY 1, 2`,
    [jobIds],
  );
  const counted = new Map<string, number>();
  let runCount = 0;
  let attemptBaseNull = 0;
  for (const r of runs) {
    counted.set(`${r.subject}|${r.step}`, r.counted);
    runCount += r.n;
    attemptBaseNull += r.nulls;
  }
  const perStep: Record<string, Record<string, number>> = {};
  const jobMax = new Map<string, number>();
  const jobExtra = new Map<string, number>();
  const violationSample: AttemptViolation[] = [];
  let violations = 0;
  let notInRunLog = 0;
  for (const [key, jobId] of expected) {
    const step = key.slice(key.indexOf('|') + 1);
    const n = counted.get(key);
    if (n === undefined) {
      notInRunLog++;
      continue;
    }
    perStep[step] ??= {};
    bump(perStep[step] as Record<string, number>, n);
    jobMax.set(jobId, Math.max(jobMax.get(jobId) ?? 0, n));
    jobExtra.set(jobId, (jobExtra.get(jobId) ?? 0) + Math.max(0, n - 1));
    const inj = injected.has(key);
    if (n !== 1 && !(inj && n === 2)) {
      violations++;
      if (violationSample.length < sample) violationSample.push({ key, counted: n, injected: inj });
    }
  }
  const perJobMax: Record<string, number> = {};
  for (const n of jobMax.values()) bump(perJobMax, n);
  const perJobExtra: Record<string, number> = {};
  const jobsWithExtra: Record<string, number> = {};
  for (const [jobId, n] of jobExtra) {
    bump(perJobExtra, n);
    if (n > 0 && Object.keys(jobsWithExtra).length < 20) jobsWithExtra[jobId] = n;
  }

  const { rows: outcomes } = await admin.query<{ outcome: string; n: number }>(
    `SELECT state || ' ' || coalesce(http_status::text,
              substring(error FROM '(ECONN[A-Z]+|UND_ERR_[A-Z_]+|timeout|refused|reset)'), '-') AS outcome,
            count(*)::int AS n
       FROM pipeline_step_runs
      WHERE $1::uuid[] IS NULL OR job_id = ANY($1::uuid[])
      GROUP BY 1 ORDER BY 2 DESC`,
    [jobIds],
  );
  const runOutcomes = Object.fromEntries(outcomes.map((r) => [r.outcome, r.n]));

  const ok = missingKeys.length === 0 && duplicates === 0 && conflicts === 0 && violations === 0 && notInRunLog === 0;
  return {
    ok,
    expectedPairs: expected.size,
    missing: missingKeys.length,
    missingSample: missingKeys.slice(0, sample),
    duplicates,
    conflicts,
    duplicateSample,
    injectedPairs,
    attempts: {
      violations,
      violationSample,
      notInRunLog,
      runs: runCount,
      attemptBaseNull,
      perStep,
      perJobMax,
      perJobExtra,
      jobsWithExtra,
    },
    answers,
    runOutcomes,
  };
}
