// The generated firewall, applied in a scratch "host" namespace, judged by
// real TCP connections from a second namespace: the configured peer reaches
// BGP (179), any other source does not; SSH only from firewall.sshFrom; the
// metrics port only on its listen address; an unlisted port is closed.
import test from 'ava';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { parseConfig } from '../../src/config/load.js';
import { applyRuleset } from '../../src/firewall/apply.js';
import { firewallRuleset } from '../../src/firewall/ruleset.js';

const id = `${process.pid % 10000}${Math.floor(Math.random() * 100)}`;
const HOST = `elbfwh${id}`;
const CLIENT = `elbfwc${id}`;
const NET = '10.251.77';
const H = `${NET}.1`; // host under test (also its metrics address)
const H2 = `${NET}.9`; // a second host address, not the metrics one
const PEER = `${NET}.2`; // configured BGP peer, allowed SSH source
const OTHER = `${NET}.3`; // neither
// The same roles over IPv6 (a ULA /64 on the same link).
const NET6 = `fd00:fe77:${(process.pid % 0xffff).toString(16)}`;
const H6 = `${NET6}::1`;
const PEER6 = `${NET6}::2`;
const OTHER6 = `${NET6}::3`;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
const listeners: ChildProcess[] = [];

test.before(() => {
  ip('netns', 'add', HOST);
  ip('netns', 'add', CLIENT);
  ip('link', 'add', `fwh${id}`, 'netns', HOST, 'type', 'veth', 'peer', 'name', `fwc${id}`, 'netns', CLIENT);
  ip('-n', HOST, 'addr', 'add', `${H}/24`, 'dev', `fwh${id}`);
  ip('-n', HOST, 'addr', 'add', `${H2}/24`, 'dev', `fwh${id}`);
  ip('-n', CLIENT, 'addr', 'add', `${PEER}/24`, 'dev', `fwc${id}`);
  ip('-n', CLIENT, 'addr', 'add', `${OTHER}/24`, 'dev', `fwc${id}`);
  // nodad: usable at once (no duplicate address detection wait).
  ip('-n', HOST, 'addr', 'add', `${H6}/64`, 'dev', `fwh${id}`, 'nodad');
  ip('-n', CLIENT, 'addr', 'add', `${PEER6}/64`, 'dev', `fwc${id}`, 'nodad');
  ip('-n', CLIENT, 'addr', 'add', `${OTHER6}/64`, 'dev', `fwc${id}`, 'nodad');
  for (const ns of [HOST, CLIENT]) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  ip('-n', HOST, 'link', 'set', `fwh${id}`, 'up');
  ip('-n', CLIENT, 'link', 'set', `fwc${id}`, 'up');
  // Listeners answer "hi" on every port we probe.
  for (const port of [179, 22, 9472, 8080]) {
    // TCP6-LISTEN is dual-stack (IPv4 arrives mapped) unless ipv6only is set.
    const l = spawn('ip', ['netns', 'exec', HOST, 'socat', `TCP6-LISTEN:${port},reuseaddr,fork`, 'SYSTEM:echo hi'], { stdio: 'ignore' });
    listeners.push(l);
  }
  // BFD control (single-hop) answers each datagram.
  listeners.push(spawn('ip', ['netns', 'exec', HOST, 'socat', 'UDP6-RECVFROM:3784,reuseaddr,fork', 'SYSTEM:echo hi'], { stdio: 'ignore' }));
});

test.after.always(() => {
  for (const l of listeners) l.kill('SIGKILL');
  for (const ns of [HOST, CLIENT]) spawnSync('ip', ['netns', 'del', ns]);
});

const bracket = (a: string) => (a.includes(':') ? `[${a}]` : a);

/** TCP connect from CLIENT with a chosen source; true when the listener answered. */
function connects(from: string, to: string, port: number): boolean {
  const proto = to.includes(':') ? 'TCP6' : 'TCP';
  const r = spawnSync('ip', ['netns', 'exec', CLIENT, 'socat', '-T', '2', 'STDIO', `${proto}:${bracket(to)}:${port},bind=${bracket(from)},connect-timeout=2`], {
    input: '', timeout: 8000, encoding: 'utf8',
  });
  return r.status === 0 && r.stdout.includes('hi');
}

/** One UDP datagram from CLIENT with a chosen source; true when an answer came back. */
function udpAnswers(from: string, to: string, port: number): boolean {
  const r = spawnSync('ip', ['netns', 'exec', CLIENT, 'socat', '-T', '2', 'STDIO', `UDP6:${bracket(to)}:${port},bind=${bracket(from)}`], {
    input: 'bfd\n', timeout: 8000, encoding: 'utf8',
  });
  return r.status === 0 && r.stdout.includes('hi');
}

/**
 * For probes that must succeed: up to three tries, so a probe process starved
 * on a busy machine is not read as a closed port. (Probes that must fail get
 * one try: a retry could only hide a hole.)
 */
const eventually = (probe: () => boolean): boolean => probe() || probe() || probe();

/** Forget every neighbour, so the next packet needs neighbour discovery through the firewall. */
function flushNeighbours(): void {
  for (const ns of [HOST, CLIENT]) ip('-n', ns, 'neigh', 'flush', 'all');
}

async function waitListening(): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const r = spawnSync('ip', ['netns', 'exec', HOST, 'ss', '-Hltn'], { encoding: 'utf8' });
    if ([179, 22, 9472, 8080].every((p) => r.stdout.includes(`:${p} `)) && spawnSync('ip', ['netns', 'exec', HOST, 'ss', '-Hlun'], { encoding: 'utf8' }).stdout.includes(':3784 ')) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('socat listeners did not come up');
}

test.serial('without the firewall every port answers (the probes work)', async (t) => {
  await waitListening();
  t.true(eventually(() => connects(OTHER, H, 179)), 'TCP 179 over IPv4');
  t.true(eventually(() => connects(OTHER, H, 8080)), 'TCP 8080 over IPv4');
  t.true(eventually(() => connects(OTHER6, H6, 179)), 'TCP 179 over IPv6');
  t.true(eventually(() => udpAnswers(OTHER6, H6, 3784)), 'UDP 3784 over IPv6');
});

test.serial('with the firewall: BGP only from the peer, SSH only from sshFrom, metrics only on its address', async (t) => {
  const cfg = parseConfig(`
node: {name: fw, routerId: ${H}, asn: 64512, uplink: fwh${id}}
bgp:
  peers: [{address: ${PEER}, asn: 64500, bfd: {enabled: true}}]
pools: [{name: default, cidrs: [10.96.100.0/24]}]
metrics: {listen: "${H}:9472"}
firewall: {sshFrom: [${PEER}/32]}
`, 'netns.yaml');
  await applyRuleset(firewallRuleset(cfg), { netns: HOST });
  t.true(eventually(() => connects(PEER, H, 179)), 'peer → BGP');
  t.false(connects(OTHER, H, 179), 'other → BGP dropped');
  t.true(eventually(() => connects(PEER, H, 22)), 'sshFrom → SSH');
  t.false(connects(OTHER, H, 22), 'other → SSH dropped');
  t.true(eventually(() => connects(OTHER, H, 9472)), 'metrics on its listen address');
  t.false(connects(OTHER, H2, 9472), 'metrics port on another host address dropped');
  t.false(connects(PEER, H, 8080), 'unlisted port dropped, even from the peer');
});

test.serial('IPv6 peers: BGP and BFD only from the IPv6 peer, neighbour discovery works through the firewall, a reload follows the peers', async (t) => {
  const config = (peer6: string) => parseConfig(`
node: {name: fw, routerId: ${H}, asn: 64512, uplink: fwh${id}}
bgp:
  peers:
    - {address: ${PEER}, asn: 64500}
    - {address: "${peer6}", asn: 64500, bfd: {enabled: true}}
pools: [{name: default, cidrs: [10.96.100.0/24, "fd00:96::/120"]}]
metrics: {listen: "${H}:9472"}
`, 'netns6.yaml');
  await applyRuleset(firewallRuleset(config(PEER6)), { netns: HOST });
  // From an empty neighbour cache: the first SYN needs NS/NA in both directions.
  flushNeighbours();
  t.true(eventually(() => connects(PEER6, H6, 179)), 'IPv6 peer → BGP (after neighbour discovery)');
  t.false(connects(OTHER6, H6, 179), 'other IPv6 source → BGP dropped');
  t.true(eventually(() => udpAnswers(PEER6, H6, 3784)), 'IPv6 peer → BFD control');
  t.false(udpAnswers(OTHER6, H6, 3784), 'other IPv6 source → BFD dropped');
  t.false(connects(PEER6, H6, 22), 'no sshFrom: SSH closed over IPv6 too');
  t.false(connects(PEER6, H6, 8080), 'unlisted port dropped over IPv6');
  t.true(eventually(() => connects(PEER, H, 179)), 'the IPv4 peer still reaches BGP');

  // The router moves to another address: the rules follow the configured peer.
  await applyRuleset(firewallRuleset(config(OTHER6)), { netns: HOST });
  flushNeighbours();
  t.true(eventually(() => connects(OTHER6, H6, 179)), 'new IPv6 peer → BGP');
  t.true(eventually(() => udpAnswers(OTHER6, H6, 3784)), 'new IPv6 peer → BFD');
  t.false(connects(PEER6, H6, 179), 'old IPv6 peer → BGP dropped');
  t.false(udpAnswers(PEER6, H6, 3784), 'old IPv6 peer → BFD dropped');
});

/**
 * The host's DHCPv6 client in HOST solicits ff02::1:2 from port 546; true
 * when the reply CLIENT (the server) sends from its link-local address to
 * HOST's came through.
 */
async function dhcp6ReplyArrives(): Promise<boolean> {
  const solicit = spawn('ip', ['netns', 'exec', HOST, 'socat', '-t', '3', '-T', '3', 'STDIO', `UDP6-DATAGRAM:[ff02::1:2%fwh${id}]:547,bind=[::]:546,reuseaddr`], { stdio: ['pipe', 'pipe', 'ignore'] });
  let got = '';
  solicit.stdout.on('data', (b: Buffer) => { got += b.toString(); });
  const done = new Promise<void>((res) => solicit.on('close', () => res()));
  solicit.stdin.end('solicit\n');
  await new Promise((res) => setTimeout(res, 500));
  spawnSync('ip', ['netns', 'exec', CLIENT, 'socat', '-T', '1', 'STDIO', `UDP6-SENDTO:[${LL_HOST}%fwc${id}]:546,sourceport=547,so-bindtodevice=fwc${id}`], { input: 'advertise\n', timeout: 5000 });
  await done;
  return got.includes('advertise');
}
const LL_HOST = 'fe80::77:1';

test.serial('DHCPv6: the reply from the server\'s link-local address reaches the host\'s client', async (t) => {
  // Link-local addresses usable at once (no duplicate address detection wait).
  ip('-n', HOST, 'addr', 'add', `${LL_HOST}/64`, 'dev', `fwh${id}`, 'nodad');
  ip('-n', CLIENT, 'addr', 'add', 'fe80::77:2/64', 'dev', `fwc${id}`, 'nodad');
  const cfg = parseConfig(`
node: {name: fw, routerId: ${H}, asn: 64512, uplink: fwh${id}}
bgp:
  peers: [{address: ${PEER}, asn: 64500}]
pools: [{name: default, cidrs: [10.96.100.0/24]}]
`, 'dhcp6.yaml');
  await applyRuleset(firewallRuleset(cfg), { netns: HOST });
  t.true(await dhcp6ReplyArrives() || await dhcp6ReplyArrives(), 'DHCPv6 advertise from fe80:: to the client');
});
