// filter.json `build`: how one AssemblyScript filter is compiled, validated strictly like the
// rest of the manifest (manifest.ts), turned into asc flags by compiler.ts. The defaults (absent
// keys) were chosen by measuring Envoy's CPU per request: docs/assemblyscript-runtime.md.

/** AssemblyScript build settings of one filter; absent keys take the defaults in parentheses. */
export interface BuildSettings {
  /** asc optimisation level ("O0": none, the fastest compile, which live edits want). */
  optimize?: OptimizeLevel;
  /** asc runtime ("full"; "half" is the same without the allocator exported to the host). */
  runtime?: AscRuntime;
  /** asc --noAssert: the runtime's and the filter's assertions compiled out (false). */
  noAssert?: boolean;
  /** Unexport the proxy-wasm callbacks the filter does not implement, so Envoy skips them (true). */
  trimExports?: boolean;
}

export const OPTIMIZE_LEVELS = ["O0", "O1", "O2", "O3", "Os", "Oz"] as const;
export type OptimizeLevel = (typeof OPTIMIZE_LEVELS)[number];
// Not "stub" nor "none": they never free memory, so every request's context would stay allocated
// until the VM's memory ran out and Envoy failed the filter.
export const ASC_RUNTIMES = ["full", "half"] as const;
export type AscRuntime = (typeof ASC_RUNTIMES)[number];

const CHECKS: Record<keyof BuildSettings, (value: unknown) => string | undefined> = {
  optimize: (v) => oneOf(OPTIMIZE_LEVELS, v),
  runtime: (v) => (v === "stub" || v === "none"
    ? `${oneOf(ASC_RUNTIMES, v)} (not "${v}": it never frees memory, so the VM would grow with every request until Envoy fails it)`
    : oneOf(ASC_RUNTIMES, v)),
  noAssert: (v) => (typeof v === "boolean" ? undefined : "true or false"),
  trimExports: (v) => (typeof v === "boolean" ? undefined : "true or false"),
};

function oneOf(allowed: readonly string[], v: unknown): string | undefined {
  return typeof v === "string" && allowed.includes(v) ? undefined : `one of ${allowed.map((a) => `"${a}"`).join(", ")}`;
}

/** For manifest.ts: undefined when `v` is valid build settings, else what was expected. */
export function checkBuildSettings(v: unknown): string | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return `an object with ${Object.keys(CHECKS).join(", ")}`;
  for (const [key, value] of Object.entries(v)) {
    const check = Object.hasOwn(CHECKS, key) ? CHECKS[key as keyof BuildSettings] : undefined;
    if (!check) return `an object with only ${Object.keys(CHECKS).join(", ")}; unknown key "${key}"`;
    const expected = check(value);
    const shown = JSON.stringify(value);
    if (expected) return `an object whose "${key}" is ${expected}${expected.includes(shown) ? "" : ` (it is ${shown})`}`;
  }
  return undefined;
}

/** The asc flags of `settings` (nothing for a default, so default builds keep their bytes and keys). */
export function ascFlags(settings: BuildSettings = {}): string[] {
  const flags: string[] = [];
  if (settings.optimize !== undefined && settings.optimize !== "O0") flags.push(`-${settings.optimize}`);
  if (settings.noAssert === true) flags.push("--noAssert");
  return flags;
}
