export {
  default,
  jobStateListener,
  type JobStateListener,
  type JobStateListenerStatus,
  type NotificationSubscriber,
} from './plugin.js';
export {
  ConfigError,
  type EnvOptions,
  type JobStateListenerOptions,
  type PoolLike,
  optionsFromEnv,
  listenerOptionsSchema,
  type ResolvedConfig,
  resolveConfig,
} from './config.js';
export { APPLICATION_NAME, JOB_CHANNEL, ListenConnection, VARIANT_CHANNEL } from './listen-connection.js';
