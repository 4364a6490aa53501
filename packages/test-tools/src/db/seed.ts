// The seed helpers live in @feedlyai/test-helpers, shared with every package's tests.
export {
  jobState,
  markImgGenDone,
  type RowStateSnapshot,
  type SeededJob,
  type SeedJobOptions,
  seedJob,
  variantState,
} from '@feedlyai/test-helpers';
