// Builds the agent's parts from the config and connects them: Kubernetes →
// (datapath tables first, then BGP announcements). Datapath health is
// coupled to BGP so that an edge that cannot forward stops attracting
// traffic (BFD down → the router fails over at once).
import type { EdgelbConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import type { AgentParts } from './agent.js';
import { BgpAgentPart } from './bgp-part.js';
import { DatapathAgentPart } from './datapath-part.js';
import { KubernetesAgentPart } from './k8s-part.js';

export async function buildParts(config: EdgelbConfig, log: Logger): Promise<AgentParts> {
  const datapath = new DatapathAgentPart(config, log);
  const bgp = new BgpAgentPart(config, log);
  const kubernetes = new KubernetesAgentPart(config, log, {
    applyServices: (changed, removed) => datapath.apply(changed, removed),
    applyVips: async (vips) => {
      await bgp.setVips(vips);
      kubernetes.setAdvertising(vips.length > 0);
    },
  });
  const timer = setInterval(() => {
    void bgp.speaker.setDatapathHealthy(datapath.health().ok).catch(() => undefined);
  }, 500);
  timer.unref();
  return { datapath, bgp, kubernetes };
}
