// The harness lives in @feedlyai/test-helpers (docs/testing.md); `@feedlyai/test-tools/db` re-exports it.
export * from '@feedlyai/test-helpers';
