/**
 * One claimer per subject (docs/healing.md, "ownership"): every instance
 * receives every notification, but only the subject's owner (rendezvous hash
 * of the subject over the live LISTEN connections the host reports) claims at
 * once. The others wait `claimDelayMs` and claim only if no notification has
 * shown the subject moving on meanwhile (the owner died or is slow), or at
 * once when the owner's connection disappears. The guarded UPDATE stays the
 * exactly-once gate: ownership only saves the losing claim statements.
 */
import type { Status, Step } from '../steps.js';

interface Deferred {
  stillDue: (step: Step, status: Status) => boolean;
  timer: NodeJS.Timeout;
  /** The claim; `deferred` is true when it runs after the delay or when its owner went away. */
  run: (deferred: boolean) => unknown;
  /** Whether this instance has a free slot for the claim now (a non-owner's claim never waits for one). */
  canRun: () => boolean;
}

export class Ownership {
  /** This instance's key and every live instance's key (sorted). */
  private peers: { self: string; all: string[] } | null = null;
  private readonly deferred = new Map<string, Deferred>();
  /** Notifications left to another owner. */
  deferredCount = 0;
  /** Deferred claims that were made after the delay. */
  deferredClaims = 0;
  /** Deferred claims dropped because a notification showed the owner moved the subject on. */
  dropped = 0;

  /** Deferred claims postponed because this instance had no free slot when their delay ran out. */
  postponed = 0;

  /**
   * @param claimDelayMs the least a non-owner waits before claiming itself.
   * @param delayMs the wait actually used (at least claimDelayMs; the engine
   *   stretches it while claims are slow, so that a busy owner is not raced).
   */
  constructor(
    private readonly claimDelayMs: number,
    private readonly delayMs: () => number = () => claimDelayMs,
  ) {
    if (!(claimDelayMs >= 0)) throw new Error(`claimDelayMs must be >= 0: ${claimDelayMs}`);
  }

  get count(): number {
    return this.peers?.all.length ?? 1;
  }

  get pending(): number {
    return this.deferred.size;
  }

  /** The wait a claim deferred now would get. */
  get currentDelayMs(): number {
    return Math.max(this.claimDelayMs, this.delayMs());
  }

  /**
   * The live instances, as keys the host chose (the listener plugin uses the
   * backend pid of each `job_state_listener` connection). With one instance,
   * or before the first call, this instance owns everything. Claims left to
   * an owner that went away are made at once.
   */
  setPeers(self: string, all: readonly string[]): void {
    const set = new Set(all);
    set.add(self);
    const next = { self, all: [...set].sort() };
    const before = this.peers;
    this.peers = next;
    if (before && before.self === next.self && before.all.join() === next.all.join()) return;
    for (const key of [...this.deferred.keys()]) if (this.owns(key)) this.runNow(key);
  }

  /** Whether this instance claims `key` at once. */
  owns(key: string): boolean {
    const peers = this.peers;
    if (this.claimDelayMs === 0 || !peers || peers.all.length <= 1) return true;
    let best = '';
    let bestScore = -1;
    for (const peer of peers.all) {
      const score = fnv1a(`${key}|${peer}`);
      if (score > bestScore) {
        best = peer;
        bestScore = score;
      }
    }
    return best === peers.self;
  }

  /**
   * Runs `run` now when this instance owns `key` (resolving when it does),
   * else after the delay unless the subject moves on (resolving at once). When
   * the delay runs out while this instance has no free slot (`canRun` false),
   * the claim waits another delay instead of queueing behind the owner's work.
   */
  claimOrDefer(
    key: string,
    stillDue: Deferred['stillDue'],
    run: (deferred: boolean) => Promise<void>,
    canRun: () => boolean = () => true,
  ): Promise<void> {
    if (this.owns(key)) return run(false);
    this.deferredCount++;
    const earlier = this.deferred.get(key);
    if (earlier) clearTimeout(earlier.timer);
    this.deferred.set(key, { stillDue, timer: this.arm(key), run, canRun });
    return Promise.resolve();
  }

  private arm(key: string): NodeJS.Timeout {
    const timer: NodeJS.Timeout = setTimeout(() => {
      // Timers run before pending I/O in an event-loop turn: let notifications already
      // received (the owner's claim among them) be handled first, then decide.
      setImmediate(() => {
        const d = this.deferred.get(key);
        if (d?.timer !== timer) return;
        if (!d.canRun()) {
          this.postponed++;
          d.timer = this.arm(key);
          return;
        }
        this.runNow(key);
      });
    }, this.currentDelayMs);
    return timer;
  }

  /**
   * A notification about `key`: drops a deferred claim it shows to be done by someone else.
   * True when it dropped one.
   */
  noteProgress(key: string, step: Step, status: Status): boolean {
    const d = this.deferred.get(key);
    if (!d || d.stillDue(step, status)) return false;
    clearTimeout(d.timer);
    this.deferred.delete(key);
    this.dropped++;
    return true;
  }

  private runNow(key: string): void {
    const d = this.deferred.get(key);
    if (!d) return;
    clearTimeout(d.timer);
    this.deferred.delete(key);
    this.deferredClaims++;
    d.run(true);
  }

  clear(): void {
    for (const d of this.deferred.values()) clearTimeout(d.timer);
    this.deferred.clear();
  }
}

/** 32-bit FNV-1a of a string (rendezvous hashing; not for security). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
