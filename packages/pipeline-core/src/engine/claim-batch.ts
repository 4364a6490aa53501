/**
 * Claims of one event-loop turn coalesced into ONE statement (and one commit,
 * so one WAL flush with fsync on): the `(prev,'done')` notifications that
 * arrive together (a burst of stage finishes, a page of a recovery sweep)
 * become one `claimVariants` with the same guard per row. A claim waits at
 * most until the end of the current turn (setImmediate), or until the batch
 * holds `maxBatch` claims.
 */
import type { ClaimedStep } from '../sql/types.js';
import type { Step } from '../steps.js';

export interface BatchItem {
  jobVariantsId: string;
  prev: Step;
}

interface Pending {
  item: BatchItem;
  resolve: (c: ClaimedStep | null) => void;
  reject: (err: unknown) => void;
}

export class ClaimBatcher {
  private pending = new Map<string, Pending>();
  private scheduled = false;
  /** Statements issued, and claims they carried (for the status counters). */
  statements = 0;
  claims = 0;

  constructor(
    private readonly claim: (items: BatchItem[]) => Promise<ClaimedStep[]>,
    private readonly maxBatch = 200,
  ) {}

  /** Resolves with the claimed step, or null when the guard did not match (someone else moved the row). */
  add(item: BatchItem): Promise<ClaimedStep | null> {
    return new Promise((resolve, reject) => {
      const earlier = this.pending.get(item.jobVariantsId);
      // Two notifications of one variant in one turn: the later one is the row's state.
      if (earlier) earlier.resolve(null);
      this.pending.set(item.jobVariantsId, { item, resolve, reject });
      if (this.pending.size >= this.maxBatch) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    this.statements++;
    this.claims += batch.length;
    this.claim(batch.map((p) => p.item)).then(
      (claimed) => {
        const byId = new Map(claimed.map((c) => [c.jobVariantsId as string, c]));
        for (const p of batch) p.resolve(byId.get(p.item.jobVariantsId) ?? null);
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
  }
}
