/**
 * .env.example at the repository root lists every environment variable any
 * part of the workspace reads: the sources (and tests) are scanned for reads
 * of the environment, and each name must appear in the file.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** Set by the system or the test runner, or handed between the test helpers' own processes: not settings. */
const NOT_SETTINGS = new Set(['PATH', 'TAP', 'NODE_OPTIONS', 'FEEDLY_TEST_EXTERNAL_URL']);

const READS = [
  /process\.env\.([A-Z][A-Z0-9_]+)/g,
  /process\.env\[['"]([A-Z][A-Z0-9_]+)['"]\]/g,
  /\benv\??\.([A-Z][A-Z0-9_]+)/g,
  /\b(?:envOr|envBool|envInt|envDurationMs|raw)\(\s*env,\s*'([A-Z][A-Z0-9_]+)'/g,
];

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (['node_modules', 'dist', 'fixtures', '.tap', 'test-output'].includes(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(p)));
    else if (/\.(ts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

t.test('every variable read anywhere is in .env.example', async (t) => {
  const example = await readFile(join(ROOT, '.env.example'), 'utf8');
  const listed = new Set([...example.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]));
  const found = new Map<string, string>();
  const files: string[] = [];
  for (const group of ['packages', 'apps']) {
    for (const pkg of await readdir(join(ROOT, group))) files.push(...(await sources(join(ROOT, group, pkg))));
  }
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    for (const re of READS) for (const m of text.matchAll(re)) found.set(m[1] as string, file);
    // The model endpoints: envOr(env, `${prefix}_BASE_URL`) for each endpointFromEnv(env, 'VLM' | 'LLM', ...).
    const prefixes = [...text.matchAll(/endpointFromEnv\(env, '([A-Z]+)'/g)].map((m) => m[1]);
    for (const m of text.matchAll(/`\$\{prefix\}_([A-Z_]+)`/g)) {
      for (const p of prefixes) found.set(`${p}_${m[1]}`, file);
    }
  }
  t.ok(found.size > 40, `the scan finds the variables (${found.size})`);
  for (const name of [
    'DATABASE_URL',
    'VLM_TIMEOUT_MS',
    'LLM_BASE_URL',
    'STAGE_CONCURRENCY_OCR',
    'PIPELINE_FANIN_POLICY',
  ]) {
    t.ok(found.has(name), `the scan sees ${name}`);
  }
  const missing = [...found.keys()].filter((n) => !NOT_SETTINGS.has(n) && !listed.has(n)).sort();
  t.same(
    missing.map((n) => `${n} (read in ${found.get(n)?.slice(ROOT.length)})`),
    [],
    'every one has a line in .env.example',
  );
});
