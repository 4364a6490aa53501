// `feedly-pipeline retry`: both forms, their argument checks (exit 2), the dry run,
// --json, and a real bulk retry against this file's own PostgreSQL (docs/cli-retry.md).
import t from 'tap';
import { parseFailedSince } from '../src/cli/retry.js';
import { cleanEnv, jobState, runCliInProcess, seedJob, testDb } from './helpers.js';

const UNREACHABLE = 'postgres://someone:secret@127.0.0.1:1/nothing';
const JOB = '0b6f3c1e-2d7a-4c8e-9a51-7f1d2e3c4b5a';

t.test('bad arguments exit 2 with the error and a usage line, before any database work', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['retry'], /give a <job_id> to retry, or --failed-since/],
    [['retry', JOB, '--failed-since', '2h'], /give either <job_id> or --failed-since, not both/],
    [['retry', '--failed-since', 'yesterday'], /option '--failed-since <when>' argument 'yesterday' is invalid/],
    [['retry', '--failed-since', '2026-02-30'], /option '--failed-since <when>'.*not a valid date/],
    [['retry', '--failed-since', '2026-11-28T09:00:00'], /option '--failed-since <when>'.*needs Z or an offset/],
    [['retry', '--failed-since', '0h'], /option '--failed-since <when>'.*at least 1/],
    [['retry', '--failed-since', '5w'], /option '--failed-since <when>'/],
    [['retry', '--failed-since', '2h', '--limit', '0'], /option '--limit <n>' argument '0' is invalid/],
    [['retry', '--failed-since', '2h', '--limit', '1001'], /option '--limit <n>'.*from 1 to 1000/],
    [['retry', '--failed-since', '2h', '--limit', '2.5'], /option '--limit <n>'/],
    [['retry', '--failed-since', '2h', '--limit', 'many'], /option '--limit <n>'/],
    [['retry', '--failed-since', '2h', '--reason-like', ''], /option '--reason-like <text>'.*non-empty/],
    [['retry', '--failed-since', '2h', '--tenant-id', 't'.repeat(201)], /option '--tenant-id <id>'.*at most 200/],
    [['retry', '--failed-since', '2h', '--variant', JOB], /--variant goes with <job_id>/],
    [['retry', JOB, '--dry-run'], /--dry-run goes with --failed-since/],
    [['retry', JOB, '--limit', '5'], /--limit goes with --failed-since/],
    [['retry', JOB, '--tenant-id', 'x'], /--tenant-id goes with --failed-since/],
    [['retry', JOB, '--reason-like', 'x'], /--reason-like goes with --failed-since/],
  ];
  for (const [args, message] of cases) {
    const name = args.join(' ').slice(0, 80);
    const r = await runCliInProcess(args, { env: cleanEnv({ DATABASE_URL: UNREACHABLE }) });
    t.equal(r.code, 2, `${name}: exit 2`);
    t.match(r.stderr, message, `${name}: says what is wrong`);
    t.match(r.stderr, /Usage: feedly-pipeline retry/, `${name}: usage line`);
    t.notMatch(r.stderr, /cannot connect/, `${name}: no database touched`);
  }
});

t.test('--failed-since parsing', async (t) => {
  t.same(parseFailedSince('30m'), { kind: 'ago', ms: 30 * 60_000, text: '30m' });
  t.same(parseFailedSince('2h'), { kind: 'ago', ms: 2 * 3_600_000, text: '2h' });
  t.same(parseFailedSince(' 7d '), { kind: 'ago', ms: 7 * 86_400_000, text: '7d' });
  t.match(parseFailedSince('2026-11-28'), { kind: 'at', at: new Date('2026-11-28T00:00:00Z') }, 'midnight UTC');
  t.match(parseFailedSince('2026-11-28T09:00:00+09:00'), { kind: 'at', at: new Date('2026-11-28T00:00:00Z') });
  t.match(parseFailedSince('2026-11-28T09:30Z'), { kind: 'at', at: new Date('2026-11-28T09:30:00Z') });
  t.match(parseFailedSince('2026-11-28T09:30:15.250Z'), { kind: 'at', at: new Date('2026-11-28T09:30:15.250Z') });
  for (const bad of ['', '2h ago', '-2h', '2026-13-01', '2026-11-28T24:00Z', '2026-11-28T09:00+25:00', 'now']) {
    t.throws(() => parseFailedSince(bad), { code: 'commander.invalidArgument' }, `refuses '${bad}'`);
  }
});

t.test('with a database', async (t) => {
  const db = await testDb();
  t.teardown(() => db.close());
  const env = cleanEnv({ DATABASE_URL: db.url });

  /** A job failed for good `agoMinutes` ago (failed_at backdated; setting failure_reason stamps it). */
  async function failedJob(tenantId: string, reason: string, agoMinutes: number): Promise<string> {
    const s = await seedJob(db.pool, { tenantId, variants: 1, variantStep: 'overlay', variantStatus: 'failed' });
    await db.pool.query(`UPDATE jobs SET status = 'failed', failure_reason = $2 WHERE job_id = $1`, [s.jobId, reason]);
    await db.pool.query(`UPDATE jobs SET failed_at = now() - $2 * interval '1 minute' WHERE job_id = $1`, [
      s.jobId,
      agoMinutes,
    ]);
    return s.jobId;
  }

  const old = await failedJob('acme', 'overlay failed after 3 attempts: Timed Out', 100);
  const recent = await failedJob('acme', 'planner failed after 3 attempts: timed out', 20);
  const otherReason = await failedJob('acme', 'ocr_eval failed after 3 attempts: bad image', 10);
  const cancelled = await failedJob('acme', 'cancelled', 5);
  const otherTenant = await failedJob('globex', 'overlay failed after 3 attempts: timed out', 15);
  const tooOld = await failedJob('acme', 'overlay failed after 3 attempts: timed out', 60 * 24 * 3);

  async function snapshot(): Promise<unknown> {
    return (
      await db.pool.query(
        `SELECT j.job_id, j.status, j.failure_reason, j.failed_at, v.status AS v_status, v.attempt, v.dispatch_requested_at
           FROM jobs j JOIN jobs_variants v USING (job_id) ORDER BY j.job_id`,
      )
    ).rows;
  }

  t.test('--dry-run prints the count and the ids, oldest first, and changes nothing', async (t) => {
    const before = await snapshot();
    const r = await runCliInProcess(['retry', '--failed-since', '2h', '--tenant-id', 'acme', '--dry-run'], { env });
    t.equal(r.code, 0, 'exit 0', { stderr: r.stderr });
    const lines = r.stdout.trim().split('\n');
    t.match(lines[0], /^dry run: 3 failed job\(s\) match \(failed since \S+Z, tenant acme\); nothing changed$/);
    t.same(
      lines.slice(1).map((l) => l.split(/\s+/)[0]),
      [old, recent, otherReason],
      'one id a line, oldest failure first; no cancelled, no older, no other tenant',
    );
    t.match(lines[1], /failed \S+Z {2}acme {2}overlay failed after 3 attempts: Timed Out$/);
    t.notOk(r.stdout.includes(tooOld) || r.stdout.includes(cancelled) || r.stdout.includes(otherTenant));
    t.same(await snapshot(), before, 'nothing changed');
  });

  t.test('--dry-run --json: the selection as JSON', async (t) => {
    const r = await runCliInProcess(
      ['retry', '--failed-since', '2h', '--reason-like', 'TIMED OUT', '--dry-run', '--json'],
      { env },
    );
    t.equal(r.code, 0, 'exit 0', { stderr: r.stderr });
    const out = JSON.parse(r.stdout);
    t.match(out, { dryRun: true, matched: 3, truncated: false, retried: [], errors: [] });
    t.same(out.jobIds, [old, recent, otherTenant], 'every tenant, reason matched case-insensitively');
    t.equal(out.jobs[0].jobId, old);
    t.match(out.jobs[0], { tenantId: 'acme', failureReason: /Timed Out/ });
    t.ok(Date.parse(out.failedSince) < Date.parse(out.jobs[0].failedAt), 'failedSince resolved on the database clock');
  });

  t.test('--limit and the ISO form; a truncated selection says so', async (t) => {
    const since = new Date(Date.now() - 3 * 3_600_000).toISOString();
    const r = await runCliInProcess(['retry', '--failed-since', since, '--limit', '1', '--dry-run'], { env });
    t.equal(r.code, 0, 'exit 0', { stderr: r.stderr });
    t.match(r.stdout, /^dry run: 1 failed job\(s\) match/);
    t.match(r.stdout, new RegExp(`\\n${old} `), 'the oldest one');
    t.match(r.stdout, /more jobs match than --limit 1: run the command again/);
  });

  t.test('cancelled jobs only when --reason-like matches them', async (t) => {
    const r = await runCliInProcess(
      ['retry', '--failed-since', '1h', '--reason-like', 'cancel', '--dry-run', '--json'],
      {
        env,
      },
    );
    t.equal(r.code, 0);
    t.same(JSON.parse(r.stdout).jobIds, [cancelled]);
  });

  t.test('a real run retries what matched and says what it did', async (t) => {
    const r = await runCliInProcess(
      ['retry', '--failed-since', '2h', '--tenant-id', 'acme', '--reason-like', 'timed out'],
      { env },
    );
    t.equal(r.code, 0, 'exit 0', { stdout: r.stdout, stderr: r.stderr });
    t.match(r.stdout, /^2 failed job\(s\) match \(failed since \S+, tenant acme, reason like "timed out"\)/);
    t.match(r.stdout, new RegExp(`retried job ${old}: re-queued variant [0-9a-f-]{36} at overlay \\(attempt 2\\)`));
    t.match(r.stdout, new RegExp(`retried job ${recent}: `));
    t.match(r.stdout, /summary: 2 job\(s\) retried, 0 error\(s\)/);
    for (const id of [old, recent]) t.match(await jobState(db.pool, id), { failure_reason: null });
    for (const id of [otherReason, otherTenant, cancelled, tooOld]) {
      t.not((await jobState(db.pool, id)).failure_reason, null, 'not selected: still failed');
    }
  });

  t.test('--json of a real run, and exit 1 when a job could not be retried', async (t) => {
    const a = await failedJob('initech', 'vlm_judge failed after 3 attempts: x', 30);
    const bad = await failedJob('initech', 'vlm_judge failed after 3 attempts: x', 20);
    // A real error inside the retry's transaction for one job: a trigger refusing its variants' update.
    await db.pool.query(`
      CREATE TABLE test_refused_jobs (job_id uuid PRIMARY KEY);
      CREATE FUNCTION test_refuse_retry() RETURNS trigger AS $$
      BEGIN
        IF EXISTS (SELECT 1 FROM test_refused_jobs WHERE job_id = NEW.job_id) THEN
          RAISE EXCEPTION 'refused by test trigger';
        END IF;
        RETURN NEW;
      END; $$ LANGUAGE plpgsql;
      CREATE TRIGGER test_refuse_retry BEFORE UPDATE ON jobs_variants FOR EACH ROW EXECUTE FUNCTION test_refuse_retry();
    `);
    t.teardown(() =>
      db.pool.query(
        'DROP TRIGGER test_refuse_retry ON jobs_variants; DROP FUNCTION test_refuse_retry(); DROP TABLE test_refused_jobs',
      ),
    );
    await db.pool.query('INSERT INTO test_refused_jobs (job_id) VALUES ($1)', [bad]);
    const r = await runCliInProcess(['retry', '--failed-since', '1h', '--tenant-id', 'initech', '--json'], { env });
    t.equal(r.code, 1, 'exit 1: one job could not be retried');
    const out = JSON.parse(r.stdout);
    t.match(out, { dryRun: false, matched: 2, jobIds: [a, bad] });
    t.same(
      out.retried.map((x: { jobId: string }) => x.jobId),
      [a],
    );
    t.match(out.retried[0], { requeued: [{ step: 'overlay', attempt: 2 }], siblings: [] });
    t.match(out.errors, [{ jobId: bad, error: /refused by test trigger/ }]);
    t.match(await jobState(db.pool, bad), { status: 'failed', failure_reason: /vlm_judge failed/ }, 'left as it was');

    const text = await runCliInProcess(['retry', '--failed-since', '1h', '--tenant-id', 'initech'], { env });
    t.equal(text.code, 1);
    t.match(text.stderr, new RegExp(`could not retry job ${bad}: refused by test trigger`));
    t.match(text.stdout, /summary: 0 job\(s\) retried, 1 error\(s\)/);
  });

  t.test('nothing matched: exit 0 and says so', async (t) => {
    const r = await runCliInProcess(['retry', '--failed-since', '30m', '--tenant-id', 'nobody'], { env });
    t.equal(r.code, 0);
    t.match(r.stdout, /^0 failed job\(s\) match/);
  });

  t.test('retry <job_id> of a cancelled job hands its waiting variants back', async (t) => {
    const s = await seedJob(db.pool, { tenantId: 'hooli', variants: 2, variantStep: 'planner', variantStatus: 'done' });
    await db.pool.query(`UPDATE jobs SET status = 'failed', failure_reason = 'cancelled' WHERE job_id = $1`, [s.jobId]);
    const r = await runCliInProcess(['retry', s.jobId], { env });
    t.equal(r.code, 0, 'exit 0', { stdout: r.stdout, stderr: r.stderr });
    t.match(r.stdout, /handed 2 sibling variant\(s\) waiting at a done step back to the pipeline/);
    t.match(r.stdout, /cleared the job's failure reason \(cancelled\)/);
    const marked = await db.pool.query(
      'SELECT count(*)::int AS n FROM jobs_variants WHERE job_id = $1 AND dispatch_requested_at IS NOT NULL',
      [s.jobId],
    );
    t.equal(marked.rows[0].n, 2);
    const again = await runCliInProcess(['retry', s.jobId], { env });
    t.equal(again.code, 1, 'nothing left to retry: exit 1');
    t.match(again.stdout, /nothing to retry/);
  });
});
