// Secrets never reach a log line: the TCP-MD5 password of a BGP peer, as the
// agent logs the peer diff on reload and as gobgpd's API spells it.
import test from 'ava';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log/logger.js';
import { desiredPeerSpec, diffPeers } from '../../src/bgp/peer-reconciler.js';
import type { PeerConfig } from '../../src/config/types.js';

function capture(): { stream: Writable; text: () => string } {
  let buf = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      buf += chunk.toString();
      cb();
    },
  });
  return { stream, text: () => buf };
}

const PASSWORD = 'Tr0ub4dor-md5-secret';

test('the peer diff logged on reload, and any object holding a password, log without it', (t) => {
  const out = capture();
  const log = createLogger({ stream: out.stream, level: 'debug' });
  const peer = (address: string): PeerConfig => ({
    address, asn: 64500, localAddress: '', passwordFile: '/etc/edgelb/pw', holdTime: 9, keepalive: 3, multihop: 0, passive: false,
    bfd: { enabled: false, minRxMs: 300, minTxMs: 300, multiplier: 3 }, gracefulRestart: { enabled: false, restartTime: 120 },
  });
  // What the agent logs after a reload that adds one peer and changes another's password.
  const before = [desiredPeerSpec(peer('192.0.2.1'), 64512, 'old-password')];
  const after = [desiredPeerSpec(peer('192.0.2.1'), 64512, PASSWORD), desiredPeerSpec(peer('192.0.2.2'), 64512, PASSWORD)];
  const diff = diffPeers(after, before);
  t.is(diff.add[0]!.password, PASSWORD, 'the diff itself carries the password');
  log.info({ diff }, 'BGP peers reconciled');
  log.child({ component: 'bgp' }).warn({ peer: { conf: { neighbor_address: '192.0.2.2', auth_password: PASSWORD } } }, 'AddPeer failed');
  log.error({ password: PASSWORD, a: { b: { c: { d: { e: { password: PASSWORD } } } } } }, 'deep');
  const text = out.text();
  t.false(text.includes(PASSWORD), text);
  t.false(text.includes('old-password'), text);
  t.is(text.split('\n').filter((l) => l.includes('[redacted]')).length, 3, 'every line says a password was there');
  t.regex(text, /"address":"192\.0\.2\.2"/, 'the rest of the diff is still logged');
});
