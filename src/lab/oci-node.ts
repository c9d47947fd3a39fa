// A lab node's agent run from the node agent's OCI image (npm run
// image:node) by runc, the way the DaemonSet in deploy/node-agent.yaml runs
// it: the node's network namespace (host network), only the capabilities
// the DaemonSet grants (BPF, NET_ADMIN, PERFMON), a read-only root, bpffs
// bind-mounted, the kubeconfig mounted read-only. `umoci unpack` turns the
// OCI layout into a runtime bundle; this edits its config.json.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './netns.js';

/** The capabilities deploy/node-agent.yaml adds (after dropping ALL). */
export const NODE_AGENT_CAPS = ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON'];

export interface OciNodeOptions {
  /** OCI image layout directory and tag (images/out/edgelb-node.oci, the package version). */
  layout: string;
  tag: string;
  bundle: string;
  netnsPath: string;
  kubeconfig: string;
  args: string[];
}

interface RuntimeSpec {
  process: { args: string[]; terminal?: boolean; rlimits?: unknown; capabilities?: Record<string, string[]>; noNewPrivileges?: boolean };
  root: { path: string; readonly?: boolean };
  mounts: { destination: string; type?: string; source?: string; options?: string[] }[];
  linux: { namespaces: { type: string; path?: string }[]; resources?: unknown; cgroupsPath?: string };
}

/** Pure: the runtime spec umoci wrote, adjusted to run like the DaemonSet's container. */
export function nodeAgentSpec(spec: RuntimeSpec, o: Pick<OciNodeOptions, 'netnsPath' | 'kubeconfig' | 'args'>): RuntimeSpec {
  const caps = [...NODE_AGENT_CAPS];
  return {
    ...spec,
    process: {
      ...spec.process,
      args: ['/opt/edgelb/bin/edgelb', ...o.args],
      terminal: false,
      // Resource limits stay the host's (this sandbox cannot raise them; a kubelet would set them).
      rlimits: undefined,
      noNewPrivileges: true,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
    },
    root: { ...spec.root, readonly: true },
    mounts: [
      // The lab host has cgroup v1 in a hybrid layout runc cannot mount inside; the agent needs none.
      ...spec.mounts.filter((m) => m.destination !== '/sys/fs/cgroup'),
      { destination: '/sys/fs/bpf', type: 'bind', source: '/sys/fs/bpf', options: ['rbind', 'rw'] },
      { destination: '/etc/edgelb/kubeconfig', type: 'bind', source: o.kubeconfig, options: ['bind', 'ro'] },
    ],
    linux: {
      ...spec.linux,
      resources: undefined,
      cgroupsPath: undefined,
      namespaces: spec.linux.namespaces.map((n) => (n.type === 'network' ? { type: 'network', path: o.netnsPath } : n)),
    },
  };
}

/** Unpacks the image into a bundle and writes its config; returns the runc command line. */
export async function prepareOciNode(o: OciNodeOptions): Promise<string[]> {
  if (!existsSync(join(o.layout, 'index.json'))) throw new Error(`${o.layout} is not an OCI image layout: build it with npm run image:node`);
  rmSync(o.bundle, { recursive: true, force: true });
  await run(['umoci', 'unpack', '--image', `${o.layout}:${o.tag}`, o.bundle], { timeoutMs: 120_000 });
  const file = join(o.bundle, 'config.json');
  const spec = nodeAgentSpec(JSON.parse(readFileSync(file, 'utf8')) as RuntimeSpec, o);
  writeFileSync(file, JSON.stringify(spec, null, 2));
  return ['runc', 'run', '--bundle', o.bundle, `edgelb-${o.bundle.replace(/[^a-zA-Z0-9]+/g, '-').slice(-40)}`];
}
