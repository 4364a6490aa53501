export * from './steps.js';
export * from './inputCaps.js';
export * from './db.js';
export * from './envFile.js';
export {
  appliedMigration,
  CORE_MIGRATION_SET,
  LATEST_MIGRATION,
  latestMigration,
  migrate,
  type MigrateOptions,
  type MigrateResult,
  type MigrationSet,
} from './migrate.js';
export { MIGRATIONS, type Migration } from './migrations/index.js';
export * from './sql/stage.js';
export * from './sql/types.js';
export * from './sql/subject.js';
export * from './sql/claimVariant.js';
export * from './sql/claimFanIn.js';
export * from './sql/claimJobNext.js';
export * from './sql/redispatchStep.js';
export * from './sql/readSubject.js';
export * from './sql/instances.js';
export * from './sql/retryStep.js';
export * from './sql/rescueStep.js';
export * from './sql/giveUp.js';
export * from './sql/recoveryScan.js';
export * from './sql/stepRuns.js';
export * from './sql/cancelJob.js';
export * from './sql/retryJob.js';
export * from './sql/retryFailedJobs.js';
export * from './notifications.js';
export * from './semaphore.js';
export * from './logger.js';
export { parseRetryAfter, DEADLINE_HEADER, StageClient, type StageCall } from './engine/stage-client.js';
export {
  decide,
  targetStep,
  type Decision,
  type DecideContext,
  type RowFacts,
  type WaitReason,
} from './engine/decide.js';
export { classifyAnswer, needsReread, isJobNotFound, type AnswerAction, type StageAnswer } from './engine/answers.js';
export { CircuitBreaker, type CircuitState, type BreakerOptions } from './engine/breaker.js';
export type { CircuitSnapshot } from './engine/circuits.js';
export { isConnectionError } from './engine/durable.js';
export { DEADLINE_GRACE_MS } from './engine/dispatch.js';
export {
  ENGINE_TRACER_NAME,
  jobRootSpanId,
  jobSpanContext,
  jobTraceContext,
  jobTraceId,
  TRACE_ATTRIBUTES,
} from './engine/tracing.js';
export * from './engine.js';
