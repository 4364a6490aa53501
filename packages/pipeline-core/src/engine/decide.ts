/**
 * The per-row decision of the engine, as a pure function (docs/healing.md,
 * "the decision table"): given where a row is and what this instance knows,
 * what to do with it. Used by the recovery sweeps for every row they read, and
 * unit-tested as a table without a database (River's `makeRetryDecision` is
 * the model). The guarded UPDATE that carries a decision out is still the only
 * gate: deciding wrongly can waste a statement, never run a step twice.
 */
import type { FanInPolicy } from '../sql/claimFanIn.js';
import {
  FAN_IN_FROM,
  FAN_IN_TO,
  FINAL_STEP,
  isJobLevel,
  nextStep,
  retryBackoffMs,
  type Status,
  type Step,
  type StepDefinition,
} from '../steps.js';

export interface RowFacts {
  step: Step;
  status: Status;
  /** The fencing token of the current step. */
  attempt: number;
  /** Attempts that do not count (manual resets, re-dispatches). */
  attemptBase: number;
  /** now() - updated_at, by the database's clock. */
  ageMs: number;
  /** The instance whose claim wrote the current attempt (null: none recorded). */
  claimedBy: string | null;
  /** An operator's retry asked for a dispatch (dispatch_requested_at). */
  dispatchRequested: boolean;
  /** A variant row (false: the job row in its job-level phase). */
  variant: boolean;
}

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface DecideContext {
  /** Definition of the row's current step. */
  def: StepDefinition;
  fanInPolicy: FanInPolicy;
  /** This instance's id. */
  self: string;
  /** Instances that are not dead (database clock). An unregistered claimer is dead. */
  live: ReadonlySet<string>;
  /** Rows without a claimer are re-dispatched once they are older than this. */
  deadAfterMs: number;
  /** The circuit of the step the decision would send (targetStep). */
  circuit: CircuitState;
  /** Free slots for that step: 0 when none, or when the circuit does not allow a call now. */
  freeSlots: number;
  /** This instance has a call in flight (or waiting to be re-sent) for this row's current attempt. */
  inFlight: boolean;
}

export type WaitReason =
  | 'not-ours'
  | 'finished'
  | 'parked-upstream'
  | 'circuit-open'
  | 'no-free-slot'
  | 'backoff'
  | 'in-flight'
  | 'claimer-alive'
  | 'claim-settling'
  | 'stage-working'
  | 'given-up';

export type Decision =
  | { kind: 'claim-next'; next: Step }
  | { kind: 'fan-in' }
  | { kind: 'retry' }
  | { kind: 'give-up'; timedOut: boolean }
  | { kind: 'rescue' }
  | { kind: 're-dispatch'; why: 'dead-claimer' | 'no-claimer' | 'requested' }
  | { kind: 'resend-own' }
  | { kind: 'wait'; reason: WaitReason };

/**
 * The step a decision about this row would send to a stage (its circuit and
 * free slots are the ones that matter), or null when nothing would be sent.
 */
export function targetStep(row: Pick<RowFacts, 'step' | 'status' | 'variant'>): Step | null {
  if (row.status !== 'done') return row.step;
  if (row.variant && row.step === FAN_IN_FROM) return FAN_IN_TO;
  if (row.step === FINAL_STEP || row.step === 'user_img_input') return null;
  const next = nextStep(row.step);
  if (!next) return null;
  // A variant row moves on within the variant phase only (the fan-in is above); the job row within the job phase.
  if (row.variant === isJobLevel(next)) return null;
  return next;
}

const wait = (reason: WaitReason): Decision => ({ kind: 'wait', reason });

/** Whether a call for the target step may start now (circuit and slots). */
function blocked(ctx: DecideContext): Decision | null {
  if (ctx.circuit === 'open') return wait('circuit-open');
  if (ctx.freeSlots <= 0) return wait(ctx.circuit === 'half-open' ? 'circuit-open' : 'no-free-slot');
  return null;
}

export function decide(row: RowFacts, ctx: DecideContext): Decision {
  const def = ctx.def;
  const counted = row.attempt - row.attemptBase;
  switch (row.status) {
    case 'done': {
      if (row.step === 'user_img_input') return wait('not-ours');
      if (!row.variant && row.step === FINAL_STEP) return wait('finished');
      const target = targetStep(row);
      if (!target) return wait('finished');
      const b = blocked(ctx);
      if (b) return b;
      if (row.variant && row.step === FAN_IN_FROM) return { kind: 'fan-in' };
      return { kind: 'claim-next', next: target };
    }
    case 'failed': {
      if (!def.route) return wait('not-ours');
      if (counted >= def.retry.maxAttempts) return { kind: 'give-up', timedOut: false };
      // Due when the full (un-jittered) backoff has passed since it failed.
      if (row.ageMs < retryBackoffMs(def.retry, counted, () => 1)) return wait('backoff');
      return blocked(ctx) ?? { kind: 'retry' };
    }
    case 'queued': {
      if (!def.route) return wait('parked-upstream');
      if (row.dispatchRequested) return blocked(ctx) ?? { kind: 're-dispatch', why: 'requested' };
      if (row.claimedBy === ctx.self) {
        if (ctx.inFlight) return wait('in-flight');
        return blocked(ctx) ?? { kind: 'resend-own' };
      }
      if (row.claimedBy === null) {
        if (row.ageMs <= ctx.deadAfterMs) return wait('claim-settling');
        return blocked(ctx) ?? { kind: 're-dispatch', why: 'no-claimer' };
      }
      if (ctx.live.has(row.claimedBy)) return wait('claimer-alive');
      return blocked(ctx) ?? { kind: 're-dispatch', why: 'dead-claimer' };
    }
    case 'running': {
      if (!def.route) return wait('not-ours');
      // The stage's: rescued only once the deadline it was sent has passed (plus a margin).
      if (row.ageMs <= def.rescueAfterMs) return wait('stage-working');
      if (ctx.circuit === 'open') return wait('circuit-open');
      if (counted >= def.retry.maxAttempts) return { kind: 'give-up', timedOut: true };
      return blocked(ctx) ?? { kind: 'rescue' };
    }
    default:
      return wait('not-ours');
  }
}
