/**
 * The plugin's face (docs/integration.md): it reads the environment only
 * through optionsFromEnv, and touches a host's pool or client only through
 * pg's public API (connect, query, release, on, idleCount), never its
 * internals, so a pool from any copy or version of `pg` works.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { optionsFromEnv, resolveConfig } from '../src/index.js';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

async function sources(): Promise<Array<{ file: string; text: string }>> {
  const files = (await readdir(SRC)).filter((f) => f.endsWith('.ts'));
  return Promise.all(files.map(async (file) => ({ file, text: await readFile(join(SRC, file), 'utf8') })));
}

/** The source without comments, so that a comment naming process.env does not count. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');
}

t.test('process.env is read in optionsFromEnv only', async (t) => {
  const reads: string[] = [];
  for (const { file, text } of await sources()) {
    for (const [i, line] of code(text).split('\n').entries()) {
      if (/process\.env/.test(line) && !/export function optionsFromEnv\(/.test(line)) reads.push(`${file}:${i + 1}`);
    }
  }
  t.same(reads, [], 'no other read of process.env in src/');
});

t.test("no pg internals: no private fields, options, streams or a pool's client lists", async (t) => {
  const internals =
    /\.(_clients|_idle|_pendingQueue|_connecting|_connected|_ending|_ended|_queryable|_types|connectionParameters|activeQuery|queryQueue)\b|\.options\b|connection\.stream|\.connection\.\w/;
  const found: string[] = [];
  for (const { file, text } of await sources()) {
    for (const [i, line] of code(text).split('\n').entries())
      if (internals.test(line)) found.push(`${file}:${i + 1}: ${line.trim()}`);
  }
  t.same(found, []);
});

t.test('without the env option the plugin reads process.env; with it, only the given environment', async (t) => {
  const saved = process.env.PIPELINE_FANIN_POLICY;
  process.env.PIPELINE_FANIN_POLICY = 'any';
  t.teardown(() => {
    if (saved === undefined) delete process.env.PIPELINE_FANIN_POLICY;
    else process.env.PIPELINE_FANIN_POLICY = saved;
  });
  t.equal(resolveConfig({}).fanInPolicy, 'any', 'process.env by default');
  t.equal(optionsFromEnv().fanInPolicy, 'any');
  t.equal(resolveConfig({ env: {} }).fanInPolicy, 'all', 'the env option replaces process.env');
  t.equal(resolveConfig({ env: {}, fanInPolicy: 'any' }).fanInPolicy, 'any', 'options override the environment');
});
