// A thin, typed gRPC client for gobgpd's v3 API over its unix socket.
//
// Every call carries a deadline so a hung gobgpd can never wedge the agent;
// grpc-js reconnects the channel by itself, so "reconnect handling" here is:
// calls fail fast while gobgpd is away (no waitForReady), `ping()` reports
// health, and `instanceId()` lets callers notice that gobgpd was restarted
// (its RIB is then empty and everything must be re-announced).
import * as grpc from '@grpc/grpc-js';
import { repoRoot } from '../assets.js';
import { gobgpServiceClient, loadGobgpRoot, protoCachePath } from './gobgp-proto.js';

export * from './api-types.js';
import { DEFAULT_PROTO_DIR, type ApiDestination, type ApiGlobal, type ApiPath, type ApiPeer, type ApiDefinedSet, type ApiPolicy, type ApiPolicyAssignment, type ApiFamily, type TableType } from './api-types.js';

export interface GobgpClientOptions {
  /** Unix socket path of gobgpd's API (without the unix:// scheme). */
  socket: string;
  protoDir?: string;
  /** JSON cache of the parsed .proto files (used only when made from the same files); default defaultProtoCache(). */
  protoCache?: string;
  /** Deadline for unary calls, ms. */
  timeoutMs?: number;
  /** Deadline for streaming list calls, ms (a full RIB can be large). */
  listTimeoutMs?: number;
  /** A list call that receives nothing for this long (the first answer, or the next) is given up; default timeoutMs. */
  listIdleMs?: number;
}

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
// The generated service client is untyped; we keep the surface we use narrow.
interface RawClient extends grpc.Client {
  [method: string]: unknown;
}

let cachedDefs: { dir: string; ctor: grpc.ServiceClientConstructor } | undefined;

/** The parsed API the image ships (src/image/build.ts writes it); absent in a checkout. */
export function defaultProtoCache(): string | undefined {
  try {
    return protoCachePath(repoRoot());
  } catch {
    return undefined;
  }
}

function loadService(protoDir: string, cacheFile: string | undefined): grpc.ServiceClientConstructor {
  if (cachedDefs?.dir === protoDir) return cachedDefs.ctor;
  const ctor = gobgpServiceClient(loadGobgpRoot(protoDir, cacheFile ?? defaultProtoCache()));
  cachedDefs = { dir: protoDir, ctor };
  return ctor;
}

export class GobgpError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    details: string,
  ) {
    super(`gobgpd ${method}: ${details} (grpc code ${code})`);
    this.name = 'GobgpError';
  }
}

/** Format a uuid returned by AddPath (bytes) as hex, our stable key for it. */
export function uuidHex(u: Buffer | Uint8Array | string | undefined): string {
  if (u === undefined) return '';
  if (typeof u === 'string') return Buffer.from(u, 'base64').toString('hex');
  return Buffer.from(u).toString('hex');
}

/** Time allowed per path of an AddPathStream, on top of the unary deadline. */
export const STREAM_MS_PER_PATH = 2;

export class GobgpClient {
  readonly socket: string;
  private readonly raw: RawClient;
  private readonly timeoutMs: number;
  private readonly listTimeoutMs: number;
  private readonly listIdleMs: number;

  constructor(opts: GobgpClientOptions) {
    this.socket = opts.socket;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.listTimeoutMs = opts.listTimeoutMs ?? 60000;
    this.listIdleMs = opts.listIdleMs ?? this.timeoutMs;
    const Ctor = loadService(opts.protoDir ?? DEFAULT_PROTO_DIR, opts.protoCache);
    this.raw = new Ctor(`unix://${opts.socket}`, grpc.credentials.createInsecure(), {
      // Reconnect quickly after gobgpd restarts instead of grpc's 1 s+ backoff growth.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
    }) as RawClient;
  }

  private deadline(ms = this.timeoutMs): grpc.Deadline {
    return new Date(Date.now() + ms);
  }

  private unary<Res>(method: string, req: object, timeoutMs?: number): Promise<Res> {
    const fn = this.raw[method] as (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<Res>) => void;
    return new Promise((resolve, reject) => {
      fn.call(this.raw, req, new grpc.Metadata(), { deadline: this.deadline(timeoutMs) }, (err, res) => {
        if (err) reject(new GobgpError(method, err.code, err.details || err.message));
        else resolve(res);
      });
    });
  }

  /**
   * A server-streaming list. Its deadline is long (a big RIB takes a while),
   * so it is also given up when nothing arrives for listIdleMs: a hung
   * gobgpd (alive, its socket accepting) answers nothing, and with the
   * deadline alone ListPeer held status() — health, /readyz, whether this
   * edge counts as advertising — and ListPath held every VIP change, and
   * behind it the reconcile loop that takes BFD down, for a minute.
   */
  private list<Res>(method: string, req: object): Promise<Res[]> {
    const fn = this.raw[method] as (req: object, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<Res>;
    return new Promise((resolve, reject) => {
      const out: Res[] = [];
      const stream = fn.call(this.raw, req, new grpc.Metadata(), { deadline: this.deadline(this.listTimeoutMs) });
      let idle = false;
      const timer = setTimeout(() => {
        idle = true;
        stream.cancel();
      }, this.listIdleMs);
      stream.on('data', (d: Res) => {
        out.push(d);
        timer.refresh(); // one timer per call, restarted: not a new one per path of a big RIB
      });
      stream.on('error', (err: grpc.ServiceError) => {
        clearTimeout(timer);
        if (idle) reject(new GobgpError(method, grpc.status.DEADLINE_EXCEEDED, `nothing received for ${this.listIdleMs} ms`));
        else reject(new GobgpError(method, err.code, err.details || err.message));
      });
      stream.on('end', () => {
        clearTimeout(timer);
        resolve(out);
      });
    });
  }

  async getBgp(): Promise<ApiGlobal> {
    const res = await this.unary<{ global: ApiGlobal }>('GetBgp', {});
    return res.global;
  }

  /** Is gobgpd answering, with BGP started? (false while it is down or unstarted) */
  async ping(timeoutMs = 1000): Promise<boolean> {
    try {
      const res = await this.unary<{ global: ApiGlobal | null }>('GetBgp', {}, timeoutMs);
      return res.global !== null && res.global.asn !== 0;
    } catch {
      return false;
    }
  }

  /** Reachable at all (answers GetBgp, even with BGP not started: asn 0). */
  async reachable(timeoutMs = 1000): Promise<boolean> {
    try {
      await this.unary('GetBgp', {}, timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  async startBgp(global: { asn: number; router_id: string; listen_port?: number; listen_addresses?: string[] }): Promise<void> {
    await this.unary('StartBgp', { global: { listen_port: -1, ...global } });
  }

  async stopBgp(): Promise<void> {
    await this.unary('StopBgp', {});
  }

  async addPeer(peer: ApiPeer): Promise<void> {
    await this.unary('AddPeer', { peer });
  }

  async updatePeer(peer: ApiPeer): Promise<{ needs_soft_reset_in: boolean }> {
    return this.unary('UpdatePeer', { peer });
  }

  async deletePeer(address: string): Promise<void> {
    await this.unary('DeletePeer', { address });
  }

  async resetPeer(address: string, soft: boolean, direction: 'IN' | 'OUT' | 'BOTH' = 'OUT'): Promise<void> {
    await this.unary('ResetPeer', { address, soft, direction });
  }

  async listPeer(address = ''): Promise<ApiPeer[]> {
    const res = await this.list<{ peer: ApiPeer }>('ListPeer', { address, enableAdvertised: true });
    return res.map((r) => r.peer);
  }

  /** Returns the path's uuid as hex. */
  async addPath(path: ApiPath): Promise<string> {
    const res = await this.unary<{ uuid: Buffer | string }>('AddPath', { table_type: 'GLOBAL', path });
    return uuidHex(res.uuid);
  }

  /**
   * Bulk add over one client stream; gobgpd does not return uuids for these.
   * The deadline grows with the number of paths (gobgpd takes well under a
   * tenth of STREAM_MS_PER_PATH for each): with the list calls' minute, a
   * gobgpd that hung while being sent 2 000 paths held every VIP change,
   * drain and reconcile round queued behind it for that minute.
   */
  async addPathStream(paths: ApiPath[], batch = 256): Promise<void> {
    const fn = this.raw['AddPathStream'] as (md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback<unknown>) => grpc.ClientWritableStream<object>;
    const ms = Math.min(this.listTimeoutMs, this.timeoutMs + paths.length * STREAM_MS_PER_PATH);
    await new Promise<void>((resolve, reject) => {
      const stream = fn.call(this.raw, new grpc.Metadata(), { deadline: this.deadline(ms) }, (err) => {
        if (err) reject(new GobgpError('AddPathStream', err.code, err.details || err.message));
        else resolve();
      });
      for (let i = 0; i < paths.length; i += batch) {
        stream.write({ table_type: 'GLOBAL', paths: paths.slice(i, i + batch) });
      }
      stream.end();
    });
  }

  /** Withdraw by uuid (from addPath) or by path (NLRI + family; attributes are ignored). */
  async deletePath(by: { uuid: string } | { path: ApiPath }): Promise<void> {
    if ('uuid' in by) {
      await this.unary('DeletePath', { table_type: 'GLOBAL', uuid: Buffer.from(by.uuid, 'hex') });
    } else {
      await this.unary('DeletePath', { table_type: 'GLOBAL', family: by.path.family, path: by.path });
    }
  }

  /** GLOBAL: the local RIB (our paths, since import is rejected); ADJ_OUT/ADJ_IN need the neighbor's address. */
  async listPath(table: TableType, family: ApiFamily, name = ''): Promise<ApiDestination[]> {
    const res = await this.list<{ destination: ApiDestination }>('ListPath', { table_type: table, family, name });
    return res.map((r) => r.destination);
  }

  /**
   * How many destinations and paths a table holds. gobgpd counts them in
   * place and answers in one small message, where listPath streams and the
   * agent decodes every path: the speaker's idle rounds check these.
   */
  async getTable(table: TableType, family: ApiFamily, name = ''): Promise<{ destinations: number; paths: number }> {
    const res = await this.unary<{ num_destination: string | number; num_path: string | number }>('GetTable', { table_type: table, family, name });
    return { destinations: Number(res.num_destination), paths: Number(res.num_path) };
  }

  async setPolicies(req: { defined_sets: ApiDefinedSet[]; policies: ApiPolicy[]; assignments?: ApiPolicyAssignment[] }): Promise<void> {
    await this.unary('SetPolicies', { assignments: [], ...req });
  }

  async setPolicyAssignment(assignment: ApiPolicyAssignment): Promise<void> {
    await this.unary('SetPolicyAssignment', { assignment });
  }

  async listPolicy(): Promise<ApiPolicy[]> {
    const res = await this.list<{ policy: ApiPolicy }>('ListPolicy', {});
    return res.map((r) => r.policy);
  }

  async listDefinedSet(type: ApiDefinedSet['defined_type']): Promise<ApiDefinedSet[]> {
    const res = await this.list<{ defined_set: ApiDefinedSet }>('ListDefinedSet', { defined_type: type, name: '' });
    return res.map((r) => r.defined_set);
  }

  async listPolicyAssignment(direction: 'IMPORT' | 'EXPORT'): Promise<ApiPolicyAssignment[]> {
    const res = await this.list<{ assignment: ApiPolicyAssignment }>('ListPolicyAssignment', { name: 'global', direction });
    return res.map((r) => r.assignment);
  }

  close(): void {
    this.raw.close();
  }
}
