// gobgpd's gRPC service, built straight from protobufjs types. Same JSON
// mapping as @grpc/proto-loader with {keepCase, longs: String, enums: String,
// defaults, oneofs, json} (google.protobuf.Any as {'@type', ...fields}), but
// without its eager work: proto-loader turns all ~300 message types of
// gobgp's API into descriptors up front, while here a type is only set up
// the first time a call uses it. On the appliance the parsed .proto files
// also come from a JSON cache made at image build time, checked against the
// files' digest. Natively that is ~90 → ~35 ms; on the slow CPUs the boot
// budget is measured on it is seconds.
import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import protobuf from 'protobufjs';

export const GOBGP_PROTO_FILES = ['gobgp.proto', 'attribute.proto', 'capability.proto'];
const SERVICE = 'apipb.GobgpApi';

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true, oneofs: true, json: true };

export interface ProtoCache {
  /** sha256 over the .proto files' names and contents. */
  digest: string;
  root: protobuf.INamespace;
}

function missing(protoDir: string): string[] {
  return GOBGP_PROTO_FILES.map((f) => join(protoDir, f)).filter((f) => !existsSync(f));
}

export function protoDigest(protoDir: string): string {
  const h = createHash('sha256');
  for (const f of GOBGP_PROTO_FILES) h.update(f).update('\0').update(readFileSync(join(protoDir, f))).update('\0');
  return h.digest('hex');
}

/** Parses gobgp's .proto files (imports resolved in protoDir; google/protobuf/* are built in). */
export function parseGobgpProtos(protoDir: string): protobuf.Root {
  const gone = missing(protoDir);
  if (gone.length) throw new Error(`bgp.gobgp.protoDir: ${gone[0]} not found (install golang-github-osrg-gobgp-dev or fix the path)`);
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (isAbsolute(target) || target.startsWith('google/protobuf/') ? target : join(protoDir, target));
  root.loadSync(GOBGP_PROTO_FILES.map((f) => join(protoDir, f)), { keepCase: true });
  return root;
}

/** Where a runtime root (the image's /opt/edgelb) keeps the parsed API. */
export function protoCachePath(runtimeRoot: string): string {
  return join(runtimeRoot, '.cache', 'gobgp-api.json');
}

/** Writes the cache the agent reads instead of parsing (image build). */
export function writeProtoCache(protoDir: string, file: string): void {
  const cache: ProtoCache = { digest: protoDigest(protoDir), root: parseGobgpProtos(protoDir).toJSON() };
  writeFileSync(`${file}.tmp`, JSON.stringify(cache));
  renameSync(`${file}.tmp`, file);
}

/** The API's types: from `cacheFile` when it was made from these very files, else parsed. */
export function loadGobgpRoot(protoDir: string, cacheFile?: string): protobuf.Root {
  if (cacheFile && existsSync(cacheFile) && missing(protoDir).length === 0) {
    try {
      const cache = JSON.parse(readFileSync(cacheFile, 'utf8')) as ProtoCache;
      if (cache.digest === protoDigest(protoDir)) {
        // Not Root.fromJSON(): it ends in resolveAll(), which generates a
        // constructor for each of the ~300 types; they resolve on first use.
        // Their proto3 features (packed repeated scalars!) must be resolved
        // first, as resolveAll() would; protobufjs has no public call for
        // that alone (test/bgp/gobgp-proto.test.ts compares the bytes).
        const root = new protobuf.Root();
        if (cache.root.options) root.setOptions(cache.root.options);
        root.addJSON(cache.root.nested ?? {});
        const features = root as unknown as { _resolveFeaturesRecursive?: (edition?: string) => void; _edition?: string };
        if (typeof features._resolveFeaturesRecursive === 'function') features._resolveFeaturesRecursive(features._edition);
        else root.resolveAll();
        return root;
      }
    } catch {
      // unreadable cache: parse the files instead
    }
  }
  return parseGobgpProtos(protoDir);
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** A grpc-js client class for apipb.GobgpApi with every method of the service. */
export function gobgpServiceClient(root: protobuf.Root): grpc.ServiceClientConstructor {
  const service = root.lookupService(SERVICE);
  const defs: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const m of service.methodsArray) {
    m.resolve();
    const req = m.resolvedRequestType;
    const res = m.resolvedResponseType;
    if (!req || !res) throw new Error(`${SERVICE}.${m.name}: request/response type not resolved`);
    defs[m.name] = {
      path: `/${SERVICE}/${m.name}`,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
      requestSerialize: (o) => Buffer.from(req.encode(req.fromObject(o)).finish()),
      requestDeserialize: (b) => req.toObject(req.decode(b), TO_OBJECT),
      responseSerialize: (o) => Buffer.from(res.encode(res.fromObject(o)).finish()),
      responseDeserialize: (b) => res.toObject(res.decode(b), TO_OBJECT),
      originalName: lowerFirst(m.name),
    };
  }
  return grpc.makeGenericClientConstructor(defs, 'GobgpApi');
}
