#!/usr/bin/env node
/**
 * Runs every workspace package's `test` script, three packages at a time,
 * the longest first (docs/testing.md, "What a test run costs").
 *
 *   node scripts/test.mjs [--lanes N] [--filter NAME]...   (--lanes: default 3)
 *
 * `pnpm test` calls this after `turbo run build`. Turbo ran the tests before;
 * it starts ready tasks in the order its graph walk finds them, which put the
 * longest package (the bench package, whose chaos suite and benchmarks take
 * minutes) last, so the run ended with one package running alone. Here the
 * order is fixed: the packages in LONGEST_FIRST, then any other, each started
 * as soon as a lane is free.
 *
 * Each output line is prefixed `<package>:test: ` (as turbo did; .ci/run reads
 * tap's summaries through it). At the end: one line per package with its time
 * and exit code, `[test] <package> <seconds> s exit <code>`. Exit code: 0 when
 * every package passed, else 1. Every package runs even after one failed.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

/** Longest first, as measured on a 2-core machine (docs/testing.md): the bench package alone is about half the run. */
const LONGEST_FIRST = [
  '@feedlyai/bench',
  '@feedlyai/stage-api',
  '@feedlyai/listener-plugin',
  '@feedlyai/test-tools',
  '@feedlyai/dashboard',
  '@feedlyai/test-helpers',
  '@feedlyai/pipeline-core',
  '@feedlyai/pipeline-views',
  '@feedlyai/storage',
];

const root = join(import.meta.dirname, '..');

function usage(message) {
  process.stderr.write(`${message}\nusage: node scripts/test.mjs [--lanes N] [--filter NAME]...\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      lanes: { type: 'string', default: '3' },
      filter: { type: 'string', multiple: true, default: [] },
    },
    strict: true,
  }));
} catch (err) {
  usage(err.message);
}
const lanes = Number(values.lanes);
if (!Number.isInteger(lanes) || lanes < 1) usage(`--lanes: expected a positive integer, got '${values.lanes}'`);

/** Workspace packages with a test script: { name, dir }. */
function workspacePackages() {
  const found = [];
  for (const group of ['packages', 'apps']) {
    for (const entry of readdirSync(join(root, group), { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = join(root, group, entry.name);
      let pkg;
      try {
        pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      } catch {
        continue;
      }
      if (pkg.scripts?.test) found.push({ name: pkg.name, dir });
    }
  }
  const rank = (name) => {
    const i = LONGEST_FIRST.indexOf(name);
    return i === -1 ? LONGEST_FIRST.length : i;
  };
  return found.sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
}

let queue = workspacePackages();
if (values.filter.length) {
  const unknown = values.filter.filter((f) => !queue.some((p) => p.name === f || p.name === `@feedlyai/${f}`));
  if (unknown.length) usage(`--filter: no package named ${unknown.join(', ')}`);
  queue = queue.filter((p) => values.filter.some((f) => p.name === f || p.name === `@feedlyai/${f}`));
}

function prefixLines(stream, prefix, out) {
  createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
    out.write(`${prefix}${line}\n`);
  });
}

/** Runs one package's test script; resolves with its exit code and seconds. */
function runPackage({ name, dir }) {
  const started = performance.now();
  const child = spawn('pnpm', ['run', '--silent', 'test'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  prefixLines(child.stdout, `${name}:test: `, process.stdout);
  prefixLines(child.stderr, `${name}:test: `, process.stderr);
  return new Promise((resolve) => {
    child.on('error', (err) => {
      process.stderr.write(`${name}:test: could not start pnpm: ${err.message}\n`);
      resolve({ name, code: 1, seconds: 0 });
    });
    child.on('close', (code, signal) =>
      resolve({ name, code: code ?? (signal ? 1 : 0), seconds: Math.round((performance.now() - started) / 1000) }),
    );
  });
}

const results = [];
async function lane() {
  for (let next = queue.shift(); next; next = queue.shift()) {
    process.stdout.write(`[test] ${next.name} started\n`);
    results.push(await runPackage(next));
  }
}
await Promise.all(Array.from({ length: Math.min(lanes, queue.length) }, lane));

for (const r of results) process.stdout.write(`[test] ${r.name} ${r.seconds} s exit ${r.code}\n`);
process.exitCode = results.every((r) => r.code === 0) ? 0 : 1;
