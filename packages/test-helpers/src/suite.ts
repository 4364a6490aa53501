/**
 * One test process per package (docs/testing.md, "One process per package").
 *
 * A package's `test/suite.ts` calls `importTestFiles(import.meta.dirname)`:
 * every `*.test.ts` under that folder is imported, one after the other, in
 * name order, into the one tap process of the suite, so tap's loaders, tap
 * itself and the package's imports are paid once instead of once per file
 * (about 3 CPU-s per file). Each file still gets its own database
 * (`testDb()`), closed when the process ends; a single file still runs on its
 * own with `npx tap test/<file>.test.ts`.
 */
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The `*.test.ts` files under `dir` (its subfolders too), sorted by their path. */
export function testFiles(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (e.name !== 'fixtures' && e.name !== 'node_modules') walk(join(d, e.name));
      } else if (e.name.endsWith('.test.ts')) {
        found.push(join(d, e.name));
      }
    }
  };
  walk(dir);
  return found.sort((a, b) => relative(dir, a).localeCompare(relative(dir, b)));
}

/** Imports every test file under `dir`, one after the other; returns their paths. */
export async function importTestFiles(dir: string): Promise<string[]> {
  const files = testFiles(dir);
  if (files.length === 0) throw new Error(`no *.test.ts file under ${dir}`);
  for (const file of files) await import(pathToFileURL(file).href);
  return files;
}
