/**
 * Children of a test run without tap's process tracker when coverage is off
 * (src/child-env.ts): it costs about 1 s of CPU per child and is only there
 * for coverage.
 */
import { spawn } from 'node:child_process';
import t from 'tap';
import { STRIPS_PROCESS_TRACKER, withoutProcessTracker } from '../src/index.js';

const TRACKER =
  '--import=file:///x/node_modules/.pnpm/@tapjs+processinfo@3.1.12/node_modules/@tapjs/processinfo/dist/esm/import.mjs';

t.test('withoutProcessTracker takes out the tracker and keeps every other option', async (t) => {
  t.equal(
    withoutProcessTracker(`--max-old-space-size=512 ${TRACKER} --enable-source-maps`),
    '--max-old-space-size=512 --enable-source-maps',
  );
  t.equal(withoutProcessTracker(`"${TRACKER}"`), undefined, 'quoted, alone: nothing left');
  t.equal(withoutProcessTracker('--import=tsx'), '--import=tsx', 'another --import stays');
  t.equal(withoutProcessTracker(undefined), undefined);
});

t.test('a node child spawned by a test has no tracker, and keeps its own NODE_OPTIONS', async (t) => {
  t.equal(STRIPS_PROCESS_TRACKER, true, 'this package runs tap with coverage off');
  t.match(
    process.env.NODE_OPTIONS ?? '',
    /@tapjs[\\/]processinfo/,
    'the test process itself has it (tap put it there)',
  );
  const child = spawn(
    process.execPath,
    ['-e', 'process.stdout.write(JSON.stringify({ o: process.env.NODE_OPTIONS ?? null, hooks: process.execArgv }))'],
    {
      env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=300` },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await new Promise((r) => child.on('close', r));
  const seen = JSON.parse(out) as { o: string | null };
  t.notMatch(seen.o ?? '', /processinfo/, 'no tracker in the child');
  t.match(seen.o ?? '', /--max-old-space-size=300/, 'its own option kept');
});
