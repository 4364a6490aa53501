/**
 * The text of the creatives: ad copy without a model (templates.ts, method
 * 'template'), hashtags without a model (hashtags.ts), and the prompts and
 * JSON schemas sent to the OpenAI-compatible LLM/VLM when one is configured
 * (prompts.ts).
 */
export { descriptionNouns, templateHashtags } from './hashtags.js';
export {
  AD_COPY_SCHEMA,
  buildAdCopyPrompt,
  buildCaptionPrompt,
  buildVlmAnalyzePrompt,
  buildVlmJudgePrompt,
  CAPTION_SCHEMA,
  KOREAN_COPY_SCHEMA,
  type PromptPair,
  VLM_ANALYZE_SCHEMA,
  VLM_JUDGE_SCHEMA,
} from './prompts.js';
export {
  CAPTION_MAX_CHARS,
  HASHTAGS_MAX,
  HEADLINE_MAX_CHARS,
  productWords,
  type TemplateInputs,
  type ToneKey,
  templateCaption,
  templateHeadline,
  templateKoreanCopy,
  toneKey,
} from './templates.js';
