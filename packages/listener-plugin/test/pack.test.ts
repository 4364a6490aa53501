// Every package packs (its files list, its entry points, engines and licence).
// What a host installs: `pnpm pack` of pipeline-core and listener-plugin,
// installed offline (`pnpm install --offline`, packages from the pnpm store)
// into a scratch Fastify app in a temporary folder, which migrates, registers
// the plugin with a connection string to this file's database, boots and
// closes (docs/integration.md).
//
// Offline resolution needs a lockfile: the scratch app's is made from the
// workspace's (the same versions the workspace installed, so the store has
// them), plus the two tarballs.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import YAML from 'yaml';
import { testDb } from './helpers.js';

const run = promisify(execFile);
const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
/** The packages a host needs, by workspace folder. */
const PACKED = ['packages/pipeline-core', 'packages/listener-plugin'] as const;
/** What the scratch app depends on besides the tarballs, with the version the listener plugin's tests use. */
const HOST_DEPS = ['fastify', 'pg'] as const;

interface Manifest {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  engines?: Record<string, string>;
  license?: string;
}
interface ImporterDep {
  specifier: string;
  version: string;
}
interface Importer {
  dependencies?: Record<string, ImporterDep>;
  devDependencies?: Record<string, ImporterDep>;
  optionalDependencies?: Record<string, ImporterDep>;
}
interface Lockfile {
  lockfileVersion: string;
  settings?: unknown;
  importers: Record<string, Importer>;
  packages: Record<string, unknown>;
  snapshots: Record<string, unknown>;
}

function resolved(importer: Importer, name: string): string | undefined {
  return (importer.dependencies?.[name] ?? importer.devDependencies?.[name] ?? importer.optionalDependencies?.[name])
    ?.version;
}

async function pnpm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await run('pnpm', args, { cwd, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

const db = await testDb();
t.teardown(() => db.close());

/** The workspace's packages, by folder (packages/*, apps/*). */
async function workspaceFolders(): Promise<string[]> {
  const folders: string[] = [];
  for (const group of ['packages', 'apps']) {
    for (const name of (await readdir(join(ROOT, group))).sort()) {
      const manifest = await readFile(join(ROOT, group, name, 'package.json'), 'utf8').catch(() => null);
      if (manifest) folders.push(`${group}/${name}`);
    }
  }
  return folders;
}

/** Every path a manifest points at: main, types, exports (any condition), bin. */
function entryPoints(m: Record<string, unknown>): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.push(v.replace(/^\.\//, ''));
    else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  walk(m.main);
  walk(m.types);
  walk(m.exports);
  walk(m.bin);
  return out;
}

t.test('every package packs: only its files list, every entry point inside, engines and licence', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'feedly-pack-all-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const folders = await workspaceFolders();
  t.ok(folders.length >= 9, `${folders.length} packages`);
  // pnpm pack, a few at a time (each is a pnpm process).
  const listings = new Map<string, { manifest: Record<string, unknown>; packed: Manifest; paths: string[] }>();
  for (let i = 0; i < folders.length; i += 3) {
    await Promise.all(
      folders.slice(i, i + 3).map(async (folder) => {
        const out = join(dir, folder.replace('/', '-'));
        const manifest = JSON.parse(await readFile(join(ROOT, folder, 'package.json'), 'utf8'));
        await pnpm(['pack', '--pack-destination', out], join(ROOT, folder));
        const [file] = await readdir(out);
        if (!file) throw new Error(`pnpm pack wrote no tarball for ${folder}`);
        const { stdout } = await run('tar', ['-tzf', join(out, file)], { maxBuffer: 16 * 1024 * 1024 });
        const packed = JSON.parse((await run('tar', ['-xOzf', join(out, file), 'package/package.json'])).stdout);
        listings.set(folder, { manifest, packed, paths: stdout.split('\n').filter(Boolean) });
      }),
    );
  }
  for (const folder of folders) {
    const { manifest, packed, paths } = listings.get(folder) as {
      manifest: Record<string, unknown>;
      packed: Manifest & Record<string, unknown>;
      paths: string[];
    };
    const name = manifest.name as string;
    const allowed = [...(manifest.files as string[]), 'package.json', 'README.md', 'LICENSE'];
    const stray = paths.filter(
      (p) => !allowed.some((f) => p === `package/${f}` || p.startsWith(`package/${f.replace(/\/$/, '')}/`)),
    );
    t.same(stray, [], `${name}: nothing outside its files list`);
    t.same(
      paths.filter((p) => /\/test\/|\.test\.|(?<!\.d)\.ts$|\.tsbuildinfo$/.test(p)),
      [],
      `${name}: no tests, TypeScript sources or build info`,
    );
    t.ok(
      paths.some((p) => p.startsWith('package/dist/') && p.endsWith('.js')),
      `${name}: built code in dist/`,
    );
    const missing = entryPoints(manifest).filter((e) => !paths.includes(`package/${e}`));
    t.same(missing, [], `${name}: every entry point (main, types, exports, bin) is in the tarball`);
    t.match(
      packed,
      { private: true, license: 'UNLICENSED', engines: { node: /^>=20/ } },
      `${name}: private, licence, engines`,
    );
    const specs = ['dependencies', 'peerDependencies', 'optionalDependencies'].flatMap((k) =>
      Object.values((packed[k] as Record<string, string> | undefined) ?? {}),
    );
    t.same(
      specs.filter((v) => v.startsWith('workspace:')),
      [],
      `${name}: workspace: versions replaced by real ones`,
    );
  }
});

t.test('the packed plugin installs offline into a scratch Fastify app, registers and boots', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'feedly-pack-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  // 1. pnpm pack each package (workspace:* becomes the version).
  const tarballs = new Map<string, { spec: string; file: string; manifest: Manifest; folder: string }>();
  for (const folder of PACKED) {
    const manifest = JSON.parse(await readFile(join(ROOT, folder, 'package.json'), 'utf8')) as Manifest;
    await pnpm(['pack', '--pack-destination', dir], join(ROOT, folder));
    const file = (await readdir(dir)).find(
      (f) => f === `${manifest.name.replace('@', '').replace('/', '-')}-${manifest.version}.tgz`,
    );
    if (!file) throw new Error(`pnpm pack wrote no tarball for ${manifest.name}`);
    const { stdout: listing } = await run('tar', ['-tzf', join(dir, file)]);
    const paths = listing.split('\n').filter(Boolean);
    t.ok(
      paths.every((p) => /^package\/(dist\/|package\.json$|README\.md$)/.test(p)),
      `${manifest.name}: only dist/, package.json and README.md in the tarball`,
    );
    t.ok(paths.includes('package/dist/index.js'), `${manifest.name}: built code in it`);
    const packed = JSON.parse(
      (await run('tar', ['-xOzf', join(dir, file), 'package/package.json'])).stdout,
    ) as Manifest;
    t.match(packed, { engines: { node: '>=20.18' }, license: 'UNLICENSED' }, `${manifest.name}: engines and licence`);
    t.equal(packed.dependencies?.pg, undefined, `${manifest.name}: pg is not a dependency`);
    t.ok(packed.peerDependencies?.pg, `${manifest.name}: pg is a peer dependency`);
    tarballs.set(manifest.name, { spec: `file:${file}`, file, manifest: packed, folder });
  }

  // 2. The scratch app's lockfile, from the workspace's.
  const workspace = YAML.parse(await readFile(join(ROOT, 'pnpm-lock.yaml'), 'utf8')) as Lockfile;
  const pluginImporter = workspace.importers['packages/listener-plugin'] as Importer;
  const lock: Lockfile = {
    lockfileVersion: workspace.lockfileVersion,
    settings: workspace.settings,
    importers: { '.': { dependencies: {} } },
    packages: { ...workspace.packages },
    snapshots: { ...workspace.snapshots },
  };
  const appDeps: Record<string, string> = {};
  const hostVersions = new Map<string, string>();
  for (const name of HOST_DEPS) {
    const dep = pluginImporter.devDependencies?.[name] ?? pluginImporter.dependencies?.[name];
    if (!dep) throw new Error(`the listener plugin's lockfile entry has no ${name}`);
    appDeps[name] = dep.specifier;
    hostVersions.set(name, dep.version);
    (lock.importers['.'] as Importer).dependencies![name] = dep;
  }
  for (const [name, tb] of tarballs) {
    appDeps[name] = tb.spec;
    (lock.importers['.'] as Importer).dependencies![name] = { specifier: tb.spec, version: tb.spec };
    const importer = workspace.importers[tb.folder] as Importer;
    const deps: Record<string, string> = {};
    for (const dep of Object.keys(tb.manifest.dependencies ?? {})) {
      const other = tarballs.get(dep);
      const version = other ? other.spec : resolved(importer, dep);
      if (!version || version.startsWith('link:')) throw new Error(`${name}: no version of ${dep} in the lockfile`);
      deps[dep] = version;
    }
    // Peers resolve to the host's copies (prom-client, optional, is not installed).
    for (const peer of Object.keys(tb.manifest.peerDependencies ?? {})) {
      const version = hostVersions.get(peer);
      if (version) deps[peer] = version;
      else if (!tb.manifest.peerDependenciesMeta?.[peer]?.optional) throw new Error(`${name}: peer ${peer} not given`);
    }
    const integrity = `sha512-${createHash('sha512')
      .update(await readFile(join(dir, tb.file)))
      .digest('base64')}`;
    lock.packages[`${name}@${tb.spec}`] = {
      resolution: { integrity, tarball: tb.spec },
      version: tb.manifest.version,
      ...(tb.manifest.peerDependencies ? { peerDependencies: tb.manifest.peerDependencies } : {}),
      ...(tb.manifest.peerDependenciesMeta ? { peerDependenciesMeta: tb.manifest.peerDependenciesMeta } : {}),
    };
    lock.snapshots[`${name}@${tb.spec}`] = { dependencies: deps };
  }
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'scratch-host', private: true, type: 'module', dependencies: appDeps }, null, 2),
  );
  await writeFile(join(dir, 'pnpm-lock.yaml'), YAML.stringify(lock));

  // 3. Install offline from the workspace's store.
  const store = (await pnpm(['store', 'path'], ROOT)).trim();
  await pnpm(['install', '--offline', '--frozen-lockfile', '--store-dir', store, '--reporter', 'silent'], dir);
  const copies = (await readdir(join(dir, 'node_modules', '.pnpm'))).filter((d) => /^pg@/.test(d));
  t.same(copies.length, 1, `one copy of pg (the host's): ${copies.join(', ')}`);

  // 4. A host app: migrate with pipeline-core, register the plugin (both exports), boot, close.
  await writeFile(
    join(dir, 'server.mjs'),
    `import { migrate } from '@feedlyai/pipeline-core';
import jobStateListener, { jobStateListener as named } from '@feedlyai/listener-plugin';
import Fastify from 'fastify';

if (jobStateListener !== named) throw new Error('the default and named exports differ');
const url = process.argv[2];
const m = await migrate(url);
const app = Fastify({ logger: false });
await app.register(jobStateListener, { connectionString: url, env: {}, stageApiUrl: 'http://127.0.0.1:9' });
await app.ready();
const s = app.jobStateListener.status();
await app.close();
console.log(JSON.stringify({ current: m.current, enabled: s.enabled, connected: s.connected }));
`,
  );
  const { stdout } = await run(process.execPath, ['server.mjs', db.url], { cwd: dir, timeout: 60_000 });
  const out = JSON.parse(stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
  t.match(out, { enabled: true, connected: true }, 'the scratch host booted with the plugin connected');
  t.ok((out.current as number) > 0, 'pipeline-core migrated (nothing left to apply)');
});
