/**
 * `pnpm chaos` argument handling and the scenario list (CHAOS_SCENARIO):
 * bad input exits 2 with the reason, before anything starts.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { CHAOS_SCENARIOS, chaosSizes, parseScenarios } from '../src/chaos.js';

const cli = fileURLToPath(new URL('../dist/chaos-cli.js', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000 });

t.test('parseScenarios: all by default, a comma-separated subset, unknown names refused', async (t) => {
  t.same(parseScenarios(undefined), [...CHAOS_SCENARIOS]);
  t.same(parseScenarios(' '), [...CHAOS_SCENARIOS]);
  t.same(parseScenarios('outage, backlog'), ['outage', 'backlog']);
  t.throws(() => parseScenarios('outage,nope'), /unknown chaos scenario 'nope'/);
});

t.test(
  'sizes: CI runs are smaller (fewer jobs, a 10-s outage), the full ones have the 7-min outage and the 60-s rotation',
  async (t) => {
    t.match(chaosSizes('faults', false), { jobs: 40, killEveryMs: 2_000 });
    t.match(chaosSizes('faults', true), { jobs: 500, killEveryMs: 2_000 });
    t.match(chaosSizes('outage', false), { jobs: 20, durationMs: 10_000 });
    t.match(chaosSizes('outage', true), { jobs: 40, durationMs: 420_000 });
    t.match(chaosSizes('rotation', false), { durationMs: 10_000 });
    t.match(chaosSizes('rotation', true), { durationMs: 60_000 });
    t.match(chaosSizes('backlog', false), { parked: 10_000, jobs: 40, targetMs: 75_000 });
    t.match(chaosSizes('backlog', true), { parked: 10_000, jobs: 100, targetMs: 75_000 });
  },
);

t.test('the CLI: --help exits 0; bad arguments exit 2 naming the problem', async (t) => {
  const help = run('--help');
  t.equal(help.status, 0);
  t.match(help.stdout, /usage: chaos/);
  const unknown = run('--scenario', 'nope');
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown chaos scenario 'nope'/);
  const settle = run('--settle-seconds', '-5');
  t.equal(settle.status, 2);
  t.match(settle.stderr, /--settle-seconds/);
  const flag = run('--bogus');
  t.equal(flag.status, 2);
  t.match(flag.stderr, /usage: chaos/);
});
