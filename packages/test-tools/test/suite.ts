// Every *.test.ts of this package in one tap process, one file after the other
// (docs/testing.md, "One process per package"). One file alone: npx tap test/<file>.test.ts
import t from 'tap';
import { importTestFiles } from '@feedlyai/test-helpers';

// The files are imported inside a test, so that tap's root test does not end (and run the files'
// teardowns) while a file's top level is still running; their tests run after this one, in order.
t.test('the test files of this package', async (t) => {
  const files = await importTestFiles(import.meta.dirname);
  t.ok(files.length > 0, `${files.length} files imported`);
});
