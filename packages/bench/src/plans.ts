/**
 * Plans logged by auto_explain (`auto_explain.log_format = json`) on the
 * server's stderr: extracted, summarised as node types, and checked for
 * sequential scans on the pipeline's tables.
 */

export interface LoggedPlan {
  query: string;
  durationMs: number | null;
  /** Node types, depth-first, e.g. "Index Scan using jobs_variants_actionable_idx on jobs_variants". */
  nodes: string[];
  seqScans: string[];
}

interface PlanNode {
  'Node Type'?: string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function walk(node: PlanNode, out: string[], seq: string[]): void {
  const type = node['Node Type'] ?? '?';
  let label = type;
  if (node['Index Name']) label += ` using ${node['Index Name']}`;
  if (node['Relation Name']) label += ` on ${node['Relation Name']}`;
  out.push(label);
  if (type === 'Seq Scan' && node['Relation Name']) seq.push(node['Relation Name']);
  for (const child of node.Plans ?? []) walk(child, out, seq);
}

/** Summarises one EXPLAIN (FORMAT JSON) document (the array form or one element). */
export function summarisePlan(doc: unknown, query = ''): LoggedPlan {
  const top = (Array.isArray(doc) ? doc[0] : doc) as { Plan?: PlanNode; 'Query Text'?: string };
  const nodes: string[] = [];
  const seqScans: string[] = [];
  if (top?.Plan) walk(top.Plan, nodes, seqScans);
  return { query: (top?.['Query Text'] ?? query).replace(/\s+/g, ' ').trim(), durationMs: null, nodes, seqScans };
}

/** Every auto_explain plan found in a chunk of server log text. */
export function plansFromLog(text: string): LoggedPlan[] {
  const lines = text.split('\n');
  const plans: LoggedPlan[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const m = line.match(/duration: ([\d.]+) ms\s+plan:\s*$/);
    if (!m) continue;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && /^\t/.test(lines[j] as string)) {
      body.push((lines[j] as string).slice(1));
      j++;
    }
    i = j - 1;
    try {
      const plan = summarisePlan(JSON.parse(body.join('\n')));
      plan.durationMs = Number(m[1]);
      plans.push(plan);
    } catch {
      // a plan cut by the log chunking: ignored
    }
  }
  return plans;
}
