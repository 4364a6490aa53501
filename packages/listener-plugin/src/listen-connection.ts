/**
 * The dedicated LISTEN connection, named application_name 'job_state_listener'
 * and LISTENing on both channels: either its own pg.Client opened from a
 * connection string, or ONE client checked out of the host's pool and kept
 * (docs/integration.md). Nothing here reads a pool's or a client's internals,
 * so a pool from any copy of `pg` works. On error or end the connection is
 * dropped (a pool client is released with `release(true)`, which destroys it)
 * and a new one is made after the reconnect delay with jitter (capped
 * exponential backoff after repeated failures).
 *
 * After every (re)connect the instance registers the connection's backend pid
 * (docs/healing.md, "who claimed what"), then `onConnected` runs (the recovery
 * sweep). A periodic check with a timeout notices a connection that died
 * silently; the same statement lists the live `job_state_listener`
 * connections of this database (`onPeers`, from which the engine decides
 * which instance claims a subject first), stamps the instances whose
 * connection is gone, and reports the dead ones (`onInstances`).
 */
import { hostname } from 'node:os';
import {
  type EngineLogger,
  JOB_CHANNEL,
  LISTENER_APPLICATION_NAME,
  observeInstances,
  registerInstance,
  VARIANT_CHANNEL,
} from '@feedlyai/pipeline-core';
import pg from 'pg';

// The names are pipeline-core's, next to the migration that creates the triggers (docs/notifications.md).
export { JOB_CHANNEL, VARIANT_CHANNEL };
/** application_name of the LISTEN connection (pipeline-core's LISTENER_APPLICATION_NAME). */
export const APPLICATION_NAME = LISTENER_APPLICATION_NAME;

/** What the LISTEN connection needs of a checked-out client (pg.PoolClient's public surface). */
export interface ListenPoolClient {
  query: pg.ClientBase['query'];
  on: pg.ClientBase['on'];
  release(destroy?: boolean | Error): void;
}

/** A pool to check the LISTEN connection out of: any object with pg.Pool's `connect()`. */
export interface ListenPool {
  connect(): Promise<ListenPoolClient>;
}

/** Where the LISTEN connection comes from: its own connection, or one client of the host's pool. */
export type ListenSource = { connectionString: string } | { pool: ListenPool };

export interface ListenConnectionOptions {
  source: ListenSource;
  log: EngineLogger;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  livenessIntervalMs: number;
  livenessTimeoutMs: number;
  onNotification: (channel: string, payload: string | undefined) => void;
  /** Runs after each (re)connect; the first `start()` resolves only after it settles. */
  onConnected: (reconnect: boolean) => void | Promise<void>;
  random?: () => number;
  /** The connection was lost (before the reconnect is scheduled). */
  onLost?: (err: unknown) => void;
  /** This connection's backend pid and the pids of every listener connection on the database. */
  onPeers?: (self: number, pids: number[]) => void;
  /** The instance id this connection registers under (pipeline_instances). */
  instanceId: string;
  /** An instance lost for longer than this (database clock) is dead. */
  deadAfterMs: number;
  /** The instances found dead by the liveness check. */
  onInstances?: (o: { dead: string[]; live: string[] }) => void;
  /** Registered after a (re)connect, before onConnected. */
  onRegistered?: () => void | Promise<void>;
}

/** Extra peer checks after each (re)connect, ms. */
const PEER_FOLLOW_UPS_MS = [250, 1000];

/** How long opening the connection (or checking it out of the host's pool) may take. */
const CONNECT_TIMEOUT_MS = 10_000;

/** The client LISTENing, and how to drop it. */
type Client = Pick<pg.ClientBase, 'query' | 'on'>;
interface Held {
  client: Client;
  /** Drops the connection without waiting for it (safe to call twice). */
  discard(): void;
  /** Ends it cleanly, bounded by `ms`. */
  close(ms: number): Promise<void>;
}

export class ListenConnection {
  private held: Held | null = null;
  private client: Client | null = null;
  private connected = false;
  private stopping = false;
  private everConnected = false;
  private failures = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private livenessTimer: NodeJS.Timeout | null = null;
  private livenessBusy = false;
  private connecting: Promise<void> | null = null;
  reconnects = 0;
  private afterConnect: Promise<void> | null = null;
  private peerTimers: NodeJS.Timeout[] = [];
  connectedAt: Date | null = null;

  constructor(private readonly o: ListenConnectionOptions) {}

  get isConnected(): boolean {
    return this.connected;
  }

  /** Connects (retrying in the background on failure). Resolves after the first attempt. */
  async start(): Promise<void> {
    this.stopping = false;
    await this.connectOnce();
    await this.afterConnect;
  }

  private connectOnce(): Promise<void> {
    if (this.connecting) return this.connecting;
    this.connecting = this.doConnect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async doConnect(): Promise<void> {
    if (this.stopping) return;
    let held: Held;
    try {
      held = await this.open();
    } catch (err) {
      this.failed(err);
      return;
    }
    const client = held.client;
    this.held = held;
    this.client = client;
    client.on('notification', (n) => this.o.onNotification(n.channel, n.payload));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection ended')));
    try {
      if (this.stopping) throw new Error('stopping');
      if ('pool' in this.o.source) {
        // A pooled connection keeps the host's name until told otherwise; the name is how
        // peers and operators find listener connections (pg_stat_activity).
        await client.query(`SET application_name = '${APPLICATION_NAME}'`);
      }
      this.o.log.info({ application_name: APPLICATION_NAME }, 'PostgreSQL connected');
      await client.query(`LISTEN ${VARIANT_CHANNEL}`);
      this.o.log.info({ channel: VARIANT_CHANNEL }, `LISTEN '${VARIANT_CHANNEL}' started`);
      await client.query(`LISTEN ${JOB_CHANNEL}`);
      this.o.log.info({ channel: JOB_CHANNEL }, `LISTEN '${JOB_CHANNEL}' started`);
      const reg = await registerInstance(client, { instanceId: this.o.instanceId, host: hostname(), pid: process.pid });
      if (reg.conflict) {
        this.o.log.error(
          { instance_id: this.o.instanceId, other_host: reg.conflict.host, other_pid: reg.conflict.pid },
          'listener error: another live process is registered under the same instance id; give every instance its own PIPELINE_INSTANCE_ID',
        );
      }
      await this.checkPeers(client);
    } catch (err) {
      this.lost(client, err);
      return;
    }
    if (this.stopping || this.client !== client) {
      if (this.client === client) {
        this.client = null;
        this.held = null;
      }
      await held.close(2_000);
      return;
    }
    const reconnect = this.everConnected;
    this.connected = true;
    this.everConnected = true;
    this.failures = 0;
    this.connectedAt = new Date();
    this.startLiveness(client);
    this.o.log.info({ reconnect, instance_id: this.o.instanceId }, 'listener started');
    // Not awaited here (a reconnect must not wait behind it); start() awaits the first one.
    this.afterConnect = Promise.resolve()
      .then(() => this.o.onRegistered?.())
      .then(() => this.o.onConnected(reconnect))
      .catch(() => {});
  }

  /**
   * A new connection: its own client from the connection string, or one client checked out
   * of the host's pool (bounded by CONNECT_TIMEOUT_MS; one that arrives later goes back).
   */
  private async open(): Promise<Held> {
    const source = this.o.source;
    if ('connectionString' in source) {
      const client = new pg.Client({
        connectionString: source.connectionString,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        application_name: APPLICATION_NAME,
        keepAlive: true,
      });
      // Until doConnect() attaches its own: a failed connect must not be an unhandled 'error'.
      const early = () => {};
      client.on('error', early);
      try {
        await client.connect();
      } catch (err) {
        client.end().catch(() => {});
        throw err;
      } finally {
        client.off('error', early);
      }
      // end() destroys the socket when a query hangs on it (a dead connection).
      return {
        client,
        discard: () => {
          client.end().catch(() => {});
        },
        close: (ms) => bounded(client.end(), ms),
      };
    }
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const checkout = source.pool.connect();
    const poolClient = await Promise.race([
      checkout,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          reject(new Error(`no connection from the pool within ${CONNECT_TIMEOUT_MS} ms`));
        }, CONNECT_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    if (timedOut)
      checkout.then(
        (c) => c.release(),
        () => {},
      );
    let released = false;
    // release(true) destroys the connection instead of handing a LISTENing, renamed
    // connection back to the host's pool.
    const discard = () => {
      if (released) return;
      released = true;
      poolClient.release(true);
    };
    return {
      client: poolClient,
      discard,
      close: async () => discard(),
    };
  }

  /** Opening a connection failed: schedule the next attempt. */
  private failed(err: unknown): void {
    if (this.stopping) return;
    this.o.onLost?.(err);
    this.scheduleReconnect(err);
  }

  /** The connection failed or ended: drop it and schedule a reconnect (once per client). */
  private lost(client: Client, err: unknown): void {
    if (this.client !== client) return;
    const held = this.held;
    this.client = null;
    this.held = null;
    this.connected = false;
    this.stopLiveness();
    held?.discard();
    if (this.stopping) return;
    this.o.onLost?.(err);
    this.scheduleReconnect(err);
  }

  private scheduleReconnect(err: unknown): void {
    this.failures++;
    const base = Math.min(this.o.maxReconnectDelayMs, this.o.reconnectDelayMs * 2 ** Math.max(0, this.failures - 1));
    const random = this.o.random ?? Math.random;
    const delay = Math.round(base * (0.8 + 0.4 * random()));
    this.o.log.error(
      { err: err instanceof Error ? err.message : String(err), retry_in_ms: delay, failures: this.failures },
      'listener error',
    );
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.stopping) return;
      this.reconnects++;
      this.o.log.info({ attempt: this.failures }, 'reconnect attempt');
      void this.connectOnce();
    }, delay);
  }

  private startLiveness(client: Client): void {
    this.stopLiveness();
    const check = () => {
      if (this.livenessBusy || this.client !== client) return;
      this.livenessBusy = true;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`liveness check: no answer within ${this.o.livenessTimeoutMs} ms`)),
          this.o.livenessTimeoutMs,
        );
      });
      Promise.race([this.checkPeers(client), timeout])
        .catch((err: unknown) => this.lost(client, err))
        .finally(() => {
          clearTimeout(timer);
          this.livenessBusy = false;
        });
    };
    this.livenessTimer = setInterval(check, this.o.livenessIntervalMs);
    // Instances that start or reconnect together see each other only partly at first: look
    // again soon, so that they agree on who owns what within a second.
    this.peerTimers = PEER_FOLLOW_UPS_MS.filter((ms) => ms < this.o.livenessIntervalMs).map((ms) =>
      setTimeout(check, ms),
    );
  }

  /** The liveness query: also reports the live listener connections (peers) and the dead instances. */
  private async checkPeers(client: Client): Promise<void> {
    const o = await observeInstances(client, this.o.deadAfterMs);
    if (this.client !== client) return;
    this.o.onPeers?.(o.self, o.pids);
    this.o.onInstances?.({ dead: o.dead, live: o.live });
  }

  private stopLiveness(): void {
    for (const t of this.peerTimers) clearTimeout(t);
    this.peerTimers = [];
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    this.livenessTimer = null;
  }

  /** UNLISTEN, end the connection, cancel any pending reconnect. Safe to call twice or before start. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.stopLiveness();
    if (this.connecting) await this.connecting.catch(() => {});
    const client = this.client;
    const held = this.held;
    this.client = null;
    this.held = null;
    this.connected = false;
    if (!client || !held) return;
    await bounded(client.query('UNLISTEN *'), 2_000).catch(() => {});
    await held.close(2_000).catch(() => {});
    held.discard();
  }
}

/** Waits for `p` at most `ms` (its outcome is ignored). */
async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p.catch(() => {}),
    new Promise((r) => {
      timer = setTimeout(r, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
