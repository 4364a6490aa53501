/**
 * Caps on the tenant-supplied job inputs, in characters (Unicode code points,
 * what PostgreSQL's char_length counts; never bytes: a Korean syllable is one
 * character). The seeders of the CLI and the stage server enforce the same
 * caps (docs/cli-retry.md, "Bounded seed input").
 */
export const INPUT_CAPS = Object.freeze({
  tenant_id: 200,
  product_name: 100,
  tagline_kor: 100,
  ad_copy_eng: 300,
  desc_kor: 2_000,
} as const);

/** A capped input, named by its column (`jobs.tenant_id`, `job_inputs.desc_kor`, ...). */
export type CappedInput = keyof typeof INPUT_CAPS;

/** Length in characters (code points): a surrogate pair counts once, like char_length. */
export function charLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

export interface InputCapViolation {
  input: CappedInput;
  cap: number;
  length: number;
}

/** The inputs longer than their cap (missing and null inputs pass), in INPUT_CAPS order. */
export function inputCapViolations(
  inputs: Partial<Record<CappedInput, string | null | undefined>>,
): InputCapViolation[] {
  const out: InputCapViolation[] = [];
  for (const input of Object.keys(INPUT_CAPS) as CappedInput[]) {
    const value = inputs[input];
    if (typeof value !== 'string') continue;
    const cap = INPUT_CAPS[input];
    // Cheap first: a string of at most `cap` UTF-16 units has at most `cap` characters.
    if (value.length <= cap) continue;
    const length = charLength(value);
    if (length > cap) out.push({ input, cap, length });
  }
  return out;
}
