// Glob matching for rule sources, compiled once at bundle load; must never be called per command
// with a fresh pattern (RegExp construction is the expensive part).
//
// Two dialects, because the things they match are shaped differently:
// - workload globs over SPIFFE IDs: '*' is one path segment (no '/'), '**' is any run.
// - point globs over point names ('tank1.level'): '*' is any run, dots included, since point
//   names are flat and the dot is only a naming habit.

function escapeRegExp(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

export function hasGlob(pattern: string): boolean {
  return pattern.includes('*');
}

export function workloadGlob(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        re += '.*';
        i++;
      } else {
        re += '[^/]*';
      }
    } else {
      re += escapeRegExp(c);
    }
  }
  return new RegExp(`^${re}$`);
}

export function pointGlob(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`);
}

/** A precompiled matcher: exact strings compare, globs test a RegExp built once. */
export function workloadMatcher(pattern: string): (value: string) => boolean {
  if (!hasGlob(pattern)) return (v) => v === pattern;
  const re = workloadGlob(pattern);
  return (v) => re.test(v);
}

/**
 * Browse-path globs over OPC UA browse paths ('/Line1/Speed'): '*' is any run inside one path
 * segment, '**' any run across segments, and a trailing '/**' also matches the path it hangs from
 * ('/Line1/**' covers '/Line1' and everything below it), since a rule about a subtree is meant to
 * cover its root.
 */
export function pathGlob(pattern: string): RegExp {
  const subtree = pattern.endsWith('/**');
  const body = subtree ? pattern.slice(0, -3) : pattern;
  const re = workloadGlob(body).source.slice(1, -1);
  return new RegExp(`^${re}${subtree ? '(?:/.*)?' : ''}$`, 's');
}
