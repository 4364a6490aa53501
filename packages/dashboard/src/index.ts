export { dashboard, default } from './plugin.js';
export { type DashboardHook, type DashboardOptions, DashboardOptionsError, type PoolLike } from './options.js';
export {
  isJobStatus,
  JOB_STATUSES,
  type JobStatus,
  jobStatusOf,
  progressOf,
  progressSegments,
  stepFilterKind,
} from './vocabulary.js';
export { DASHBOARD_APPLICATION_NAME } from './live/listen.js';
