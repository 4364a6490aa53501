/**
 * OpenTelemetry in the stage server, through @opentelemetry/api only: a no-op
 * unless the process configures an SDK (docs/tracing.md).
 *
 * - a SERVER span per request, the child of the `traceparent` the dispatcher
 *   sent (through the registered propagator), named `METHOD route`;
 * - a stage request's span carries the job id, variant id, step and attempt
 *   of its body, and so does every child span made while it runs: the model
 *   calls (chat completions, YOLO, OCR) and the CPU worker tasks (decode,
 *   plan, render, measure), through `withChildSpan`.
 *
 * Child spans are made only inside a request (a warm-up at boot makes none),
 * and need the SDK's context manager (AsyncLocalStorage) to find their parent.
 */
import { TRACE_ATTRIBUTES } from '@feedlyai/pipeline-core';
import {
  type Attributes,
  type Context,
  context,
  createContextKey,
  INVALID_SPAN_CONTEXT,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

export const STAGE_TRACER_NAME = '@feedlyai/stage-api';

/** Asked for at each span, so that an SDK registered after this module loaded is used (docs/tracing.md). */
const tracer = () => trace.getTracer(STAGE_TRACER_NAME);

/** The job attributes of the request being served, shared with its child spans. */
const SUBJECT = createContextKey('feedly.pipeline.subject');

interface RequestTrace {
  span: Span;
  context: Context;
  subject: Attributes;
  ended: boolean;
}

const traces = new WeakMap<FastifyRequest, RequestTrace>();

/** The context a request's handler runs in (its span active), or the active one outside a traced request. */
export function requestContext(req: FastifyRequest): Context {
  return traces.get(req)?.context ?? context.active();
}

/** The pipeline attributes (job id, variant id, step, attempt) of a stage request body. */
function subjectAttributes(body: unknown, step: string | undefined): Attributes {
  const a: Attributes = {};
  if (!body || typeof body !== 'object') return a;
  const b = body as Record<string, unknown>;
  if (typeof b.job_id === 'string') a[TRACE_ATTRIBUTES.jobId] = b.job_id;
  if (typeof b.job_variants_id === 'string') a[TRACE_ATTRIBUTES.jobVariantsId] = b.job_variants_id;
  if (typeof b.attempt === 'number') a[TRACE_ATTRIBUTES.attempt] = b.attempt;
  if (step && a[TRACE_ATTRIBUTES.jobId]) a[TRACE_ATTRIBUTES.step] = step;
  return a;
}

function end(t: RequestTrace, status: number | null, error?: string): void {
  if (t.ended) return;
  t.ended = true;
  if (status !== null) t.span.setAttribute('http.response.status_code', status);
  if (status === null || status >= 500) {
    t.span.setAttribute('error.type', status === null ? 'aborted' : String(status));
    t.span.setStatus({ code: SpanStatusCode.ERROR, ...(error ? { message: error } : {}) });
  }
  t.span.end();
}

/**
 * The request spans. `stepOf(url)` names the pipeline step of a stage route
 * (undefined for the other routes).
 */
export const tracingPlugin = fp<{ stepOf: (routeUrl: string) => string | undefined }>(
  (async (app, opts) => {
    app.addHook('onRequest', async (req) => {
      const parent = propagation.extract(ROOT_CONTEXT, req.headers);
      const route = req.routeOptions.url;
      const span = tracer().startSpan(
        route ? `${req.method} ${route}` : req.method,
        {
          kind: SpanKind.SERVER,
          attributes: {
            'http.request.method': req.method,
            'url.path': req.url.split('?')[0] ?? req.url,
            ...(route ? { 'http.route': route } : {}),
          },
        },
        parent,
      );
      const subject: Attributes = {};
      traces.set(req, {
        span,
        context: trace.setSpan(parent, span).setValue(SUBJECT, subject),
        subject,
        ended: false,
      });
    });
    // After validation: the body's job, variant and attempt (a request refused before has none).
    app.addHook('preHandler', async (req) => {
      const t = traces.get(req);
      if (!t) return;
      const route = req.routeOptions.url;
      Object.assign(t.subject, subjectAttributes(req.body, route ? opts.stepOf(route) : undefined));
      t.span.setAttributes(t.subject);
    });
    app.addHook('onResponse', async (req, reply) => {
      const t = traces.get(req);
      if (t) end(t, reply.statusCode);
    });
    app.addHook('onRequestAbort', async (req) => {
      const t = traces.get(req);
      if (t) end(t, null, 'the client went away');
    });
  }) as FastifyPluginAsync<{ stepOf: (routeUrl: string) => string | undefined }>,
  { name: 'stage-api-tracing' },
);

/**
 * Runs `fn` in a child span of the request being served (a model call, a CPU
 * task), with the request's job attributes; outside a request it just runs.
 */
export async function withChildSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> {
  const active = context.active();
  if (!trace.getSpan(active)) return await fn(trace.wrapSpanContext(INVALID_SPAN_CONTEXT));
  const subject = (active.getValue(SUBJECT) as Attributes | undefined) ?? {};
  return await tracer().startActiveSpan(
    name,
    { kind, attributes: { ...subject, ...attributes } },
    active,
    async (span) => {
      try {
        return await fn(span);
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message ?? String(err) });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}
