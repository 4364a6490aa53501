/**
 * OpenTelemetry for the engine, through @opentelemetry/api only: without an
 * SDK configured by the host every call here is a no-op (docs/tracing.md).
 *
 * Steps are linked through the database, not through calls, so no span of
 * one step is the parent of the next. Instead every dispatch span of a job
 * takes the job's trace as its parent: a remote span context whose trace id
 * is the job id's 128 bits (the uuid without its dashes) and whose span id is
 * derived from the job id too. Any process can compute it from the job id
 * alone, nothing is stored, and a trace viewer finds a job's trace by its id.
 */
import { createHash } from 'node:crypto';
import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { ClaimedStep } from '../sql/types.js';

/** The instrumentation scope of the engine's spans. */
export const ENGINE_TRACER_NAME = '@feedlyai/pipeline-core';

/** Attribute names on every span about a job (docs/tracing.md). */
export const TRACE_ATTRIBUTES = {
  jobId: 'pipeline.job_id',
  jobVariantsId: 'pipeline.job_variants_id',
  step: 'pipeline.step',
  attempt: 'pipeline.attempt',
} as const;

/**
 * The tracer, asked for at each span: a tracer kept from before the host
 * registered its SDK would stay a no-op when the SDK registers through
 * another copy of the API module (its CommonJS build, say).
 */
function tracer(): Tracer {
  return trace.getTracer(ENGINE_TRACER_NAME);
}

const UUID_HEX = /^[0-9a-f]{32}$/;

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/**
 * The trace id of a job: its uuid's 32 hex digits, lower case (a job id that
 * is not a uuid, or the nil uuid, gets the first 32 digits of its SHA-256).
 */
export function jobTraceId(jobId: string): string {
  const hex = jobId.replace(/-/g, '').toLowerCase();
  if (UUID_HEX.test(hex) && !/^0+$/.test(hex)) return hex;
  return sha256Hex(`feedly-job-trace:${jobId}`).slice(0, 32);
}

/** The span id of a job's (never exported) root: 16 hex digits of SHA-256 of the job id. */
export function jobRootSpanId(jobId: string): string {
  const id = sha256Hex(`feedly-job-span:${jobId}`).slice(0, 16);
  return /^0+$/.test(id) ? '0000000000000001' : id;
}

/** The job's trace as a remote, sampled parent span context. */
export function jobSpanContext(jobId: string): SpanContext {
  return {
    traceId: jobTraceId(jobId),
    spanId: jobRootSpanId(jobId),
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  };
}

/** A context whose active span is the job's root: the parent of every dispatch span of the job. */
export function jobTraceContext(jobId: string): Context {
  return trace.setSpanContext(ROOT_CONTEXT, jobSpanContext(jobId));
}

/** The attributes of a claimed attempt (job id, variant id, step, attempt). */
export function stepAttributes(c: Pick<ClaimedStep, 'jobId' | 'jobVariantsId' | 'step' | 'attempt'>): Attributes {
  const a: Attributes = {
    [TRACE_ATTRIBUTES.jobId]: c.jobId,
    [TRACE_ATTRIBUTES.step]: c.step,
    [TRACE_ATTRIBUTES.attempt]: c.attempt,
  };
  if (c.jobVariantsId) a[TRACE_ATTRIBUTES.jobVariantsId] = c.jobVariantsId;
  return a;
}

/** The span of one dispatch: a claimed attempt delivered to its stage, from the claim to its outcome. */
export function startDispatchSpan(c: ClaimedStep, instanceId: string | undefined): Span {
  return tracer().startSpan(
    `dispatch ${c.step}`,
    {
      kind: SpanKind.INTERNAL,
      attributes: {
        ...stepAttributes(c),
        'pipeline.trigger': c.trigger,
        ...(instanceId ? { 'pipeline.instance_id': instanceId } : {}),
      },
    },
    jobTraceContext(c.jobId),
  );
}

/** Run-log states that end a dispatch span with an error status. */
const ERROR_STATES = new Set(['failed', 'rejected', 'timeout', 'error']);

/** Ends a dispatch span with its outcome (the run log's state). */
export function endDispatchSpan(span: Span, state: string, httpStatus: number | null, error: string | null): void {
  span.setAttribute('pipeline.outcome', state);
  if (httpStatus !== null) span.setAttribute('http.response.status_code', httpStatus);
  if (ERROR_STATES.has(state)) span.setStatus({ code: SpanStatusCode.ERROR, message: error ?? state });
  span.end();
}

/** The span of one HTTP request to a stage (a child of the dispatch span in `parent`). */
export function startStageRequestSpan(
  parent: Context,
  route: string,
  origin: string,
  path: string,
  attributes: Attributes = {},
): { span: Span; context: Context } {
  let port: number | undefined;
  let host = origin;
  try {
    const u = new URL(origin);
    host = u.hostname;
    port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  } catch {
    // parseBaseUrl validated it already.
  }
  const span = tracer().startSpan(
    `POST ${route}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        ...attributes,
        'http.request.method': 'POST',
        'url.full': `${origin}${path}`,
        'server.address': host,
        ...(port !== undefined ? { 'server.port': port } : {}),
      },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** Ends a stage request span: the status code, or no answer (an error either way for a 5xx). */
export function endStageRequestSpan(span: Span, status: number | null, error: string | null): void {
  if (status !== null) span.setAttribute('http.response.status_code', status);
  if (status === null || status >= 500) {
    span.setAttribute('error.type', status === null ? 'no_answer' : String(status));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error ?? `HTTP ${status}` });
  }
  span.end();
}
