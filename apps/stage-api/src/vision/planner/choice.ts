/**
 * The planner's choice (../planner.ts): the order of the proposals (valid by
 * score with the best of each anchor first, so the k-th variant gets a
 * genuinely different placement; then the rejected ones with their reasons)
 * and which proposal the k-th variant takes.
 */
import type { Box, PlacementProposal, PlanResult } from '../types.js';
import type { Candidate } from './candidates.js';
import { round4 } from './scoring.js';

/** The scored candidates as ranked proposals, at most `maxProposals` (three quarters of them valid at most). */
export function rankProposals(cands: Candidate[], maxProposals?: number): PlacementProposal[] {
  const valid = cands.filter((c) => !c.rejected).sort((a, b) => b.score - a.score);
  const firstPerAnchor: Candidate[] = [];
  const rest: Candidate[] = [];
  const anchorsSeen = new Set<string>();
  for (const c of valid) {
    const key = `${c.anchor}`;
    if (anchorsSeen.has(key)) rest.push(c);
    else {
      anchorsSeen.add(key);
      firstPerAnchor.push(c);
    }
  }
  const rejected = cands.filter((c) => c.rejected).sort((a, b) => b.score - a.score);
  const max = maxProposals ?? Number.POSITIVE_INFINITY;
  const validOut = [...firstPerAnchor, ...rest].slice(0, Math.max(1, Math.floor(max * 0.75)));
  const ordered = [...validOut, ...rejected.slice(0, Math.max(0, max - validOut.length))];
  return ordered.map((c, i) => {
    const p: PlacementProposal = {
      rank: i,
      region: c.region,
      lines: c.lines.map((l) => ({ ...l, box: round2Box(l.box) })),
      score: round4(c.score),
      components: { ...c.components },
      rejected: c.rejected,
      anchor: c.anchor,
    };
    if (c.canvas) p.canvas = c.canvas;
    return p;
  });
}

/**
 * The k-th variant (creation_order k, 1-based) takes the k-th ranked valid
 * proposal, wrapping around when there are fewer valid proposals than
 * variants. Returns an index into plan.proposals; 0 when none is valid.
 */
export function chooseProposalForVariant(plan: PlanResult, creationOrder: number): number {
  const validIdx = plan.proposals.map((p, i) => (p.rejected ? -1 : i)).filter((i) => i >= 0);
  if (validIdx.length === 0) return 0;
  const k = Math.max(1, Math.floor(Number.isFinite(creationOrder) ? creationOrder : 1));
  return validIdx[(k - 1) % validIdx.length]!;
}

function round2Box(b: Box): Box {
  return {
    x: Math.round(b.x * 100) / 100,
    y: Math.round(b.y * 100) / 100,
    w: Math.round(b.w * 100) / 100,
    h: Math.round(b.h * 100) / 100,
  };
}
