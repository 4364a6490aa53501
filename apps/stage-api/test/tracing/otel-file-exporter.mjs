/**
 * Preloaded into the stage server process by the trace test
 * (`node --import <this file> dist/server.js`): an OpenTelemetry SDK whose
 * finished spans are appended, one JSON line each, to OTEL_TEST_SPANS_FILE.
 * NodeTracerProvider.register() also installs the AsyncLocalStorage context
 * manager and the W3C trace-context propagator, as a host's SDK would.
 */
import { appendFileSync } from 'node:fs';
import { SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

const file = process.env.OTEL_TEST_SPANS_FILE;
if (!file) throw new Error('OTEL_TEST_SPANS_FILE is not set');

/** A span as the test reads it (the same shape as spanRecord() in the test). */
function record(s) {
  const ctx = s.spanContext();
  return {
    process: 'stage',
    name: s.name,
    kind: s.kind,
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    parentSpanId: s.parentSpanContext?.spanId ?? null,
    scope: s.instrumentationScope.name,
    attributes: s.attributes,
    status: s.status.code,
    startMs: s.startTime[0] * 1e3 + s.startTime[1] / 1e6,
    durationMs: s.duration[0] * 1e3 + s.duration[1] / 1e6,
  };
}

const exporter = {
  export(spans, done) {
    appendFileSync(file, spans.map((s) => `${JSON.stringify(record(s))}\n`).join(''));
    done({ code: 0 });
  },
  shutdown: async () => {},
  forceFlush: async () => {},
};

new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).register();
