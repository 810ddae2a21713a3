// `npm run cp`: starts controlplane/main.ts from a bundle of its TypeScript (esbuild, packages left
// external), built once per source state into .tools/controlplane-bundle/ and reused until a
// source file changes. Plain Node then loads one file instead of tsx transpiling ~100 modules
// through its loader thread on every start: a restart serves Envoy ~0.35 s sooner.
//
// Each source file's `import.meta.url` is replaced by that file's own URL, so paths computed from
// it (the compile and pre-flight workers, which load their TypeScript through tsx themselves, the
// dashboard's files, the vendored runtime) still point into the source tree. The etcd store
// (replicas/shared-store.ts) stays outside the bundle, so a single control plane never loads the
// etcd client. With CP_STORE=etcd://... the sources run through tsx as they are: loading the store
// from source next to a bundle would give two copies of shared modules (two StoreWriteError
// classes: a 503 would turn into a 500). If the bundle cannot be built, the same.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SRC = path.join(ROOT, "controlplane");
const ENTRY = path.join(SRC, "main.ts");
const OUT_DIR = path.join(ROOT, ".tools", "controlplane-bundle");
/** Loaded from source (through tsx) only when the etcd store is configured. */
const LAZY = /[/\\]replicas[/\\]shared-store\.ts$/;

/** Paths, sizes and modification times of every source file, the lock file and this script. */
function fingerprint() {
  const hash = createHash("sha256");
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".ts")) {
        const st = fs.statSync(full);
        hash.update(`${full}\0${st.size}\0${st.mtimeMs}\n`);
      }
    }
  };
  walk(SRC);
  for (const file of [path.join(ROOT, "package-lock.json"), fileURLToPath(import.meta.url)]) {
    const st = fs.statSync(file);
    hash.update(`${file}\0${st.size}\0${st.mtimeMs}\n`);
  }
  hash.update(process.version);
  return hash.digest("hex").slice(0, 16);
}

async function bundle(outfile) {
  const esbuild = await import("esbuild");
  const sourceUrls = {
    name: "source-urls",
    setup(build) {
      build.onResolve({ filter: /shared-store\.ts$/ }, (args) => {
        const file = path.resolve(args.resolveDir, args.path);
        return LAZY.test(file) ? { path: pathToFileURL(file).href, external: true } : undefined;
      });
      build.onLoad({ filter: /\.ts$/ }, async (args) => {
        const text = await fs.promises.readFile(args.path, "utf8");
        return { contents: text.replaceAll("import.meta.url", JSON.stringify(pathToFileURL(args.path).href)), loader: "ts" };
      });
    },
  };
  const tmp = `${outfile}.${process.pid}.tmp`;
  await esbuild.build({
    entryPoints: [ENTRY], outfile: tmp, bundle: true, platform: "node", format: "esm", target: "node20",
    packages: "external", logLevel: "silent", plugins: [sourceUrls],
  });
  // Several control planes may start at once: each writes its own temp file, the rename is atomic.
  fs.renameSync(tmp, outfile);
}

function usesEtcd(argv, env) {
  const flag = argv.findIndex((a) => a === "--store" || a.startsWith("--store="));
  const value = flag < 0 ? env.CP_STORE : argv[flag].includes("=") ? argv[flag].slice("--store=".length) : argv[flag + 1];
  return typeof value === "string" && value.trim().startsWith("etcd:");
}

async function registerTsx() {
  const { register } = await import("tsx/esm/api");
  register();
}

/** The bundle for the current sources, built if missing; undefined (with a note) if it cannot be. */
async function currentBundle() {
  try {
    const outfile = path.join(OUT_DIR, `main-${fingerprint()}.mjs`);
    if (!fs.existsSync(outfile)) {
      fs.mkdirSync(OUT_DIR, { recursive: true });
      await bundle(outfile);
      for (const old of fs.readdirSync(OUT_DIR)) {
        if (old.endsWith(".mjs") && path.join(OUT_DIR, old) !== outfile) fs.rmSync(path.join(OUT_DIR, old), { force: true });
      }
    }
    return outfile;
  } catch (err) {
    console.error(`wasm-xds: no bundle (${err instanceof Error ? err.message : String(err)}); running the sources through tsx`);
    return undefined;
  }
}

const target = usesEtcd(process.argv.slice(2), process.env) ? undefined : await currentBundle();
if (!target) await registerTsx();
await import(pathToFileURL(target ?? ENTRY).href);
