// Builds the agent's parts from the config and connects them: Kubernetes →
// (datapath tables first, then BGP announcements). Datapath health is
// coupled to BGP (inside the BGP part, so it stops with it) so that an edge
// that cannot forward stops attracting traffic: BFD down → the router fails
// over at once.
import type { EdgelbConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import type { AgentParts } from './agent.js';
import { ApplyTimer } from './apply-timer.js';
import { BgpAgentPart } from './bgp-part.js';
import { DatapathAgentPart } from './datapath-part.js';
import { KubernetesAgentPart } from './k8s-part.js';

export async function buildParts(config: EdgelbConfig, log: Logger): Promise<AgentParts> {
  const datapath = new DatapathAgentPart(config, log);
  const bgp = new BgpAgentPart(config, log, () => datapath.health().ok);
  const applyTimer = new ApplyTimer();
  const kubernetes = new KubernetesAgentPart(config, log, {
    upsert: (services) => applyTimer.time('datapath', () => datapath.upsert(services)),
    remove: (keys) => applyTimer.time('datapath', () => datapath.remove(keys)),
    applyVips: (vips) => applyTimer.timeAsync('bgp', () => bgp.setVips(vips)),
    keys: () => datapath.keys(),
    adoptedFrontends: () => datapath.adoptedFrontends(),
    capacity: () => datapath.capacity(),
  });
  // The other edges count this one as advertising only while a BGP session
  // is established and it is not drained.
  bgp.onAdvertisingChange((v) => kubernetes.setAdvertising(v));
  return { datapath, bgp, kubernetes, applyTimer };
}
