/** The engine lives in ./engine/ (split by concern); this module keeps the public import path. */
export {
  type CloseOptions,
  createPipelineEngine,
  DEFAULT_DEAD_AFTER_MS,
  type EngineCounters,
  type EngineEventName,
  type EngineEvents,
  type EngineStatus,
  type JobEvent,
  type JobFinishedEvent,
  PipelineEngine,
  type PipelineEngineOptions,
  type RecoverResult,
  type StepEvent,
} from './engine/engine.js';
