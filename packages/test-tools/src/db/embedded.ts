// The embedded PostgreSQL lives in @feedlyai/test-helpers (no workspace dependency there, so no cycle).
export {
  type EmbeddedOptions,
  type EmbeddedServer,
  FAST_UNSAFE_SETTINGS,
  freePort,
  startEmbeddedPostgres,
} from '@feedlyai/test-helpers';
