import type { Step } from '../steps.js';

/** One step of one variant (jobVariantsId set) or of one job (job-level step). */
export interface StepSubject {
  jobId: string;
  jobVariantsId: string | null;
  step: Step;
}

export function describeSubject(s: StepSubject): string {
  return s.jobVariantsId ? `variant ${s.jobVariantsId} ${s.step}` : `job ${s.jobId} ${s.step}`;
}
