// Which image is newer: the downgrade check of `edgelb upgrade`.
//
// An old image signed with a trusted key is still signed: without this check
// anyone who can hand the node an old image (with its known holes) could
// downgrade it. Both values compared come from inside the image file, whose
// sha256 SHA256SUMS.sig signs — never from the file name or SHA256SUMS:
//
//   version   ESP /edgelb/release, e.g. "0.1.0+3f2a9c01de" (package.json's
//             version, then the git revision as semver build metadata)
//   built     the root erofs superblock's build time (the build's mkfs.erofs
//             -T), seconds since 1970
//
// Releases are ordered by version first (semver precedence: the "+…" build
// metadata does not order). Builds of one release (every development build is
// 0.1.0+REV) are ordered by build time. The same version string with the same
// build time is the same build again: a reinstall, allowed.

export interface Release {
  version: string;
  /** Build time, Unix seconds. */
  built: number;
}

interface ParsedVersion {
  core: number[];
  pre: string[];
}

/** "1.2.3-rc.1+meta" → core [1,2,3], pre ['rc','1']; null when it is not such a version. */
export function parseVersion(v: string): ParsedVersion | null {
  const m = /^(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.+-]*)?$/.exec(v);
  if (!m?.[1]) return null;
  return { core: m[1].split('.').map(Number), pre: m[2] ? m[2].split('.') : [] };
}

function comparePre(a: string[], b: string[]): number {
  // A release sorts after its pre-releases.
  if (a.length === 0 || b.length === 0) return b.length - a.length;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i] ?? '';
    const y = b[i] ?? '';
    if (x === y) continue;
    const xn = /^\d+$/.test(x);
    const yn = /^\d+$/.test(y);
    if (xn && yn) return Number(x) - Number(y);
    if (xn !== yn) return xn ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Semver precedence of two versions (sign only matters); null when either is not a version. */
export function compareVersions(a: string, b: string): number | null {
  const x = parseVersion(a);
  const y = parseVersion(b);
  if (!x || !y) return null;
  for (let i = 0; i < Math.max(x.core.length, y.core.length); i++) {
    const d = (x.core[i] ?? 0) - (y.core[i] ?? 0);
    if (d !== 0) return d;
  }
  return comparePre(x.pre, y.pre);
}

export const describeRelease = (r: Release): string => `edgelb ${r.version} (built ${new Date(r.built * 1000).toISOString()})`;

export type UpgradeVerdict =
  | { allowed: true; why: 'newer version' | 'newer build' | 'reinstall' }
  | { allowed: false; why: string };

/** May `candidate` replace `installed`? A refusal says why, naming both. */
export function upgradeVerdict(installed: Release, candidate: Release): UpgradeVerdict {
  const c = describeRelease(candidate);
  const i = describeRelease(installed);
  const order = compareVersions(candidate.version, installed.version);
  if (order === null) return { allowed: false, why: `cannot tell whether ${c} is older than the installed ${i} (not a semver version)` };
  if (order > 0) return { allowed: true, why: 'newer version' };
  if (order < 0) return { allowed: false, why: `${c} is an older version than the installed ${i}` };
  if (candidate.built > installed.built) return { allowed: true, why: 'newer build' };
  if (candidate.built === installed.built && candidate.version === installed.version) return { allowed: true, why: 'reinstall' };
  return { allowed: false, why: `${c} is not a newer build of the installed ${i}` };
}
