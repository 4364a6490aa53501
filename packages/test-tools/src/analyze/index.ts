/**
 * The result analyzer of seed 003 (`feedly-pipeline analyze`): everything the
 * stage server stored for a job, or a tenant's newest jobs, as one report
 * (query.ts, read through @feedlyai/pipeline-views; model.ts), rendered as
 * text (text.ts), JSON, or a self-contained HTML page with the creatives
 * beside their scores (html.ts).
 */
export { renderHtml } from './html.js';
export {
  type AnalyzedJob,
  type AnalyzedVariant,
  type AnalyzeReport,
  type Box,
  type FlatStepTiming,
  flatStageTimings,
  toAnalyzedJob,
} from './model.js';
export { type AnalyzeOptions, analyzeJobs } from './query.js';
export { renderSummary, renderText, scoreLine } from './text.js';
