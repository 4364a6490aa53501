/**
 * The names migration 0001 (0001_core.ts) gives its notify triggers, the
 * channels they NOTIFY on, and the `application_name` of the connections that
 * LISTEN to them (docs/notifications.md). The SQL of 0001 spells the same
 * names (a released migration is never edited); test/migrate.test.ts checks
 * that the installed triggers and functions use exactly these.
 */

/** Channel of the variant trigger: one payload per change of a jobs_variants row's current_step or status. */
export const VARIANT_CHANNEL = 'job_variant_state_changed';

/** Channel of the job trigger: one payload per change of a jobs row's current_step or status. */
export const JOB_CHANNEL = 'job_state_changed';

/** The notify triggers: table, trigger, function, channel. */
export const NOTIFY_TRIGGERS = [
  {
    table: 'jobs_variants',
    trigger: 'job_variant_state_change_trigger',
    fn: 'notify_job_variant_state_change',
    channel: VARIANT_CHANNEL,
  },
  { table: 'jobs', trigger: 'job_state_change_trigger', fn: 'notify_job_state_change', channel: JOB_CHANNEL },
] as const;

/**
 * application_name of the listener's LISTEN connection, so an operator finds
 * it in pg_stat_activity; instances are judged alive by these connections
 * (docs/healing.md).
 */
export const LISTENER_APPLICATION_NAME = 'job_state_listener';

/**
 * application_name of the dashboard's own LISTEN connection (packages/dashboard):
 * a different name, so it never counts as a listener instance.
 */
export const DASHBOARD_APPLICATION_NAME = 'pipeline_dashboard';
