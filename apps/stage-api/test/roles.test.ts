/**
 * Stages spread over machines (docs/deployment.md): two stage-api PROCESSES on
 * one database and one STORAGE_DIR, a "GPU" one that the listener sends only
 * vlm_analyze and vlm_judge (STAGE_API_URLS), and a "CPU" one hosting the
 * listener and serving the rest. This machine has one box: the two roles are
 * two processes on it, not two machines. Each step must run once, and each
 * process must serve exactly its steps.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VARIANT_STEPS } from '@feedlyai/pipeline-core';
import t from 'tap';
import { freePort, jobState, seedJob, tempStorage, testDb, waitFor } from './helpers.js';

// The built server (turbo builds it before the tests; `pnpm build` before running this file alone).
const SERVER = fileURLToPath(new URL('../dist/server.js', import.meta.url));

function start(name: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [SERVER], {
    env: { PATH: process.env.PATH ?? '', STAGE_CPU_WORKERS: '0', LOG_LEVEL: 'warn', ...env },
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
  return { name, child, exited, output: () => output };
}

/** `stage_runs_total{step=…,outcome="done"}` of one process's /metrics, by step. */
async function doneByStep(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^stage_runs_total\{([^}]*)\} (\d+)/gm)) {
    const labels = Object.fromEntries(
      [...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1] as string, x[2] as string]),
    );
    if (labels.outcome === 'done' && labels.step) out[labels.step] = (out[labels.step] ?? 0) + Number(m[2]);
  }
  return out;
}

t.test('a GPU role and a CPU role on one database and one STORAGE_DIR: each step once, each on its box', async (t) => {
  const db = await testDb(t);
  const storage = await tempStorage(t);
  const gpuPort = await freePort();
  const cpuPort = await freePort();
  const common = { DATABASE_URL: db.url, STORAGE_DIR: storage, HOST: '127.0.0.1', STAGE_API_TOKEN: 'one-token' };
  const gpu = start('gpu', { ...common, PORT: String(gpuPort), ENABLE_JOB_STATE_LISTENER: 'false' });
  const cpu = start('cpu', {
    ...common,
    PORT: String(cpuPort),
    ENABLE_JOB_STATE_LISTENER: 'true',
    STAGE_API_URL: `http://127.0.0.1:${cpuPort}`,
    STAGE_API_URLS: `vlm_analyze=http://127.0.0.1:${gpuPort},vlm_judge=http://127.0.0.1:${gpuPort}`,
  });
  t.teardown(async () => {
    for (const p of [gpu, cpu]) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    await Promise.all([gpu.exited, cpu.exited]);
  });
  for (const [p, port] of [
    [gpu, gpuPort],
    [cpu, cpuPort],
  ] as const) {
    await waitFor(
      async () => {
        if (p.child.exitCode !== null) throw new Error(`${p.name} exited: ${p.output()}`);
        const r = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
        return r?.ok ?? false;
      },
      { timeoutMs: 240_000, intervalMs: 200, message: `${p.name} up` },
    );
  }
  const job = await seedJob(db.pool, { imageUrl: 'inputs/coffee.png', variants: 2 });
  await db.pool.query(`UPDATE jobs_variants SET current_step = 'img_gen', status = 'done' WHERE job_id = $1`, [
    job.jobId,
  ]);
  await waitFor(
    async () => {
      const s = await jobState(db.pool, job.jobId);
      if (s.status === 'failed') throw new Error(`job failed: ${s.failure_reason ?? s.last_error}`);
      return s.current_step === 'instagram_feed_gen' && s.status === 'done';
    },
    { timeoutMs: 240_000, intervalMs: 200, message: 'job complete across the two processes' },
  );
  const succeededRuns = () =>
    db.pool.query<{ step: string; n: number }>(
      `SELECT step, count(*)::int AS n FROM pipeline_step_runs WHERE job_id = $1 AND state = 'succeeded'
        GROUP BY step, coalesce(job_variants_id, job_id)`,
      [job.jobId],
    );
  // The run log's outcomes are written in batches after the answers (docs/state-machine.md, "The run log"): the last
  // step's 'succeeded' can land just after the job row shows done.
  await waitFor(async () => ((await succeededRuns()).rowCount ?? 0) >= 2 * VARIANT_STEPS.length + 2, {
    timeoutMs: 10_000,
    message: "every step's outcome in the run log",
  });
  const runs = await succeededRuns();
  t.equal(runs.rowCount, 2 * VARIANT_STEPS.length + 2, 'every (subject, step) succeeded');
  t.ok(
    runs.rows.every((r) => r.n === 1),
    'each once',
  );
  const onGpu = await doneByStep(gpuPort);
  const onCpu = await doneByStep(cpuPort);
  t.same(onGpu, { vlm_analyze: 2, vlm_judge: 2 }, 'the GPU process ran exactly the VLM steps');
  t.notOk('vlm_analyze' in onCpu || 'vlm_judge' in onCpu, 'the CPU process ran no VLM step');
  t.equal(onCpu.ocr_eval, 2);
  t.equal(onCpu.instagram_feed_gen, 1);
  const judged = await db.pool.query('SELECT count(*)::int AS n FROM stage_vlm_judgements WHERE job_id = $1', [
    job.jobId,
  ]);
  t.equal(judged.rows[0].n, 2, "the GPU box judged the CPU box's overlays through the shared STORAGE_DIR");
});
