/**
 * Brings up every steady-state target side by side on loopback, each on its own port:
 *   direct          the upstream itself, no Envoy
 *   proxy-*         Envoy -> upstream:  no filter | native header_mutation | Lua | Wasm | 5 x Wasm
 *   dr-*            Envoy answering by direct_response (no upstream), same filters
 * The proxied Wasm rows are the product path: a control plane process (controlplane/main.ts)
 * serving the module over ECDS to an Envoy started from envoy-bootstrap/envoy.yaml. The control
 * plane always routes to its upstream, so the direct_response Wasm rows run a static Envoy that
 * loads the very modules that control plane built (downloaded from its module server by sha256)
 * from local files.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { writeBootstrap } from "../../test/support/bootstrap.ts";
import { allocatePorts, startControlPlane, type ControlPlanePorts, type ControlPlaneProcess } from "../../test/support/controlplane.ts";
import { freePorts } from "../../test/support/ports.ts";
import { waitFor } from "../../test/support/wait.ts";
import type { Cleanup } from "./cleanup.ts";
import { staticBootstrap, type FilterKind, type WasmModuleFile } from "./envoy-configs.ts";
import { spawnEnvoy, type BenchEnvoy } from "./envoy-process.ts";
import { CHAIN_LENGTH, chainFilterDir, chainName, chainRootId, RUST_FILTER, rustFilterDir, singleFilterDir } from "./filters.ts";
import { buildOptimised } from "./o3.ts";
import { benchPlacement } from "./reload-variants.ts";
import { startUpstream, type Upstream } from "./upstream.ts";
import { verifyTarget } from "./verify.ts";

export type Group = "baseline" | "proxy" | "direct_response";

export interface Target {
  id: string;
  label: string;
  group: Group;
  filter: FilterKind;
  url: string;
  /** How Envoy got the filter: over ECDS from the control plane, from a static config, or no filter. */
  via: "ecds" | "static" | "none";
  envoy?: BenchEnvoy;
  /** The upstream's pid when requests reach it (for CPU per request). */
  upstreamPid?: number;
}

/** A control plane process and the Envoy it configures. */
export interface ProductStack {
  cp: ControlPlaneProcess;
  ports: ControlPlanePorts;
  envoy: BenchEnvoy;
  nodeId: string;
  filtersDir: string;
  url: string;
  /** The CPUs the control plane's builds are confined to (CP_BUILD_CPUS), when there are >= 2. */
  buildCpus?: string;
  /** The CPUs of Envoy's worker threads when they were split from its other threads (on buildCpus). */
  envoyWorkerCpus?: string;
}

export interface Stacks {
  targets: Target[];
  upstream: Upstream;
  /** The single add-header filter (the reload scenarios run here). */
  single: ProductStack;
}

const FILTER_LABEL: Record<FilterKind, string> = {
  none: "no filter",
  native: "native header_mutation",
  lua: "Lua (inline_code)",
  wasm: "Wasm add-header",
  wasm5: `${CHAIN_LENGTH} x Wasm add-header`,
  rust: "Wasm add-header in Rust (proxy-wasm crate)",
};

interface StartOptions {
  workDir: string;
  concurrency: number;
  /** Also run add-header built with -O3 (static Envoys, proxied and direct_response). */
  o3: boolean;
  /** Also run the same filter written in Rust (ECDS proxied, static direct_response). */
  rust: boolean;
  /** CP_BUILD_NICE for the control planes (undefined: their default). */
  buildNice: number | undefined;
  cleanup: Cleanup;
  log: (line: string) => void;
}

async function startProduct(name: string, filtersDir: string, expected: string[], upstreamPort: number, o: StartOptions): Promise<ProductStack> {
  const ports = await allocatePorts();
  const env: Record<string, string> = o.buildNice === undefined ? {} : { CP_BUILD_NICE: String(o.buildNice) };
  // Builds confined to all CPUs but the first (>= 2 CPUs), Envoy left to the scheduler: the
  // placement that disturbed traffic least in `npm run bench:reload` (see reload-variants.ts).
  const placement = benchPlacement();
  if (placement) env.CP_BUILD_CPUS = placement.buildCpus;
  const cp = await startControlPlane({ ports, filtersDir, stateFile: path.join(o.workDir, `${name}-state.json`), upstreamPort, workDir: o.workDir, name: `${name}-controlplane`, env });
  o.cleanup.add(`${name} control plane`, () => cp.kill("SIGTERM"));
  await waitFor(async () => {
    const filters = await cp.filters();
    return expected.every((n) => filters.some((f) => f.name === n && f.status === "ok" && f.sha256));
  }, { what: `${name}: control plane to build ${expected.join(", ")}`, timeoutMs: 120_000, intervalMs: 100, details: () => cp.tail() });
  const nodeId = `bench-${name}`;
  const configPath = writeBootstrap(o.workDir, { xdsPort: ports.xds, nodeId }, `${name}-envoy.yaml`);
  const envoy = await spawnEnvoy({ name: `${name}-envoy`, configPath, workDir: o.workDir, concurrency: o.concurrency });
  o.cleanup.add(`${name} envoy`, () => envoy.stop());
  return { cp, ports, envoy, nodeId, filtersDir, url: `http://127.0.0.1:${ports.listener}/headers`, ...(placement ? { buildCpus: placement.buildCpus } : {}) };
}

function getBytes(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
      res.on("error", reject);
    }).on("error", reject);
  });
}

/** The modules a control plane built, downloaded from its module server and checked by sha256. */
async function moduleFiles(stack: ProductStack, names: string[], rootIds: string[], dir: string): Promise<WasmModuleFile[]> {
  fs.mkdirSync(dir, { recursive: true });
  const filters = await stack.cp.filters();
  return Promise.all(names.map(async (name, i) => {
    const sha = filters.find((f) => f.name === name)?.sha256;
    if (!sha) throw new Error(`control plane has no module for ${name}`);
    const bytes = await getBytes(`http://127.0.0.1:${stack.ports.modules}/modules/${sha}.wasm`);
    const got = createHash("sha256").update(bytes).digest("hex");
    if (got !== sha) throw new Error(`module ${name}: sha256 ${got}, API says ${sha}`);
    const file = path.join(dir, `${name}-${sha.slice(0, 12)}.wasm`);
    fs.writeFileSync(file, bytes);
    return { name, rootId: rootIds[i]!, file };
  }));
}

export async function startStacks(o: StartOptions): Promise<Stacks> {
  const upstream = await startUpstream(path.join(o.workDir, "upstream.log"));
  o.cleanup.add("upstream", () => upstream.stop());
  o.log(`upstream (own process, pid ${upstream.pid}) on 127.0.0.1:${upstream.port}`);

  const chainNames = Array.from({ length: CHAIN_LENGTH }, (_, i) => chainName(i + 1));
  const [single, chain, rust] = await Promise.all([
    startProduct("wasm", singleFilterDir(path.join(o.workDir, "filters-wasm")), ["add-header"], upstream.port, o),
    startProduct("wasm5", chainFilterDir(path.join(o.workDir, "filters-wasm5")), chainNames, upstream.port, o),
    // Built by the control plane from source with cargo, like any Rust filter.
    o.rust ? startProduct("rust", rustFilterDir(path.join(o.workDir, "filters-rust")), [RUST_FILTER], upstream.port, o) : undefined,
  ]);
  o.log(`${rust ? 3 : 2} control planes built their filters; their Envoys are LIVE`);
  const modulesDir = path.join(o.workDir, "modules");
  const wasmFiles = await moduleFiles(single, ["add-header"], ["add-header"], modulesDir);
  const chainFiles = await moduleFiles(chain, chainNames, chainNames.map((_, i) => chainRootId(i + 1)), modulesDir);
  const rustFiles = rust ? await moduleFiles(rust, [RUST_FILTER], [RUST_FILTER], modulesDir) : [];

  const o3Files: WasmModuleFile[] = [];
  if (o.o3) {
    const built = await buildOptimised(single.filtersDir, "add-header", modulesDir);
    o.log(`add-header built with -O3 in ${Math.round(built.compileMs)} ms`);
    o3Files.push({ name: "add-header", rootId: "add-header", file: built.file });
  }

  const specs: { id: string; filter: FilterKind; proxy: boolean; wasm?: WasmModuleFile[]; note?: string }[] = [
    { id: "proxy-none", filter: "none", proxy: true },
    { id: "proxy-native", filter: "native", proxy: true },
    { id: "proxy-lua", filter: "lua", proxy: true },
    { id: "dr-none", filter: "none", proxy: false },
    { id: "dr-native", filter: "native", proxy: false },
    { id: "dr-lua", filter: "lua", proxy: false },
    { id: "dr-wasm", filter: "wasm", proxy: false, wasm: wasmFiles },
    { id: "dr-wasm5", filter: "wasm5", proxy: false, wasm: chainFiles },
    ...(rust ? [{ id: "dr-wasm-rust", filter: "rust" as const, proxy: false, wasm: rustFiles }] : []),
    ...(o.o3 ? [
      { id: "proxy-wasm-o3", filter: "wasm" as const, proxy: true, wasm: o3Files, note: "static file, -O3" },
      { id: "dr-wasm-o3", filter: "wasm" as const, proxy: false, wasm: o3Files, note: "static file, -O3" },
    ] : []),
  ];
  const ports = await freePorts(specs.length);
  const statics = new Map(await Promise.all(specs.map(async (spec, i): Promise<[string, Target]> => {
    const configPath = path.join(o.workDir, `${spec.id}.yaml`);
    const listenerPort = ports[i]!;
    fs.writeFileSync(configPath, staticBootstrap({ listenerPort, filter: spec.filter, wasm: spec.wasm, ...(spec.proxy ? { upstreamPort: upstream.port } : {}) }));
    const envoy = await spawnEnvoy({ name: spec.id, configPath, workDir: o.workDir, concurrency: o.concurrency });
    o.cleanup.add(`envoy ${spec.id}`, () => envoy.stop());
    return [spec.id, {
      id: spec.id,
      label: `Envoy${spec.proxy ? "" : " direct_response"} + ${FILTER_LABEL[spec.filter]}${spec.wasm ? ` (${spec.note ?? "static file"})` : ""}`,
      group: spec.proxy ? "proxy" : "direct_response",
      filter: spec.filter,
      url: `http://127.0.0.1:${listenerPort}/headers`,
      via: spec.filter === "none" ? "none" : "static",
      envoy,
    }];
  })));
  o.log(`${specs.length} static Envoys LIVE`);

  const targets: Target[] = [
    { id: "direct", label: "direct to upstream (no Envoy)", group: "baseline", filter: "none", url: `http://127.0.0.1:${upstream.port}/headers`, via: "none" },
    statics.get("proxy-none")!,
    statics.get("proxy-native")!,
    statics.get("proxy-lua")!,
    { id: "proxy-wasm", label: "Envoy + Wasm add-header (ECDS)", group: "proxy", filter: "wasm", url: single.url, via: "ecds", envoy: single.envoy },
    { id: "proxy-wasm5", label: `Envoy + ${FILTER_LABEL.wasm5} (ECDS)`, group: "proxy", filter: "wasm5", url: chain.url, via: "ecds", envoy: chain.envoy },
    ...(o.o3 ? [statics.get("proxy-wasm-o3")!] : []),
    ...(rust ? [{ id: "proxy-wasm-rust", label: `Envoy + ${FILTER_LABEL.rust} (ECDS)`, group: "proxy" as const, filter: "rust" as const, url: rust.url, via: "ecds" as const, envoy: rust.envoy }] : []),
    statics.get("dr-none")!,
    statics.get("dr-native")!,
    statics.get("dr-lua")!,
    statics.get("dr-wasm")!,
    statics.get("dr-wasm5")!,
    ...(o.o3 ? [statics.get("dr-wasm-o3")!] : []),
    ...(rust ? [statics.get("dr-wasm-rust")!] : []),
  ];
  for (const t of targets) if (t.group !== "direct_response") t.upstreamPid = upstream.pid;
  for (const t of targets) await verifyTarget(t);
  o.log(`every target checked: the filter runs where it should (request + response header), and only there`);
  return { targets, upstream, single };
}
