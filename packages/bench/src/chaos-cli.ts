/**
 * `pnpm chaos`: runs chaos scenarios (docs/chaos.md) and prints each result as
 * JSON on stdout (progress on stderr). Exit code 1 when a verdict failed or a
 * job did not finish, 2 for bad arguments.
 *
 *   --scenario faults,outage     the scenarios to run (default: all four)
 *   --full                       the full sizes (as CHAOS_FULL=1): 500 jobs, 7-min outage, 60-s rotation
 *   --settle-seconds N           how long to wait for the jobs after the reference moment
 *   --listener-log LEVEL         the listeners' own log on stderr (pino level)
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type ChaosOptions, chaosSizes, parseScenarios, runChaos, summary } from './chaos.js';

const USAGE =
  'usage: chaos [--scenario faults,outage,rotation,backlog] [--full] [--settle-seconds N] [--listener-log LEVEL]\n';

async function main(): Promise<number> {
  let scenarios: ReturnType<typeof parseScenarios>;
  let values: { full?: boolean; 'settle-seconds'?: string; 'listener-log'?: string; scenario?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      // `pnpm chaos -- --scenario x` hands the separator through: ignore it.
      args: process.argv.slice(2).filter((a) => a !== '--'),
      options: {
        scenario: { type: 'string' },
        full: { type: 'boolean', default: process.env.CHAOS_FULL === '1' },
        'settle-seconds': { type: 'string' },
        'listener-log': { type: 'string' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }));
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    scenarios = parseScenarios(values.scenario ?? process.env.CHAOS_SCENARIO);
    const settle = values['settle-seconds'];
    if (settle !== undefined && !(Number.isFinite(Number(settle)) && Number(settle) > 0)) {
      throw new Error('--settle-seconds: a positive number');
    }
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  let failed = false;
  for (const scenario of scenarios) {
    const o: ChaosOptions = {
      ...chaosSizes(scenario, values.full ?? false),
      log: (line) => process.stderr.write(`[chaos ${scenario}] ${line}\n`),
      ...(values['settle-seconds'] ? { settleMs: Number(values['settle-seconds']) * 1000 } : {}),
      ...(values['listener-log'] ? { listenerLogLevel: values['listener-log'] } : {}),
    } as ChaosOptions;
    const r = await runChaos(o);
    process.stdout.write(`${JSON.stringify(summary(r), null, 2)}\n`);
    if (!r.verdict.ok || r.jobsDone !== r.jobs) failed = true;
  }
  return failed ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
