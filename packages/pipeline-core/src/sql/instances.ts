/**
 * Instance registry (docs/healing.md, "who claimed what, and when an instance
 * is dead"). Every listener instance registers the backend pid of its LISTEN
 * connection on each (re)connect; peers compare the registered pids with the
 * live `job_state_listener` connections of pg_stat_activity and stamp
 * `lost_at` (database clock) on the instances whose connection is gone. An
 * instance lost for longer than `deadAfterMs`, or not registered at all, is
 * dead: its `queued` rows are re-dispatched by a live peer.
 *
 * The statements that read pg_backend_pid() run on the LISTEN connection
 * itself, so the pid is that connection's.
 */
import type { Queryable } from '../db.js';
import { LISTENER_APPLICATION_NAME } from '../migrations/channels.js';

/** application_name of every LISTEN connection (defined next to the triggers, docs/notifications.md). */
export { LISTENER_APPLICATION_NAME };

export interface RegisterArgs {
  instanceId: string;
  host: string;
  pid: number;
}

export interface Registration {
  listenerPid: number;
  /** Another live connection is registered under the same instance id (a configuration error). */
  conflict: { host: string | null; pid: number | null; listenerPid: number } | null;
}

/** Registers (or re-registers after a reconnect) this instance with the pid of the connection `db` is. */
export async function registerInstance(db: Queryable, a: RegisterArgs): Promise<Registration> {
  const { rows } = await db.query<{
    self: number;
    prev_pid: number | null;
    prev_host: string | null;
    prev_os_pid: number | null;
    prev_alive: boolean;
  }>(
    `WITH prev AS (
       SELECT i.listener_pid, i.host, i.pid,
              EXISTS (SELECT 1 FROM pg_stat_activity a
                       WHERE a.pid = i.listener_pid AND a.pid <> pg_backend_pid()
                         AND a.application_name = '${LISTENER_APPLICATION_NAME}') AS alive
         FROM pipeline_instances i WHERE i.instance_id = $1
     ), up AS (
       INSERT INTO pipeline_instances (instance_id, listener_pid, host, pid, registered_at, lost_at)
       VALUES ($1, pg_backend_pid(), $2, $3, now(), NULL)
       ON CONFLICT (instance_id) DO UPDATE
         SET listener_pid = EXCLUDED.listener_pid, host = EXCLUDED.host, pid = EXCLUDED.pid,
             registered_at = now(), lost_at = NULL
       RETURNING listener_pid
     )
     SELECT (SELECT listener_pid FROM up) AS self, p.listener_pid AS prev_pid, p.host AS prev_host,
            p.pid AS prev_os_pid, coalesce(p.alive, false) AS prev_alive
       FROM (SELECT 1) one LEFT JOIN prev p ON true`,
    [a.instanceId, a.host, a.pid],
  );
  const r = rows[0];
  if (!r) throw new Error('registerInstance: no row');
  const conflict =
    r.prev_alive && r.prev_pid !== null && (r.prev_host !== a.host || r.prev_os_pid !== a.pid)
      ? { host: r.prev_host, pid: r.prev_os_pid, listenerPid: r.prev_pid }
      : null;
  return { listenerPid: r.self, conflict };
}

export interface Observation {
  /** pg_backend_pid() of the connection the check ran on. */
  self: number;
  /** Backend pids of every live listener connection of this database, sorted. */
  pids: number[];
  /** Registered instances that are dead (lost for longer than deadAfterMs). */
  dead: string[];
  /** Registered instances that are not dead (this one included once registered). */
  live: string[];
}

/**
 * The liveness check: lists the live listener connections, stamps `lost_at` on
 * registered instances whose connection is gone (and clears it on those whose
 * connection is back), and reports which instances are dead, by the
 * database's clock. Writes only when something changed. Registrations dead
 * for a day are removed (their rows were re-dispatched long ago; an
 * unregistered claimer counts as dead anyway).
 */
export async function observeInstances(db: Queryable, deadAfterMs: number): Promise<Observation> {
  const { rows } = await db.query<{ self: number; pids: number[]; dead: string[]; live: string[] }>(
    `WITH conn AS (
       SELECT pid FROM pg_stat_activity
        WHERE application_name = '${LISTENER_APPLICATION_NAME}' AND datname = current_database()
     ), lost AS (
       UPDATE pipeline_instances SET lost_at = now()
        WHERE lost_at IS NULL AND (listener_pid IS NULL OR listener_pid NOT IN (SELECT pid FROM conn))
       RETURNING instance_id
     ), back AS (
       UPDATE pipeline_instances SET lost_at = NULL
        WHERE lost_at IS NOT NULL AND listener_pid IN (SELECT pid FROM conn)
       RETURNING instance_id
     ), gone AS (
       DELETE FROM pipeline_instances WHERE lost_at < now() - interval '1 day' RETURNING instance_id
     )
     SELECT pg_backend_pid() AS self,
            coalesce((SELECT array_agg(pid ORDER BY pid) FROM conn), '{}') AS pids,
            coalesce((SELECT array_agg(instance_id ORDER BY instance_id) FROM pipeline_instances
                       WHERE lost_at IS NOT NULL AND lost_at <= now() - $1 * interval '1 millisecond'
                         AND instance_id NOT IN (SELECT instance_id FROM back)), '{}') AS dead,
            coalesce((SELECT array_agg(instance_id ORDER BY instance_id) FROM pipeline_instances
                       WHERE lost_at IS NULL OR lost_at > now() - $1 * interval '1 millisecond'
                          OR instance_id IN (SELECT instance_id FROM back)), '{}') AS live`,
    [deadAfterMs],
  );
  const r = rows[0];
  if (!r) throw new Error('observeInstances: no row');
  return { self: r.self, pids: r.pids.map(Number), dead: r.dead, live: r.live };
}

/** The registered instances that are not dead, by the database's clock. */
export async function liveInstances(db: Queryable, deadAfterMs: number): Promise<string[]> {
  const { rows } = await db.query<{ instance_id: string }>(
    `SELECT instance_id FROM pipeline_instances
      WHERE lost_at IS NULL OR lost_at > now() - $1 * interval '1 millisecond'`,
    [deadAfterMs],
  );
  return rows.map((r) => r.instance_id);
}

/** A clean stop: the registration is removed, so peers re-dispatch what is left at once. */
export async function deregisterInstance(db: Queryable, instanceId: string): Promise<void> {
  await db.query('DELETE FROM pipeline_instances WHERE instance_id = $1', [instanceId]);
}
