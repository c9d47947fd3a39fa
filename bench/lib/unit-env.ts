// The agent's heap sizing as the shipped service unit sets it
// (systemd/edgelb.service), so that bench:k8s measures the agent the way an
// appliance runs it and the two cannot drift apart.
import { readFileSync } from 'node:fs';

export interface UnitNodeSettings {
  /** Node/V8 flags from the unit's NODE_OPTIONS. */
  flags: string[];
  /** The unit's allocator settings (MALLOC_*); paths such as NODE_COMPILE_CACHE are appliance-only. */
  env: Record<string, string>;
}

/** One `Environment=` line's assignments, with systemd's double-quote grouping. */
function assignments(value: string): [string, string][] {
  const out: [string, string][] = [];
  for (const m of value.matchAll(/"([^"]*)"|(\S+)/g)) {
    const word = m[1] ?? m[2]!;
    const eq = word.indexOf('=');
    if (eq > 0) out.push([word.slice(0, eq), word.slice(eq + 1)]);
  }
  return out;
}

export function parseUnitNodeSettings(unitText: string, where: string): UnitNodeSettings {
  const flags: string[] = [];
  const env: Record<string, string> = {};
  let sawNodeOptions = false;
  for (const line of unitText.split('\n')) {
    const m = /^\s*Environment=(.*)$/.exec(line);
    if (!m) continue;
    for (const [k, v] of assignments(m[1]!)) {
      if (k === 'NODE_OPTIONS') {
        sawNodeOptions = true;
        flags.push(...v.split(/\s+/).filter(Boolean));
      } else if (k.startsWith('MALLOC_')) env[k] = v;
    }
  }
  if (!sawNodeOptions) throw new Error(`${where}: no Environment=NODE_OPTIONS line (the agent's heap sizing)`);
  return { flags, env };
}

export function readUnitNodeSettings(unitPath: string): UnitNodeSettings {
  return parseUnitNodeSettings(readFileSync(unitPath, 'utf8'), unitPath);
}
