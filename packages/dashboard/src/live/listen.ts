/**
 * The dashboard's own LISTEN connection (docs/dashboard.md, "Live updates"),
 * used when the listener plugin is not registered (or disabled) in the same
 * app: ONE connection for every browser, named `pipeline_dashboard` in
 * pg_stat_activity. Never `job_state_listener`: the listener instances count
 * connections of that name as their peers (docs/healing.md).
 *
 * Either its own pg.Client from a connection string, or one client checked
 * out of the host's pool (renamed with SET application_name, destroyed with
 * `release(true)` rather than handed back). On error, end, or a liveness
 * check without an answer, the connection is dropped and made again after a
 * delay with jitter (capped exponential backoff), and `onReconnected` tells
 * the hub that events may have been missed.
 */
import { DASHBOARD_APPLICATION_NAME, JOB_CHANNEL, VARIANT_CHANNEL } from '@feedlyai/pipeline-core';
import pg from 'pg';

export { DASHBOARD_APPLICATION_NAME };

/** The part of a checked-out pool client this needs. */
export interface ListenClient {
  query: pg.ClientBase['query'];
  on: pg.ClientBase['on'];
  removeAllListeners?: pg.ClientBase['removeAllListeners'];
  release(destroy?: boolean | Error): void;
}

export type ListenSource = { connectionString: string } | { pool: { connect(): Promise<ListenClient> } };

export interface DashboardListenOptions {
  source: ListenSource;
  onNotification(channel: string, payload: string | undefined): void;
  /** The connection came back after being lost (not called for the first connection). */
  onReconnected(): void;
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void };
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  livenessIntervalMs?: number;
  livenessTimeoutMs?: number;
}

interface Held {
  client: Pick<pg.ClientBase, 'query' | 'on'>;
  drop(): void;
}

const CONNECT_TIMEOUT_MS = 10_000;

export class DashboardListen {
  private held: Held | null = null;
  private stopped = false;
  private everConnected = false;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private liveness: NodeJS.Timeout | null = null;
  private connecting: Promise<void> | null = null;
  reconnects = 0;

  constructor(private readonly o: DashboardListenOptions) {}

  get connected(): boolean {
    return this.held !== null && this.connecting === null;
  }

  /** The first attempt; a failure is retried in the background. */
  async start(): Promise<void> {
    await this.connect();
  }

  private connect(): Promise<void> {
    if (!this.connecting) {
      this.connecting = this.doConnect().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  private async open(): Promise<Held> {
    const src = this.o.source;
    if ('connectionString' in src) {
      const client = new pg.Client({
        connectionString: src.connectionString,
        application_name: DASHBOARD_APPLICATION_NAME,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        keepAlive: true,
      });
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
      return {
        client,
        drop: () => {
          client.end().catch(() => {});
        },
      };
    }
    const c = await src.pool.connect();
    let released = false;
    return {
      client: c,
      drop: () => {
        if (released) return;
        released = true;
        c.release(true);
      },
    };
  }

  private async doConnect(): Promise<void> {
    if (this.stopped) return;
    let held: Held;
    try {
      held = await this.open();
    } catch (err) {
      this.scheduleReconnect(err);
      return;
    }
    const { client } = held;
    const lost = (err: unknown) => this.lost(held, err);
    client.on('notification', (n) => this.o.onNotification(n.channel, n.payload));
    client.on('error', lost);
    client.on('end', () => lost(new Error('connection ended')));
    try {
      if ('pool' in this.o.source) await client.query(`SET application_name = '${DASHBOARD_APPLICATION_NAME}'`);
      await client.query(`LISTEN ${VARIANT_CHANNEL}`);
      await client.query(`LISTEN ${JOB_CHANNEL}`);
    } catch (err) {
      held.drop();
      this.scheduleReconnect(err);
      return;
    }
    if (this.stopped) {
      held.drop();
      return;
    }
    this.held = held;
    const reconnect = this.everConnected;
    this.everConnected = true;
    this.failures = 0;
    this.startLiveness(held);
    this.o.log.info({ application_name: DASHBOARD_APPLICATION_NAME, reconnect }, 'dashboard LISTEN connected');
    if (reconnect) this.o.onReconnected();
  }

  private lost(held: Held, err: unknown): void {
    if (this.held !== held) return;
    this.held = null;
    this.stopLiveness();
    held.drop();
    if (this.stopped) return;
    this.scheduleReconnect(err);
  }

  private scheduleReconnect(err: unknown): void {
    if (this.stopped) return;
    this.failures++;
    const base = Math.min(
      this.o.maxReconnectDelayMs ?? 30_000,
      (this.o.reconnectDelayMs ?? 1_000) * 2 ** Math.max(0, this.failures - 1),
    );
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.o.log.warn(
      { err: err instanceof Error ? err.message : String(err), retry_in_ms: delay },
      'dashboard LISTEN connection lost',
    );
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reconnects++;
      void this.connect();
    }, delay);
  }

  private startLiveness(held: Held): void {
    this.stopLiveness();
    const timeoutMs = this.o.livenessTimeoutMs ?? 5_000;
    let busy = false;
    this.liveness = setInterval(() => {
      if (busy) return;
      busy = true;
      let t: NodeJS.Timeout | undefined;
      Promise.race([
        held.client.query('SELECT 1'),
        new Promise((_, reject) => {
          t = setTimeout(() => reject(new Error(`no answer to the liveness check within ${timeoutMs} ms`)), timeoutMs);
        }),
      ])
        .catch((err: unknown) => this.lost(held, err))
        .finally(() => {
          clearTimeout(t);
          busy = false;
        });
    }, this.o.livenessIntervalMs ?? 30_000);
  }

  private stopLiveness(): void {
    if (this.liveness) clearInterval(this.liveness);
    this.liveness = null;
  }

  /** Stops for good: no reconnect, the connection closed. Safe to call twice or before start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stopLiveness();
    if (this.connecting) await this.connecting.catch(() => {});
    const held = this.held;
    this.held = null;
    if (!held) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([
      held.client.query('UNLISTEN *').catch(() => {}),
      new Promise((r) => {
        t = setTimeout(r, 2_000);
      }),
    ]).finally(() => clearTimeout(t));
    held.drop();
  }
}
