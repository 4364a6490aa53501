/**
 * The ten stage routes (CONTRACTS' "Stage HTTP API"), one POST each, with
 * typebox schemas for the body and every answer.
 */
import { routeOf } from '@feedlyai/pipeline-core';
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox';
import { STAGES } from '../stages/definitions.js';
import { handleStageRequest, type StageContext, type StageHooks } from '../stages/runner.js';

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export const StageBody = Type.Object({
  job_id: Type.String({ pattern: UUID, description: 'the job (uuid)' }),
  tenant_id: Type.String({ minLength: 1, maxLength: 200, description: 'must own the job' }),
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

export const ErrorAnswer = Type.Object({ error: Type.String() }, { additionalProperties: true });

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
            429: ErrorAnswer,
            500: Type.Union([StageAnswer, ErrorAnswer]),
            503: ErrorAnswer,
          },
        },
      },
      async (req, reply) => {
        const r = await handleStageRequest(opts.ctx, def, req.body, opts.hooks);
        if (r.headers) reply.headers(r.headers);
        return reply.code(r.statusCode as 200).send(r.body as never);
      },
    );
  }
};
