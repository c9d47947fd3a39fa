// What status and edgelb_bfd_session_up say about each peer's BFD: bfdd's
// own session to that peer, not whether bfdd runs.
import test from 'ava';
import { BgpAgentPart, peerBfd } from '../../src/agent/bgp-part.js';
import type { EdgelbConfig } from '../../src/config/types.js';
import { silentLogger } from '../../src/log/logger.js';
import type { PeerStatus, SpeakerStatus } from '../../src/bgp/speaker.js';

const peer = (address: string): PeerStatus => ({ address, asn: 65000, state: 'established', adminState: 'up', uptimeSeconds: 5, upSince: 1, receivedUpdates: 0, sentUpdates: 0, advertised: 0 });

/** The part as the agent holds it, with the speaker's last status read. */
function partWith(st: SpeakerStatus): BgpAgentPart {
  const part = new BgpAgentPart({} as EdgelbConfig, silentLogger());
  (part as unknown as { last: SpeakerStatus }).last = st;
  return part;
}

const status = (bfd: SpeakerStatus['bfd']): SpeakerStatus => ({
  gobgpdHealthy: true, drain: 'active', vips: 0, announced: 0, lastError: null,
  peers: [peer('192.0.2.1'), peer('192.0.2.2'), peer('2001:db8::1'), peer('192.0.2.9')],
  bfd,
});

test('each peer shows its own BFD session: one down while bfdd runs healthy reads down, a peer without BFD reads none', (t) => {
  const part = partWith(status({
    running: true, healthy: true,
    peers: ['192.0.2.1', '192.0.2.2', '2001:db8::1'],
    sessions: [{ peer: '192.0.2.1', status: 'up' }, { peer: '192.0.2.2', status: 'down' }, { peer: '2001:DB8:0::1', status: 'up' }],
  }));
  t.deepEqual(part.peers().map((p) => [p.address, p.bfd]), [
    ['192.0.2.1', 'up'],
    ['192.0.2.2', 'down'],
    ['2001:db8::1', 'up'], // bfdd and gobgpd may spell an address differently
    ['192.0.2.9', null], // no BFD configured for it
  ]);
});

test('BFD peers read down while bfdd is not running or is held down (datapath unhealthy); no BFD at all: none', (t) => {
  const bfd = { running: false, healthy: true, peers: ['192.0.2.1'], sessions: [] };
  t.is(peerBfd('192.0.2.1', bfd), 'down');
  t.is(peerBfd('192.0.2.1', { ...bfd, running: true, healthy: false, sessions: [{ peer: '192.0.2.1', status: 'up' }] }), 'down');
  t.is(peerBfd('192.0.2.1', { ...bfd, running: true, sessions: [{ peer: '192.0.2.1', status: 'init' }] }), 'down');
  t.is(peerBfd('192.0.2.1', null), null);
  t.deepEqual(partWith(status(null)).peers().map((p) => p.bfd), [null, null, null, null]);
});
