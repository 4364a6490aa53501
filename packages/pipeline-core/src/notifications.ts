/**
 * The two NOTIFY payloads (docs/state-machine.md, "Triggers and payloads"), validated at the boundary. A payload
 * that does not parse is counted, logged and skipped by the engine.
 */
import { z } from 'zod';
import { STATUSES, STEPS } from './steps.js';

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; anything near that is not ours. */
export const MAX_PAYLOAD_BYTES = 8000;

export const variantNotificationSchema = z.object({
  job_variants_id: z.uuid(),
  job_id: z.uuid(),
  current_step: z.enum(STEPS),
  status: z.enum(STATUSES),
  tenant_id: z.string().nullish(),
  img_asset_id: z.string().nullish(),
  updated_at: z.string().nullish(),
  attempt: z.number().int().positive().nullish(),
});
export type VariantNotification = z.infer<typeof variantNotificationSchema>;

export const jobNotificationSchema = z.object({
  job_id: z.uuid(),
  tenant_id: z.string().nullish(),
  current_step: z.enum(STEPS),
  status: z.enum(STATUSES),
  updated_at: z.string().nullish(),
  attempt: z.number().int().positive().nullish(),
  /** Set by retryJob: recover this job now. */
  manual: z.string().nullish(),
});
export type JobNotification = z.infer<typeof jobNotificationSchema>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

function parse<T>(schema: z.ZodType<T>, raw: unknown): ParseResult<T> {
  if (typeof raw !== 'string') return { ok: false, error: 'payload is not a string' };
  if (Buffer.byteLength(raw) >= MAX_PAYLOAD_BYTES)
    return { ok: false, error: `payload too large (${raw.length} chars)` };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    return { ok: false, error: `bad JSON: ${(err as Error).message}` };
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    return {
      ok: false,
      error: r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '),
    };
  }
  return { ok: true, value: r.data };
}

export function parseVariantNotification(raw: unknown): ParseResult<VariantNotification> {
  return parse(variantNotificationSchema, raw);
}

export function parseJobNotification(raw: unknown): ParseResult<JobNotification> {
  return parse(jobNotificationSchema, raw);
}
