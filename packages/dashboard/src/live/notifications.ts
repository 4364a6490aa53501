/**
 * The two NOTIFY channels as live events: each payload is validated with
 * pipeline-core's schemas (docs/state-machine.md, "Triggers and payloads");
 * one that does not parse is counted and skipped, never a crash.
 */
import { JOB_CHANNEL, parseJobNotification, parseVariantNotification, VARIANT_CHANNEL } from '@feedlyai/pipeline-core';
import type { LiveEventData, LiveEventType } from './hub.js';

export type ParsedNotification =
  | { ok: true; type: LiveEventType; data: LiveEventData }
  | { ok: false; error: string; channel: string };

export function parseNotification(channel: string, payload: string | undefined): ParsedNotification {
  if (channel === VARIANT_CHANNEL) {
    const r = parseVariantNotification(payload);
    if (!r.ok) return { ok: false, error: r.error, channel };
    const v = r.value;
    return {
      ok: true,
      type: 'variant',
      data: {
        job_id: v.job_id,
        tenant_id: v.tenant_id ?? null,
        job_variants_id: v.job_variants_id,
        current_step: v.current_step,
        status: v.status,
        attempt: v.attempt ?? null,
        updated_at: v.updated_at ?? null,
      },
    };
  }
  if (channel === JOB_CHANNEL) {
    const r = parseJobNotification(payload);
    if (!r.ok) return { ok: false, error: r.error, channel };
    const j = r.value;
    return {
      ok: true,
      type: 'job',
      data: {
        job_id: j.job_id,
        tenant_id: j.tenant_id ?? null,
        current_step: j.current_step,
        status: j.status,
        attempt: j.attempt ?? null,
        updated_at: j.updated_at ?? null,
      },
    };
  }
  return { ok: false, error: 'unknown channel', channel };
}
