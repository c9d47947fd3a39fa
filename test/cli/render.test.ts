import test from 'ava';
import { renderCapacity, renderRejected, renderServices, renderStatus } from '../../src/cli/render.js';
import type { AgentStatus } from '../../src/agent/control-types.js';

const status: AgentStatus = {
  node: 'edge-a', version: '0.1.0', configFile: '/etc/edgelb/edgelb.yaml', configHash: '0123456789ab', uptimeSeconds: 5, ready: false,
  problems: ['kubernetes: another machine (instance bbbb) also presents the edge name edge-a: give each edge its own node.name'], drain: 'active', components: {},
  datapath: {
    mode: 'dsr', dispatch: 'auto', xdp: [{ interface: 'eth0', mode: 'native', attached: true }], maglevTableSize: 16381, pinned: '/sys/fs/bpf/edgelb', paths: [], services: 3, backends: 7,
    capacity: { ringSlots: { used: 768, total: 16777216 }, backendIds: { used: 7, total: 262143 }, serviceIds: { used: 3, total: 65535 }, maxPortsPerService: 100 },
  },
  bgp: { gobgpd: 'up', peers: [], vipsAnnounced: 2 },
  kubernetes: { connected: true, leader: false, watchRestarts: 0, services: 3, endpoints: 7, rejected: { UnsupportedFamily: 1, TooManyPorts: 0, OutOfRingSlots: 2 }, duplicateName: 'bbbb' },
};

test('status: capacity used and free, rejected frontends by reason, a duplicate edge name', (t) => {
  const out = renderStatus(status, false);
  t.regex(out, /^Capacity:\s+services 3\/65535 used, 65532 free; backend ids 7\/262143 used, 262136 free; ring slots 768\/16777216 used, 16776448 free; ≤ 100 ports per Service$/m);
  t.regex(out, /^Rejected:\s+3 frontend\(s\) not served: OutOfRingSlots 2, UnsupportedFamily 1 \(kubectl get events --field-selector type=Warning\)$/m);
  t.regex(out, /^Kubernetes:\s+connected, .*; DUPLICATE edge name \(also used by instance bbbb\)$/m);
  t.regex(out, /^Health:\s+NOT READY: kubernetes: another machine/m);
  t.is(renderRejected({}), 'none');
  t.is(renderCapacity(null), 'unknown (datapath not loaded)');
});

test('service list: a frontend adopted from pinned maps shows service "-"', (t) => {
  const out = renderServices([{ frontend: '192.0.2.1:80/TCP', service: '', mode: 'dsr', dispatch: 'auto', packets: 0, bytes: 0, backends: [] }]);
  t.regex(out, /^192\.0\.2\.1:80\/TCP\s+-\s+dsr\/auto\s+\(none\)/m);
});
