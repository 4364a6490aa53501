/**
 * @feedlyai/pipeline-core: the public surface, named (docs/architecture.md).
 * Only what the other packages of the workspace use and what docs/ documents;
 * everything else is internal. The whole step graph is also
 * `@feedlyai/pipeline-core/steps`.
 */

// The step graph (docs/state-machine.md).
export {
  AUTOMATIC_STEPS,
  FAN_IN_FROM,
  FAN_IN_TO,
  FINAL_STEP,
  isJobLevel,
  isStep,
  JOB_STEPS,
  nextStep,
  prevStep,
  progressIndex,
  type RetryPolicy,
  routeOf,
  STATUSES,
  STEP_GRAPH,
  STEPS,
  type Status,
  type Step,
  type StepDefinition,
  stepForRoute,
  type StepPolicyOverrides,
  VARIANT_STEPS,
} from './steps.js';

// Input limits the seeders and the stage server share (docs/stage-api.md).
export { type CappedInput, charLength, INPUT_CAPS, inputCapViolations } from './inputCaps.js';

// Database and environment (docs/configuration.md, docs/cli.md).
export { databaseUrlFromEnv, type Queryable, redactUrl, withTransaction } from './db.js';
export { EnvFileError, type LoadedEnv, type LoadEnvOptions, loadEnv } from './envFile.js';

// Migrations (docs/migrations.md).
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
export type { Migration } from './migrations/index.js';

// Notifications: channels, triggers, application names, payloads (docs/notifications.md).
export {
  DASHBOARD_APPLICATION_NAME,
  JOB_CHANNEL,
  LISTENER_APPLICATION_NAME,
  NOTIFY_TRIGGERS,
  VARIANT_CHANNEL,
} from './migrations/channels.js';
export {
  type JobNotification,
  type ParseResult,
  parseJobNotification,
  parseVariantNotification,
  type VariantNotification,
} from './notifications.js';

// The stage's guarded transitions (docs/state-machine.md) and its deadline header (docs/stage-api.md).
export {
  type RowState,
  type StageSubject,
  type StartResult,
  stageFinishDone,
  stageFinishFailed,
  stageReadBack,
  stageStart,
} from './sql/stage.js';
export { DEADLINE_HEADER } from './engine/stage-client.js';

// Manual control (docs/cli.md, docs/cli-retry.md).
export { type CancelResult, cancelJob } from './sql/cancelJob.js';
export { type RetryJobOptions, type RetryJobResult, retryJob } from './sql/retryJob.js';
export {
  REASON_LIKE_MAX_LENGTH,
  RETRY_FAILED_MAX_LIMIT,
  type RetryFailedJobsOptions,
  type RetryFailedJobsResult,
  retryFailedJobs,
} from './sql/retryFailedJobs.js';

// The instance registry (docs/healing.md).
export { deregisterInstance, observeInstances, registerInstance } from './sql/instances.js';

// The engine (docs/integration.md, docs/healing.md).
export type { EngineLogger } from './logger.js';
export { Semaphore } from './semaphore.js';
export {
  createPipelineEngine,
  type EngineEventName,
  type EngineEvents,
  type EngineStatus,
  type JobEvent,
  type JobFinishedEvent,
  PipelineEngine,
  type PipelineEngineOptions,
  type RecoverResult,
  type StepEvent,
} from './engine.js';

// Tracing (docs/tracing.md).
export { jobRootSpanId, jobTraceContext, jobTraceId, TRACE_ATTRIBUTES } from './engine/tracing.js';
