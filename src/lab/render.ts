// `npm run lab -- status` as text.
import type { LabDescription } from './lab.js';

export function renderStatus(d: LabDescription): string {
  const out: string[] = [];
  out.push(`lab ${d.prefix} (${d.phase}, since ${d.createdAt})`);
  out.push(`  dir         ${d.dir}`);
  out.push(`  kubeconfig  ${d.kubeconfig}`);
  out.push(`  API server  ${d.apiServer} (in ${d.namespaces.find((n) => n.endsWith('mgmt'))})`);
  out.push(`  kubectl     npm run lab -- kubectl get svc   (or: ${d.kubectl} …)`);
  out.push(`  options     mode=${d.options.mode} dispatch=${d.options.dispatch} bfd=${d.options.bfd}${d.options.appliance ? ' appliance=edge1' : ''}`);
  out.push(`  client      ${d.client.ns}  ${d.client.addresses.join(', ')}  via ${d.client.gateway}`);
  out.push(`  router      ${d.router.ns}  ${d.router.address} (fabric), ${d.router.clientSide} (client side), AS ${d.router.asn}`);
  out.push(`              vtysh: ${d.router.vtysh}`);
  for (const e of d.edges) {
    if (e.appliance) {
      const a = e.appliance;
      out.push(`  ${e.name.padEnd(11)} ${e.ns}  ${e.address} AS ${e.asn}: APPLIANCE VM (${a.image}, qemu pid ${a.pid ?? '-'}), ${a.state}${a.readySeconds !== null ? ` after ${a.readySeconds} s` : ''}`);
      out.push(`              NICs on taps ${a.taps.uplink} (fabric, ${a.macs.uplink}) and ${a.taps.mgmt} (mgmt ${e.mgmt}, ${a.macs.mgmt}); config stick ${a.stick}`);
      out.push(`              serial console ${a.serialLog}`);
      if (a.state !== 'ready') out.push(`              ${a.detail}`);
      continue;
    }
    out.push(`  ${e.name.padEnd(11)} ${e.ns}  ${e.address} AS ${e.asn}, uplink ${e.uplink}, mgmt ${e.mgmt}; agent: ${e.agent}`);
    if (e.agent !== 'ready' && e.detail) out.push(`              ${e.detail.split('\n')[0]}`);
    out.push(`              config ${e.config}  socket ${e.socket}  log ${e.log}`);
  }
  for (const n of d.nodes) {
    out.push(`  ${n.name.padEnd(11)} ${n.ns}  ${n.address}, pods ${n.podCidr}; node datapath: ${n.datapath?.attached ? 'attached' : 'not attached'}`);
    for (const p of n.pods) out.push(`    pod ${p.name.padEnd(8)} ${p.ns}  ${p.ip}`);
  }
  out.push(`  VIP pool    ${d.pool}; pod ports http ${d.ports.http}/tcp, udp ${d.ports.udp}/udp`);
  if (d.vipError) out.push(`  VIPs        (API server not answering: ${d.vipError})`);
  else if (d.vips.length === 0) out.push('  VIPs        none (no LoadBalancer Service yet)');
  else for (const v of d.vips) out.push(`  VIP         ${v.service}: ${v.ips.length ? v.ips.join(', ') : '<pending>'} ports ${v.ports.join(' ')}`);
  for (const p of d.problems) out.push(`  PROBLEM     ${p.split('\n')[0]}`);
  for (const w of d.workarounds) out.push(`  WORKAROUND  ${w}`);
  return out.join('\n');
}
