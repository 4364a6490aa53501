/**
 * Runs one TypeScript measurement script of this folder with the TypeScript
 * loader the tests use (tap's @tapjs/typescript), e.g. from apps/stage-api:
 *
 *   node test/measure/run-ts.mjs test/measure/burst.ts [args...]
 *
 * The loader is a dependency of tap (installed at the repository root), not
 * of this package, so it is found next to tap. It is given to a child node
 * with --import so that the worker threads of the CPU pool load it too.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [script, ...args] = process.argv.slice(2);
if (!script) {
  process.stderr.write('usage: node test/measure/run-ts.mjs <script.ts> [args...]\n');
  process.exit(2);
}
const tapDir = dirname(createRequire(join(process.cwd(), 'noop.js')).resolve('tap/package.json'));
const loader = pathToFileURL(join(tapDir, '..', '@tapjs', 'typescript', 'dist', 'esm', 'import.mjs')).href;
const child = spawn(process.execPath, ['--import', loader, script, ...args], { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
