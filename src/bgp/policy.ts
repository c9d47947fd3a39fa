// Pure generation of gobgpd's routing policy: "export only our VIPs, import
// nothing", plus per-VIP restriction to a subset of peers.
//
// GoBGP (v3) only has per-neighbor policy for route-server clients; for normal
// peers all policy hangs off the "global" table. The export policy is
// evaluated once per destination peer, and a neighbor-set condition then
// matches the *destination* (NeighborCondition uses PolicyOptions.Info). So a
// restricted VIP carries an internal large community (the "mark", see
// attributes.ts) naming its peer group, and the export policy is:
//   for each group G: mark G AND neighbor ∈ peers(G) AND local → strip mark, accept
//   any mark                                                    → reject
//   local (added over our API)                                  → accept
//   default                                                     → reject
// The mark travels with the path itself, so there is no window in which a
// restricted VIP could leak to the wrong peer while sets are being updated.
// Import: only locally originated paths (import policy also runs on paths we
// add over the API) are accepted; everything a peer sends is rejected.
import type { ApiDefinedSet, ApiPolicy, ApiPolicyAssignment, ApiStatement } from './api-types.js';
import { peerGroupId, restrictMark, RESTRICT_MARK_LOCAL1 } from './attributes.js';
import { isIpv4 } from '../net/ip.js';

export const EXPORT_POLICY = 'edgelb-export';
export const IMPORT_POLICY = 'edgelb-import';

export interface PolicyPlan {
  definedSets: ApiDefinedSet[];
  policies: ApiPolicy[];
  assignments: ApiPolicyAssignment[];
}

function hostPrefix(addr: string): string {
  return isIpv4(addr) ? `${addr}/32` : `${addr}/128`;
}

/** Distinct, sorted peer subsets (non-empty) used by the desired VIPs. */
export function peerGroups(subsets: string[][]): string[][] {
  const byId = new Map<number, string[]>();
  for (const s of subsets) {
    if (s.length === 0) continue;
    byId.set(peerGroupId(s), [...new Set(s)].sort());
  }
  return [...byId.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
}

/**
 * The peer groups of a policy buildPolicy() made, read back from its
 * neighbor sets (edgelb-peers-<id>): what a restarted agent adopts with the
 * paths. Sets whose peers do not hash to their id are not ours.
 */
export function groupsOfNeighborSets(sets: ApiDefinedSet[]): string[][] {
  const groups: string[][] = [];
  for (const s of sets) {
    const id = /^edgelb-peers-(\d+)$/.exec(s.name)?.[1];
    if (s.defined_type !== 'NEIGHBOR' || id === undefined) continue;
    const peers = (s.list ?? []).map((p) => p.replace(/\/(32|128)$/, ''));
    if (peers.length > 0 && peerGroupId(peers) === Number(id)) groups.push(peers);
  }
  return peerGroups(groups);
}

export function buildPolicy(localAsn: number, groups: string[][]): PolicyPlan {
  const definedSets: ApiDefinedSet[] = [
    // Any of our marks, whatever the group: the catch-all reject below.
    { defined_type: 'LARGE_COMMUNITY', name: 'edgelb-mark-any', list: [`^${localAsn}:${RESTRICT_MARK_LOCAL1}:[0-9]+$`] },
  ];
  const statements: ApiStatement[] = [];
  for (const peers of groups) {
    const id = peerGroupId(peers);
    const mark = restrictMark(localAsn, peers);
    definedSets.push(
      { defined_type: 'LARGE_COMMUNITY', name: `edgelb-mark-${id}`, list: [mark] },
      { defined_type: 'NEIGHBOR', name: `edgelb-peers-${id}`, list: peers.map(hostPrefix) },
    );
    statements.push({
      name: `edgelb-allow-${id}`,
      conditions: {
        large_community_set: { type: 'ANY', name: `edgelb-mark-${id}` },
        neighbor_set: { type: 'ANY', name: `edgelb-peers-${id}` },
        route_type: 'ROUTE_TYPE_LOCAL',
      },
      actions: { route_action: 'ACCEPT', large_community: { type: 'REMOVE', communities: [mark] } },
    });
  }
  statements.push(
    {
      name: 'edgelb-deny-marked',
      conditions: { large_community_set: { type: 'ANY', name: 'edgelb-mark-any' } },
      actions: { route_action: 'REJECT' },
    },
    { name: 'edgelb-export-local', conditions: { route_type: 'ROUTE_TYPE_LOCAL' }, actions: { route_action: 'ACCEPT' } },
  );
  const policies: ApiPolicy[] = [
    { name: EXPORT_POLICY, statements },
    {
      name: IMPORT_POLICY,
      statements: [{ name: 'edgelb-import-local', conditions: { route_type: 'ROUTE_TYPE_LOCAL' }, actions: { route_action: 'ACCEPT' } }],
    },
  ];
  const assignments: ApiPolicyAssignment[] = [
    { name: 'global', direction: 'EXPORT', policies: [{ name: EXPORT_POLICY }], default_action: 'REJECT' },
    { name: 'global', direction: 'IMPORT', policies: [{ name: IMPORT_POLICY }], default_action: 'REJECT' },
  ];
  return { definedSets, policies, assignments };
}

/** Fingerprint of a plan, to skip re-applying an unchanged policy. */
export function policyFingerprint(p: PolicyPlan): string {
  return JSON.stringify(p);
}
