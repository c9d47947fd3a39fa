// Plain-text views of the agent's state, in the spirit of `cilium status`
// and `gobgp neighbor`: aligned columns, problems in words.
import type { AgentStatus, PeerView, RouteView, ServiceView } from '../agent/control-types.js';

export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export function duration(s: number): string {
  if (s <= 0) return '-';
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${m}m` : m > 0 ? `${m}m${sec}s` : `${sec}s`;
}

export function renderStatus(s: AgentStatus, verbose: boolean): string {
  const up = s.bgp.peers.filter((p) => p.state === 'established').length;
  const xdp = s.datapath.xdp.map((x) => `${x.mode} on ${x.interface}${x.attached ? '' : ' (NOT attached)'}`).join(', ') || 'not attached';
  const lines = [
    ['Node', `${s.node} (edgelb ${s.version}, up ${duration(s.uptimeSeconds)})`],
    ['Config', `${s.configFile} (sha256 ${s.configHash})`],
    ['Health', s.ready ? 'Ready' : `NOT READY: ${s.problems.join('; ')}`],
    ['Drain', s.drain],
    ['Datapath', `${s.datapath.mode} / ${s.datapath.dispatch}, XDP ${xdp}, Maglev ≤ ${s.datapath.maglevTableSize}, ${s.datapath.pinned ? `pinned at ${s.datapath.pinned}` : 'not pinned'}`],
    ['Services', `${s.datapath.services} frontends, ${s.datapath.backends} backends`],
    ['Capacity', renderCapacity(s.datapath.capacity)],
    ['Rejected', renderRejected(s.kubernetes.rejected)],
    ['BGP', `gobgpd ${s.bgp.gobgpd}; ${up}/${s.bgp.peers.length} peers established; ${s.bgp.vipsAnnounced} VIPs announced`],
    ['Kubernetes', s.kubernetes.connected ? `connected${s.kubernetes.leader ? ', IPAM leader' : ''}, ${s.kubernetes.watchRestarts} watch restarts, ${s.kubernetes.services} services, ${s.kubernetes.endpoints} endpoints${s.kubernetes.duplicateName ? `; DUPLICATE edge name (also used by instance ${s.kubernetes.duplicateName})` : ''}` : 'NOT connected'],
  ];
  let out = lines.map(([k, v]) => `${`${k}:`.padEnd(12)}${v}`).join('\n');
  if (verbose) {
    out += '\n\nComponents:\n' + table(['COMPONENT', 'OK', 'DETAIL'], Object.entries(s.components).map(([k, c]) => [k, c.ok ? 'yes' : 'NO', c.detail]));
    if (s.bgp.peers.length > 0) out += '\n\nBGP peers:\n' + renderPeers(s.bgp.peers);
    if (s.datapath.paths.length > 0) {
      out += '\n\nDispatch per node path:\n' + table(['NODE', 'DISPATCH', 'WHY'], s.datapath.paths.map((p) => [p.nodeIp, p.dispatch, p.reason]));
    }
  }
  return out;
}

function usedFree(what: string, c: { used: number; total: number }): string {
  return `${what} ${c.used}/${c.total} used, ${c.total - c.used} free`;
}

/** The datapath's limits: what is used and what is left, in the words of edgelb.yaml. */
export function renderCapacity(c: AgentStatus['datapath']['capacity']): string {
  if (!c) return 'unknown (datapath not loaded)';
  return `${usedFree('services', c.serviceIds)}; ${usedFree('backend ids', c.backendIds)}; ${usedFree('ring slots', c.ringSlots)}; ≤ ${c.maxPortsPerService} ports per Service`;
}

/** Frontends this edge does not serve, by reason; details are in the Services' Events and condition. */
export function renderRejected(r: Record<string, number>): string {
  const parts = Object.entries(r).filter(([, n]) => n > 0).sort(([a], [b]) => (a < b ? -1 : 1));
  if (parts.length === 0) return 'none';
  const n = parts.reduce((s, [, k]) => s + k, 0);
  return `${n} frontend(s) not served: ${parts.map(([k, v]) => `${k} ${v}`).join(', ')} (kubectl get events --field-selector type=Warning)`;
}

export function renderPeers(peers: PeerView[]): string {
  return table(['PEER', 'AS', 'STATE', 'UPTIME', 'BFD', 'SENT'], peers.map((p) => [p.address, p.asn, p.state, duration(p.uptimeSeconds), p.bfd ?? '-', p.routesSent]));
}

export function renderRoutes(routes: RouteView[]): string {
  return table(
    ['PREFIX', 'PEER', 'NEXT HOP', 'AS PATH', 'COMMUNITIES', 'MED', 'LOCPREF'],
    routes.map((r) => [r.prefix, r.peer, r.nextHop, r.asPath || '-', [...r.communities, ...r.largeCommunities].join(' ') || '-', r.med ?? '-', r.localPref ?? '-']),
  );
}

export function renderServices(services: ServiceView[]): string {
  const rows: (string | number)[][] = [];
  for (const s of services) {
    // Adopted from pinned maps and not yet confirmed by Kubernetes: the maps do not keep the Service's name.
    const service = s.service || '-';
    if (s.backends.length === 0) rows.push([s.frontend, service, `${s.mode}/${s.dispatch}`, '(none)', '-', '-', '-', 0, 0]);
    s.backends.forEach((b, i) => {
      rows.push([i === 0 ? s.frontend : '', i === 0 ? service : '', i === 0 ? `${s.mode}/${s.dispatch}` : '', `${b.ip}:${b.port}`, b.node || b.nodeIp, b.state, b.weight, b.packets, b.bytes]);
    });
  }
  return table(['FRONTEND', 'SERVICE', 'MODE', 'BACKEND', 'NODE', 'STATE', 'WEIGHT', 'PACKETS', 'BYTES'], rows);
}
