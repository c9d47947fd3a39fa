// What the lab hands the appliance VM, checked without booting it: the
// operator's edgelb.yaml (valid for `edgelb config check` once its secrets
// exist), the networkd files, QEMU's command line and the EDGELB-CFG stick.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { ensureTools, HOST_TOOLS } from '../../src/image/exec.js';
import { applianceConfig, applianceMacs, applianceNetworkFiles, applianceQemuArgs, makeConfigStick, VM_NICS } from '../../src/lab/appliance.js';
import { DEFAULT_OPTIONS } from '../../src/lab/state.js';
import { planLab } from '../../src/lab/topology.js';

const plan = planLab('elb-abcd-');
const edge = plan.edges[0]!;
const tmp = mkdtempSync(join(tmpdir(), 'edgelb-appliance-cfg-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

test('edgelb.yaml: the lab edge\'s settings, the VM\'s uplink, the appliance\'s own paths, secrets by reference', (t) => {
  const cfg = applianceConfig(plan, edge, DEFAULT_OPTIONS);
  const text = stringify(cfg);
  t.regex(text, /passwordFile: \/run\/edgelb\/secrets\/bgp-router/);
  t.regex(text, /kubeconfig: \/run\/edgelb\/secrets\/kubeconfig/);
  t.notRegex(text, /gobgp:|bfdd:|control:|pinPath/, 'gobgpd, bfdd, the control socket and the pins stay at the appliance defaults');
  // Valid for the real check once the secrets exist (the check reads password files).
  const pw = join(tmp, 'pw');
  writeFileSync(pw, 'secret\n', { mode: 0o600 });
  const c = parseConfig(text.replace('/run/edgelb/secrets/bgp-router', pw), 'appliance.yaml');
  t.is(c.node.uplink, VM_NICS.uplink.ifname);
  t.is(c.node.address, edge.address);
  t.is(c.bgp.gobgp.socket, '/run/edgelb/gobgp.sock');
  t.false(c.bgp.gobgp.manage);
  t.true(c.firewall.enabled);
  t.is(c.metrics.listen, `${edge.mgmtAddress}:9472`);
  t.deepEqual(c.bgp.peers.map((p) => [p.address, p.asn, p.localAddress]), [[plan.router.address, plan.router.asn, edge.address]]);
});

test('networkd files: matched by MAC, static addresses, default via the router, pod networks via their nodes', (t) => {
  const f = applianceNetworkFiles(plan, edge);
  const macs = applianceMacs(edge);
  t.regex(f['10-uplink.network'] ?? '', new RegExp(`MACAddress=${macs.uplink}[\\s\\S]*Address=${edge.address}/24[\\s\\S]*Gateway=${plan.router.address}`));
  for (const n of plan.nodes) t.regex(f['10-uplink.network'] ?? '', new RegExp(`Destination=${n.podCidr}\\nGateway=${n.address}`));
  t.regex(f['20-mgmt.network'] ?? '', new RegExp(`MACAddress=${macs.mgmt}[\\s\\S]*Address=${edge.mgmtAddress}/24`));
  t.notRegex(f['20-mgmt.network'] ?? '', /Gateway=/, 'no second default route');
  t.notDeepEqual(applianceMacs(plan.edges[1]!), macs);
});

test('QEMU: single-threaded TCG, the flashed image never written, the stick read-only, NICs on the taps', (t) => {
  const a = applianceQemuArgs({ image: '/i.raw', stick: '/s.img', serialLog: '/s.log', vars: '/v.fd', macs: applianceMacs(edge) });
  t.is(a[0], 'qemu-system-x86_64');
  t.is(a[a.indexOf('-machine') + 1], 'q35');
  t.is(a[a.indexOf('-accel') + 1], 'tcg,thread=single');
  t.true(a.includes('file=/i.raw,format=raw,if=virtio,snapshot=on'));
  t.true(a.includes('file=/s.img,format=raw,if=virtio,readonly=on'));
  t.true(a.includes('tap,id=up,ifname=vmup,script=no,downscript=no'));
  t.true(a.includes(`virtio-net-pci,netdev=up,mac=${applianceMacs(edge).uplink},addr=0x5,romfile=`), 'no NIC boot ROM for the firmware to start');
  t.true(a.includes('tap,id=mgmt,ifname=vmmgmt,script=no,downscript=no'));
  t.false(a.some((x) => x.startsWith('user,')), 'no user-mode network');
});

test('the EDGELB-CFG stick: FAT labelled EDGELB-CFG with the files in their folders', async (t) => {
  await ensureTools(HOST_TOOLS);
  const img = join(tmp, 'stick.img');
  await makeConfigStick(img, { 'edgelb.yaml': 'node: {}\n', 'secrets/kubeconfig': 'apiVersion: v1\n', 'network/10-uplink.network': '[Match]\n' });
  const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
  t.regex(execFileSync('blkid', ['-o', 'value', '-s', 'LABEL', img]).toString(), /EDGELB-CFG/);
  t.is(execFileSync('mtype', ['-i', img, '::/secrets/kubeconfig'], { env }).toString(), 'apiVersion: v1\n');
  t.is(execFileSync('mtype', ['-i', img, '::/network/10-uplink.network'], { env }).toString(), '[Match]\n');
  t.is(execFileSync('mtype', ['-i', img, '::/edgelb.yaml'], { env }).toString(), 'node: {}\n');
});
