/**
 * Live updates (docs/dashboard.md, "Live updates"): every state change the
 * database notifies becomes one event with an id `<boot>-<seq>`, kept in a
 * ring buffer of the last `ringSize` events (10,000 by default) and written
 * to every open Server-Sent Events stream whose filter it matches.
 *
 * A browser that reconnects sends the id of the last event it saw
 * (`Last-Event-ID`, or `since` on its first connection: the id current when
 * its page was rendered) and gets every event after it from the buffer. An id
 * it cannot serve gets a `reset` event instead, and the page reloads its
 * list: a malformed id, one of another process or an earlier start (another
 * boot), one older than the buffer holds, and any id from before a gap (the
 * LISTEN connection was lost, so events may be missing).
 */
import { randomBytes } from 'node:crypto';

export type LiveEventType = 'job' | 'variant';

/** What a browser is told about a state change (the NOTIFY payload's fields). */
export interface LiveEventData {
  job_id: string;
  tenant_id: string | null;
  job_variants_id?: string;
  current_step: string;
  status: string;
  attempt: number | null;
  updated_at: string | null;
}

export interface LiveEvent {
  seq: number;
  id: string;
  type: LiveEventType;
  data: LiveEventData;
}

/** Which events a stream wants: one job's, one tenant's, or all. */
export interface StreamFilter {
  jobId?: string | undefined;
  tenant?: string | undefined;
}

/** Where a stream's bytes go (a raw HTTP response, or a test's collector). */
export interface StreamSink {
  write(chunk: string): void;
  /** Bytes written and not yet flushed to the network: a stream past the limit is closed. */
  readonly pendingBytes: number;
  end(): void;
}

export type ReplayResult = { ok: true; events: LiveEvent[] } | { ok: false; reason: string };

/** A bounded buffer of the newest events, oldest first. */
export class RingBuffer<T extends { seq: number }> {
  private readonly items: Array<T | undefined>;
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.items = new Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Appends; returns the item pushed out when the buffer was full. */
  push(item: T): T | undefined {
    if (this.count < this.capacity) {
      this.items[(this.start + this.count) % this.capacity] = item;
      this.count++;
      return undefined;
    }
    const evicted = this.items[this.start];
    this.items[this.start] = item;
    this.start = (this.start + 1) % this.capacity;
    return evicted;
  }

  /** The items with seq > `seq`, oldest first (a binary search: seqs only grow). */
  after(seq: number): T[] {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.at(mid) as T).seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    const out: T[] = [];
    for (let i = lo; i < this.count; i++) out.push(this.at(i) as T);
    return out;
  }

  clear(): void {
    this.items.fill(undefined);
    this.start = 0;
    this.count = 0;
  }

  private at(i: number): T | undefined {
    return this.items[(this.start + i) % this.capacity];
  }
}

export interface HubOptions {
  ringSize: number;
  /** A stream with more than this many bytes waiting to be sent (default 8 MiB) is closed (it reconnects and replays). */
  maxPendingBytes?: number;
  /** The boot id (random by default): ids of another boot get a reset. */
  boot?: string;
}

interface Stream {
  sink: StreamSink;
  filter: StreamFilter;
}

const ID_RE = /^([0-9a-f]{1,32})-(\d{1,15})$/;

function matches(filter: StreamFilter, data: LiveEventData): boolean {
  if (filter.jobId !== undefined && data.job_id !== filter.jobId) return false;
  if (filter.tenant !== undefined && data.tenant_id !== filter.tenant) return false;
  return true;
}

/** One event in the text/event-stream format. */
export function formatEvent(e: { id: string; type: string; data: unknown }): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

export class LiveHub {
  readonly boot: string;
  private readonly ring: RingBuffer<LiveEvent>;
  private readonly maxPendingBytes: number;
  private readonly streams = new Set<Stream>();
  /** The last seq handed out (events and gaps). */
  private lastSeq = 0;
  /** The oldest "last seen" seq that can still be replayed from. */
  private minSeen = 0;
  published = 0;
  resets = 0;
  dropped = 0;

  constructor(o: HubOptions) {
    this.boot = o.boot ?? randomBytes(4).toString('hex');
    this.ring = new RingBuffer(o.ringSize);
    this.maxPendingBytes = o.maxPendingBytes ?? 8 << 20;
  }

  get ringSize(): number {
    return this.ring.capacity;
  }

  get buffered(): number {
    return this.ring.size;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** The id of the newest event (what a page rendered now passes as `since`). */
  currentId(): string {
    return `${this.boot}-${this.lastSeq}`;
  }

  publish(type: LiveEventType, data: LiveEventData): LiveEvent {
    const seq = ++this.lastSeq;
    const event: LiveEvent = { seq, id: `${this.boot}-${seq}`, type, data };
    const evicted = this.ring.push(event);
    if (evicted) this.minSeen = Math.max(this.minSeen, evicted.seq);
    this.published++;
    const text = formatEvent(event);
    for (const s of this.streams) if (matches(s.filter, data)) this.send(s, text);
    return event;
  }

  /**
   * Events may have been missed (the LISTEN connection was lost): no id
   * handed out so far can be replayed any more, and every open stream is
   * told to reload.
   */
  gap(reason: string): void {
    this.ring.clear();
    const seq = ++this.lastSeq;
    this.minSeen = seq;
    for (const s of this.streams) this.sendReset(s, reason);
  }

  /** The events after `lastId` that match `filter`, or why they cannot be served. */
  replay(lastId: string, filter: StreamFilter): ReplayResult {
    const m = ID_RE.exec(lastId);
    if (!m) return { ok: false, reason: 'malformed event id' };
    if (m[1] !== this.boot) return { ok: false, reason: 'event id of another server start' };
    const seen = Number(m[2]);
    if (seen > this.lastSeq) return { ok: false, reason: 'event id not handed out yet' };
    if (seen < this.minSeen) return { ok: false, reason: 'event id older than the buffer' };
    return { ok: true, events: this.ring.after(seen).filter((e) => matches(filter, e.data)) };
  }

  /**
   * Opens a stream: replays what `lastId` missed (or sends a reset), then
   * keeps it for the events to come. Returns the function that closes it.
   */
  open(sink: StreamSink, filter: StreamFilter, lastId: string | undefined): () => void {
    const stream: Stream = { sink, filter };
    sink.write('retry: 2000\n\n');
    if (lastId !== undefined) {
      const r = this.replay(lastId, filter);
      if (r.ok) for (const e of r.events) sink.write(formatEvent(e));
      else this.sendReset(stream, r.reason);
    }
    this.streams.add(stream);
    return () => {
      if (this.streams.delete(stream)) sink.end();
    };
  }

  /** A comment line on every stream, so that proxies keep idle streams open. */
  heartbeat(): void {
    for (const s of this.streams) this.send(s, ': ping\n\n');
  }

  /** Ends every stream (the server is closing). */
  closeAll(): void {
    for (const s of this.streams) s.sink.end();
    this.streams.clear();
  }

  private sendReset(s: Stream, reason: string): void {
    this.resets++;
    // The reset carries the current id, so that the browser's next reconnect starts from here.
    this.send(s, formatEvent({ id: this.currentId(), type: 'reset', data: { reason } }));
  }

  private send(s: Stream, text: string): void {
    if (s.sink.pendingBytes > this.maxPendingBytes) {
      // A browser that does not read: drop it; it reconnects with its last id and replays.
      this.dropped++;
      this.streams.delete(s);
      s.sink.end();
      return;
    }
    s.sink.write(text);
  }
}
