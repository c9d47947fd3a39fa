// Our lazily built gobgp service against @grpc/proto-loader's (the reference
// for the JSON mapping the agent was written against): same methods, same
// bytes on the wire, same objects back, for the messages the agent sends.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { mkdtempSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_PROTO_DIR } from '../../src/bgp/api-types.js';
import { buildPath, NO_ATTRS } from '../../src/bgp/attributes.js';
import { GOBGP_PROTO_FILES, gobgpServiceClient, loadGobgpRoot, parseGobgpProtos, protoDigest, writeProtoCache } from '../../src/bgp/gobgp-proto.js';

type Def = Record<string, grpc.MethodDefinition<object, object> & { originalName?: string }>;

function reference(): Def {
  const def = protoLoader.loadSync(GOBGP_PROTO_FILES.map((f) => join(DEFAULT_PROTO_DIR, f)), {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, json: true, includeDirs: [DEFAULT_PROTO_DIR],
  });
  return def['apipb.GobgpApi'] as unknown as Def;
}

function ours(root = parseGobgpProtos(DEFAULT_PROTO_DIR)): Def {
  return (gobgpServiceClient(root) as unknown as { service: Def }).service;
}

const path = buildPath({ prefix: '198.51.100.7/32', attrs: { ...NO_ATTRS, communities: ['65000:100'], largeCommunities: ['65000:1:2'], localPref: 200, med: 5, asPathPrepend: 2 } }, { localAsn: 64512, gracefulShutdown: true });
const REQUESTS: [string, object][] = [
  ['StartBgp', { global: { asn: 64512, router_id: '10.0.2.15', listen_port: 179 } }],
  ['AddPeer', { peer: { conf: { neighbor_address: '10.0.2.101', peer_asn: 64500, auth_password: 'x' }, timers: { config: { hold_time: 90, keepalive_interval: 30 } }, afi_safis: [{ config: { family: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' }, enabled: true } }] } }],
  ['AddPath', { table_type: 'GLOBAL', path }],
  ['ListPath', { table_type: 'ADJ_OUT', name: '10.0.2.101', family: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' } }],
  ['ListPeer', { address: '', enableAdvertised: true }],
  ['DeletePeer', { address: '10.0.2.101' }],
];

test('every method of apipb.GobgpApi, with the same paths, stream kinds and names', (t) => {
  const ref = reference();
  const got = ours();
  t.deepEqual(Object.keys(got).sort(), Object.keys(ref).sort());
  for (const [name, m] of Object.entries(ref)) {
    const o = got[name]!;
    t.is(o.path, m.path, name);
    t.is(o.requestStream, m.requestStream, name);
    t.is(o.responseStream, m.responseStream, name);
    t.is(o.originalName, m.originalName, name);
  }
});

test('requests serialize to the same bytes and read back to the same objects (google.protobuf.Any included)', (t) => {
  const ref = reference();
  const got = ours();
  for (const [name, req] of REQUESTS) {
    const a = ref[name]!.requestSerialize(req);
    const b = got[name]!.requestSerialize(req);
    t.is(b.toString('hex'), a.toString('hex'), name);
    t.deepEqual(got[name]!.requestDeserialize(b), ref[name]!.requestDeserialize(a), name);
  }
  // A response with Any-typed attributes, as gobgpd sends in ListPath.
  const resp = { destination: { prefix: '198.51.100.7/32', paths: [path] } };
  const bytes = ref.ListPath!.responseSerialize(resp);
  t.deepEqual(got.ListPath!.responseDeserialize(bytes), ref.ListPath!.responseDeserialize(bytes));
});

test('the JSON cache is used only when made from the same .proto files', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-proto-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const protos = join(dir, 'api');
  cpSync(DEFAULT_PROTO_DIR, protos, { recursive: true });
  const cache = join(dir, 'gobgp-api.json');
  writeProtoCache(protos, cache);
  // Types from the cache resolve lazily: the same bytes (packed repeated scalars in the AS path included).
  const fromCache = ours(loadGobgpRoot(protos, cache));
  const ref = reference();
  for (const [name, req] of REQUESTS) {
    const a = ref[name]!.requestSerialize(req);
    t.is(fromCache[name]!.requestSerialize(req).toString('hex'), a.toString('hex'), name);
    t.deepEqual(fromCache[name]!.requestDeserialize(a), ref[name]!.requestDeserialize(a), name);
  }

  // Another gobgp version's files (here: an added message) do not match the cache's digest: parsed instead.
  const before = protoDigest(protos);
  writeFileSync(join(protos, 'capability.proto'), `${'\n'}message EdgelbCacheProbe { string x = 1; }\n`, { flag: 'a' });
  t.not(protoDigest(protos), before);
  const root = loadGobgpRoot(protos, cache);
  t.truthy(root.lookup('apipb.EdgelbCacheProbe'), 'the changed files were parsed, not the stale cache');
  // A garbled cache is ignored too.
  writeFileSync(cache, '{not json');
  t.truthy(loadGobgpRoot(protos, cache).lookup('apipb.EdgelbCacheProbe'));
});

test('a missing .proto file is named', (t) => {
  t.throws(() => loadGobgpRoot('/nonexistent-gobgp-api'), { message: /bgp\.gobgp\.protoDir: \/nonexistent-gobgp-api\/gobgp\.proto not found/ });
});
