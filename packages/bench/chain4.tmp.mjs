import { startBenchServer } from '/work/main/packages/bench/dist/db.js';
import { chainRun } from '/work/main/packages/bench/dist/chain.js';
const bench = await startBenchServer();
try {
  for (const n of (process.argv[2] ?? '4').split(',').map(Number)) {
    const r = await chainRun(bench, 'feedly', n, {
      jobs: Number(process.argv[3] ?? 200),
      variants: 4,
      timeoutMs: 300000,
      graphileConcurrency: 16,
      processes: [n],
    });
    console.log(
      n,
      r.stepsPerSecond,
      r.profile.statementsPerStep,
      r.profile.commitsPerStep,
      r.workerCpuSeconds,
      JSON.stringify(r.engine),
    );
  }
} finally {
  await bench.stop();
}
