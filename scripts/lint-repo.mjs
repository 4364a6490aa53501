#!/usr/bin/env node
/**
 * Repository rules that biome cannot check (docs/testing.md, "Repository
 * rules"); `pnpm lint` runs this after biome. Each rule guards a fix that
 * would otherwise quietly come undone:
 *
 * - every package.json (the root's and each workspace package's) is
 *   `private: true` with `license: "UNLICENSED"` (or a LICENSE file beside
 *   it), has `engines.node`, and, for a package, a `files` list;
 * - the libraries a host passes its pool to take `pg` as a peer dependency
 *   (never also as a dependency: two copies of pg in one host);
 * - no package declares `@sinclair/typebox` (the validator is `typebox`);
 * - no source or test comment cites CONTRACTS (users have `docs/`, not it);
 * - pipeline-core's index names its exports (no `export *`);
 * - no file imports another package's files by relative path (a workspace
 *   dependency is imported by its name);
 * - no test assertion is made true by `|| true`.
 *
 *   node scripts/lint-repo.mjs [--root DIR]
 *
 * Prints each broken rule with the file (and line), exits 1 if any, else
 * prints one line and exits 0.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { root: { type: 'string' } }, strict: true });
const root = values.root ?? join(import.meta.dirname, '..');

/** Libraries a host hands its own pg.Pool to (docs/integration.md). */
const POOL_LIBRARIES = ['pipeline-core', 'listener-plugin', 'pipeline-views', 'dashboard'];
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', '.turbo', 'coverage', '.tap']);
const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/;

const problems = [];
const problem = (file, line, message) => problems.push(`${relative(root, file)}${line ? `:${line}` : ''}: ${message}`);

function packageDirs() {
  const dirs = [];
  for (const group of ['packages', 'apps']) {
    const base = join(root, group);
    if (!existsSync(base)) continue;
    for (const name of readdirSync(base).sort()) {
      if (existsSync(join(base, name, 'package.json'))) dirs.push(join(base, name));
    }
  }
  return dirs;
}

function* sourceFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP_DIRS.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (SOURCE.test(entry.name) && statSync(path).size < 2_000_000) yield path;
  }
}

function checkManifest(dir, isRoot) {
  const file = join(dir, 'package.json');
  const pkg = JSON.parse(readFileSync(file, 'utf8'));
  if (pkg.private !== true) problem(file, 0, 'not "private": true');
  if (pkg.license !== 'UNLICENSED' && !existsSync(join(dir, 'LICENSE'))) {
    problem(file, 0, `license ${JSON.stringify(pkg.license)}: "UNLICENSED" (private), or a LICENSE file beside it`);
  }
  if (!pkg.engines?.node) problem(file, 0, 'no engines.node');
  if (!isRoot && !(Array.isArray(pkg.files) && pkg.files.length > 0)) problem(file, 0, 'no "files" list');
  for (const field of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
    if (pkg[field]?.['@sinclair/typebox']) problem(file, 0, `${field} has @sinclair/typebox: the validator is typebox`);
  }
  const short = pkg.name?.replace(/^@feedlyai\//, '');
  if (POOL_LIBRARIES.includes(short)) {
    if (!pkg.peerDependencies?.pg) problem(file, 0, 'pg must be a peer dependency (a host passes its own pool)');
    if (pkg.dependencies?.pg) problem(file, 0, 'pg is also a dependency: a host would get a second copy');
  }
}

checkManifest(root, true);
const packages = packageDirs();
for (const dir of packages) checkManifest(dir, false);

const packageNames = packages.map((d) => d.split('/').pop());
const relativeImport = new RegExp(
  `(?:from\\s+|import\\s*\\(\\s*|require\\s*\\(\\s*)['"](?:\\.\\./)+(?:packages/|apps/)?(${packageNames.join('|')})/`,
);
const indexFile = join(root, 'packages', 'pipeline-core', 'src', 'index.ts');

for (const dir of [...packages, join(root, 'scripts')]) {
  if (!existsSync(dir)) continue;
  const own = dir.split('/').pop();
  for (const file of sourceFiles(dir)) {
    if (file === join(root, 'scripts', 'lint-repo.mjs')) continue;
    const lines = readFileSync(file, 'utf8').split('\n');
    const isTest = /\/test\//.test(relative(root, file));
    lines.forEach((text, i) => {
      if (/\bCONTRACTS\b/.test(text)) problem(file, i + 1, 'cites CONTRACTS: point to the page in docs/ instead');
      const m = relativeImport.exec(text);
      if (m && m[1] !== own) problem(file, i + 1, `imports ${m[1]} by relative path: import @feedlyai/${m[1]}`);
      if (isTest && /\|\|\s*true\s*\)/.test(text)) problem(file, i + 1, '`|| true`: an assertion that cannot fail');
      if (file === indexFile && /^\s*export\s*\*/.test(text)) problem(file, i + 1, '`export *`: name the exports');
    });
  }
}

if (problems.length > 0) {
  process.stderr.write(`lint-repo: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write(
  `lint-repo: ${packages.length + 1} package.json files and their sources follow the repository rules\n`,
);
