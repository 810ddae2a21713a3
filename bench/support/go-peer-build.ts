// Builds bench/go-control-plane (the go-control-plane peer) into the git-ignored .tools/, once per
// source + toolchain: a re-run with nothing changed reuses the binary. Modules come from the Go
// module proxy at the versions go.mod/go.sum pin; module and build caches stay under .tools/go.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export interface GoPeerBinary {
  binary: string;
  /** false: the cached binary was reused. */
  built: boolean;
  buildMs: number;
  goVersion: string;
}

/** `go` on PATH, else the usual install location; undefined when neither exists. */
export function findGo(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, "go"))) return path.join(dir, "go");
  }
  return fs.existsSync("/usr/local/go/bin/go") ? "/usr/local/go/bin/go" : undefined;
}

export function buildGoPeer(repo: string, log: (line: string) => void = () => undefined): GoPeerBinary {
  const go = findGo();
  if (!go) throw new Error("go-control-plane peer: no Go toolchain (go on PATH or /usr/local/go/bin/go)");
  const src = path.join(repo, "bench", "go-control-plane");
  const outDir = path.join(repo, ".tools", "go-xds-peer");
  const binary = path.join(outDir, "xds-peer");
  const env = {
    ...process.env,
    // The pinned go directive never fetches another toolchain; modules and the build cache stay in .tools/.
    GOTOOLCHAIN: "local",
    GOMODCACHE: path.join(repo, ".tools", "go", "mod"),
    GOCACHE: path.join(repo, ".tools", "go", "cache"),
    GOFLAGS: "-mod=readonly -modcacherw",
  };
  const goVersion = execFileSync(go, ["version"], { env, encoding: "utf8" }).trim();
  const hash = createHash("sha256").update(goVersion);
  for (const f of ["go.mod", "go.sum", "main.go"]) hash.update(`\n${f}\n`).update(fs.readFileSync(path.join(src, f)));
  const stamp = hash.digest("hex");
  const stampFile = path.join(outDir, "stamp");
  if (fs.existsSync(binary) && fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === stamp) {
    return { binary, built: false, buildMs: 0, goVersion };
  }
  fs.mkdirSync(outDir, { recursive: true });
  log(`building the go-control-plane peer (${goVersion}; first build downloads modules and takes a few minutes)`);
  const t0 = performance.now();
  try {
    execFileSync(go, ["build", "-trimpath", "-o", binary, "."], { cwd: src, env, stdio: ["ignore", "inherit", "inherit"] });
  } catch (err) {
    throw new Error(`go-control-plane peer: go build in ${src} failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  fs.writeFileSync(stampFile, stamp);
  return { binary, built: true, buildMs: performance.now() - t0, goVersion };
}
