// Debian's wrk (4.1): the command line bench:e2e runs and a parser for its
// report (`--latency` adds the percentile lines). wrk measures latency from
// each request's send to its answer on a closed loop of connections, so under
// overload its percentiles understate waiting (coordinated omission); the
// load here stays bounded and every variant gets the same one.

export interface WrkOptions {
  url: string;
  seconds: number;
  threads: number;
  connections: number;
  /** Add `Connection: close`: a new TCP connection per request. */
  close: boolean;
  timeoutSeconds?: number;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Latency percentiles in ms (null when wrk printed none). */
  p50Ms: number | null;
  p99Ms: number | null;
  /** connect + read + write + timeout socket errors. */
  socketErrors: number;
  timeouts: number;
  non2xx: number;
}

export function wrkArgv(o: WrkOptions): string[] {
  if (!Number.isInteger(o.seconds) || o.seconds < 1 || o.seconds > 300) throw new RangeError(`wrk duration ${o.seconds} s must be 1..300`);
  const argv = ['wrk', '-t', String(o.threads), '-c', String(o.connections), '-d', `${o.seconds}s`, '--latency', '--timeout', `${o.timeoutSeconds ?? 2}s`];
  if (o.close) argv.push('-H', 'Connection: close');
  argv.push(o.url);
  return argv;
}

const UNIT_MS: Record<string, number> = { us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };

function durationMs(v: string, unit: string, what: string): number {
  const f = UNIT_MS[unit];
  if (f === undefined) throw new Error(`wrk: unknown time unit '${unit}' in ${what}`);
  return Number(v) * f;
}

/** Parses wrk's report; throws naming what is missing. */
export function parseWrk(text: string): WrkResult {
  const total = /^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),/m.exec(text);
  if (!total) throw new Error(`wrk: no "N requests in T" line in:\n${text.trim().split('\n').slice(-6).join('\n')}`);
  const requests = Number(total[1]);
  const seconds = durationMs(total[2]!, total[3]!, 'the total') / 1000;
  const rpsLine = /^Requests\/sec:\s*([\d.]+)/m.exec(text);
  const pct = (p: string): number | null => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(text);
    return m ? durationMs(m[1]!, m[2]!, `the ${p}% latency`) : null;
  };
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  const timeouts = se ? Number(se[4]) : 0;
  return {
    requests,
    seconds,
    rps: rpsLine ? Number(rpsLine[1]) : seconds > 0 ? requests / seconds : 0,
    p50Ms: pct('50'),
    p99Ms: pct('99'),
    socketErrors: se ? Number(se[1]) + Number(se[2]) + Number(se[3]) + timeouts : 0,
    timeouts,
    non2xx: non ? Number(non[1]) : 0,
  };
}
