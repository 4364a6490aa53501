/**
 * The floor under any trigger latency: a raw NOTIFY round trip on the same
 * database, LISTEN on one connection, NOTIFY from another, time to receipt.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { type Percentiles, percentiles } from './stats.js';

export async function notifyFloor(url: string, samples: number): Promise<Percentiles> {
  const listener = new pg.Client({ connectionString: url });
  const sender = new pg.Client({ connectionString: url });
  await listener.connect();
  await sender.connect();
  try {
    await listener.query('LISTEN bench_floor');
    const times: number[] = [];
    for (let i = 0; i < samples; i++) {
      const payload = String(i);
      const got = new Promise<number>((resolve) => {
        const on = (n: pg.Notification) => {
          if (n.channel === 'bench_floor' && n.payload === payload) {
            listener.off('notification', on);
            resolve(performance.now());
          }
        };
        listener.on('notification', on);
      });
      const t0 = performance.now();
      await sender.query("SELECT pg_notify('bench_floor', $1)", [payload]);
      times.push((await got) - t0);
    }
    return percentiles(times);
  } finally {
    await listener.end().catch(() => {});
    await sender.end().catch(() => {});
  }
}
