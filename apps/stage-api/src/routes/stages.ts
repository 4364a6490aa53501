/**
 * The ten stage routes, one POST each, with typebox schemas for the body and
 * every answer; what each answer means is docs/stage-api.md. The deadline
 * header `x-pipeline-timeout-ms` is read here and never answered with 400: a
 * missing or malformed value leaves the step's own timeout.
 */
import { routeOf } from '@feedlyai/pipeline-core';
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox';
import { context } from '@opentelemetry/api';
import { STAGES } from '../stages/definitions.js';
import { parseTimeoutHeader, TIMEOUT_HEADER } from '../stages/deadline.js';
import { handleStageRequest, type StageContext, type StageHooks } from '../stages/runner.js';
import { requestContext } from '../tracing.js';

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export const StageBody = Type.Object({
  job_id: Type.String({ pattern: UUID, description: 'the job (uuid)' }),
  // The 200-character cap of a job's tenant_id is checked on the job (422 input_too_long); this bounds the body.
  tenant_id: Type.String({ minLength: 1, maxLength: 1000, description: 'must own the job' }),
  job_variants_id: Type.Optional(Type.String({ pattern: UUID, description: 'variant-level steps: one variant' })),
  attempt: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 1_000_000, description: "the dispatcher's fencing token" }),
  ),
});

const VariantResult = Type.Object(
  {
    job_variants_id: Type.Optional(Type.String()),
    status: Type.String(),
    attempt: Type.Optional(Type.Integer()),
    method: Type.Optional(Type.String()),
    error: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);

const StageAnswer = Type.Object(
  {
    step: Type.String(),
    job_id: Type.String(),
    job_variants_id: Type.Optional(Type.String()),
    status: Type.String({ description: 'done | failed | superseded | conflict' }),
    attempt: Type.Optional(Type.Integer()),
    method: Type.Optional(Type.String({ description: 'what produced the result (vlm, heuristic, yolo, ...)' })),
    error: Type.Optional(Type.String()),
    processed: Type.Optional(Type.Integer()),
    results: Type.Optional(Type.Array(VariantResult)),
  },
  { additionalProperties: true },
);

export const ErrorAnswer = Type.Object(
  {
    error: Type.String(),
    code: Type.Optional(
      Type.String({ description: 'job_not_found (404), input_too_long or asset_tenant_mismatch (422)' }),
    ),
    field: Type.Optional(Type.String({ description: 'the offending column (422)' })),
  },
  { additionalProperties: true },
);

export interface StageRoutesOptions {
  ctx: StageContext;
  hooks?: StageHooks;
}

export const stageRoutes: FastifyPluginAsyncTypebox<StageRoutesOptions> = async (app, opts) => {
  for (const def of Object.values(STAGES)) {
    app.post(
      routeOf(def.step),
      {
        schema: {
          description: `Stage ${def.step}`,
          body: StageBody,
          response: {
            200: StageAnswer,
            400: ErrorAnswer,
            401: ErrorAnswer,
            404: ErrorAnswer,
            409: Type.Union([StageAnswer, ErrorAnswer]),
            413: ErrorAnswer,
            422: ErrorAnswer,
            429: ErrorAnswer,
            500: Type.Union([StageAnswer, ErrorAnswer]),
            503: Type.Union([StageAnswer, ErrorAnswer]),
          },
        },
      },
      async (req, reply) => {
        const timeoutMs = parseTimeoutHeader(req.headers[TIMEOUT_HEADER]);
        // In the request's span: the model calls and CPU tasks of the run are its children (docs/tracing.md).
        const r = await context.with(requestContext(req), () =>
          handleStageRequest(opts.ctx, def, req.body, opts.hooks, { timeoutMs }),
        );
        if (r.headers) reply.headers(r.headers);
        return reply.code(r.statusCode as 200).send(r.body as never);
      },
    );
  }
};
