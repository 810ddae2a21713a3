// npm run filters -- list | enable <name> | disable <name> | fail-policy <name> <policy> | new <name> [--lang rust] | test <name>
// Exit codes: 0 done, 1 the command failed (the API's reason, a build error, ...), 2 usage.

import path from "node:path";
import { fileURLToPath } from "node:url";
import { closeCompiler } from "../compile/compiler.ts";
import { isValidFilterName } from "../compile/manifest.ts";
import { AdminClient, DEFAULT_ADMIN_URL, type FilterInfo } from "./admin-client.ts";
import { checkFilter } from "./check.ts";
import { CliError, UsageError } from "./errors.ts";
import { LANGUAGES, scaffoldFilter, type Language } from "./scaffold.ts";
import { FAIL_POLICIES } from "../state/operator-state.ts";

export const USAGE = `Usage: npm run filters -- <command>

  list [--json]      filters: status, enabled, order, sha256, last error
  enable <name>      switch a filter on (route-level: no listener drain)
  disable <name>     switch a filter off
  fail-policy <name> open|closed|reload
                     what Envoy does when the filter's VM cannot run: skip it (open),
                     answer 503 (closed), or answer 503 and rebuild a crashed VM (reload)
  new <name> [--lang assemblyscript|rust]
                     create <filters dir>/<name>/ from templates/filter/ (AssemblyScript,
                     the default) or templates/filter-rust/ (a Rust crate using proxy-wasm,
                     built with cargo for wasm32-wasip1)
  test <name>        build and validate a filter as the control plane does, then run
                     the cases of its filter.test.json in an in-process proxy-wasm host

Environment: CP_ADMIN_URL (default ${DEFAULT_ADMIN_URL}), CP_ADMIN_TOKEN,
CP_FILTERS_DIR (default ./filters).`;

export interface Io {
  out(line: string): void;
  err(line: string): void;
}

const filtersDir = (env: NodeJS.ProcessEnv): string => path.resolve(env.CP_FILTERS_DIR || "filters");

function oneName(command: string, args: string[]): string {
  if (args.length !== 1 || args[0] === undefined) throw new UsageError(`${command} takes exactly one filter name`);
  const name = args[0];
  if (!isValidFilterName(name)) throw new UsageError(`invalid filter name ${JSON.stringify(name)}: use a-z, 0-9, '-' and '_', starting with a letter or digit, at most 63 characters`);
  return name;
}

/** `new`'s arguments: one name and an optional `--lang <language>` (or `--lang=<language>`). */
function newArgs(args: string[]): { name: string; lang: Language } {
  const rest: string[] = [];
  let lang: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--lang") lang = args[++i] ?? "";
    else if (a.startsWith("--lang=")) lang = a.slice("--lang=".length);
    else rest.push(a);
  }
  const name = oneName("new", rest);
  if (lang === undefined) return { name, lang: "assemblyscript" };
  const chosen = lang === "as" ? "assemblyscript" : lang;
  if (!(LANGUAGES as readonly string[]).includes(chosen)) {
    throw new UsageError(`unknown language ${JSON.stringify(lang)}: expected one of ${LANGUAGES.join(", ")}`);
  }
  return { name, lang: chosen as Language };
}

function firstLine(error: string, name: string): string {
  const where = /([\w./@-]+\.ts)\((\d+),(\d+)\)/.exec(error);
  const line = (error.split("\n")[0] ?? "").replace(`${name}: `, "");
  return where ? `${where[1]}:${where[2]}:${where[3]}: ${line}` : line;
}

export function formatTable(filters: FilterInfo[]): string[] {
  const rows = [["NAME", "STATUS", "ENABLED", "ORDER", "SHA256", "ERROR"], ...filters.map((f) => [
    f.name, f.status, f.enabled ? "yes" : "no", String(f.order), f.sha256 ? f.sha256.slice(0, 12) : "-", f.error ? firstLine(f.error, f.name) : "",
  ])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd());
}

export async function run(argv: string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  const [command, ...args] = argv;
  try {
    switch (command) {
      case "list": {
        if (args.some((a) => a !== "--json")) throw new UsageError(`list takes no arguments but --json`);
        const filters = await new AdminClient(env.CP_ADMIN_URL, env.CP_ADMIN_TOKEN).listFilters();
        if (args.includes("--json")) io.out(JSON.stringify(filters, null, 2));
        else if (filters.length === 0) io.out("no filters");
        else formatTable(filters).forEach((l) => io.out(l));
        return 0;
      }
      case "enable":
      case "disable": {
        const name = oneName(command, args);
        const f = await new AdminClient(env.CP_ADMIN_URL, env.CP_ADMIN_TOKEN).switchFilter(name, command === "enable");
        io.out(`${f.name}: ${f.enabled ? "enabled" : "disabled"} (order ${f.order}, build ${f.status}${f.sha256 ? `, ${f.sha256.slice(0, 12)}` : ""})`);
        return 0;
      }
      case "fail-policy": {
        const [name, policy] = args;
        if (args.length !== 2 || name === undefined || policy === undefined) throw new UsageError("fail-policy takes a filter name and one of open, closed, reload");
        oneName(command, [name]);
        if (!(FAIL_POLICIES as readonly string[]).includes(policy)) throw new UsageError(`unknown fail policy ${JSON.stringify(policy)}: expected one of ${FAIL_POLICIES.join(", ")}`);
        const f = await new AdminClient(env.CP_ADMIN_URL, env.CP_ADMIN_TOKEN).setFailPolicy(name, policy);
        io.out(`${f.name}: fail policy ${f.failPolicy}`);
        return 0;
      }
      case "new": {
        const { name, lang } = newArgs(args);
        const made = scaffoldFilter(filtersDir(env), name, { lang });
        if (made.libCreated) io.out(`created ${made.libCreated} (the shared configuration helper)`);
        io.out(`created ${made.dir}/: ${made.files.join(", ")}`);
        if (lang === "rust") io.out("builds with cargo for wasm32-wasip1 (npm run setup adds the target when rustup is present)");
        io.out(`next: npm run filters -- test ${name}   (a running control plane builds and serves it already)`);
        return 0;
      }
      case "test": {
        const name = oneName(command, args);
        const report = await checkFilter(filtersDir(env), name);
        io.out(`${name}: built in ${report.buildMs} ms, ${report.bytes} bytes, sha256 ${report.sha256.slice(0, 12)}, root id "${report.rootId}", proxy-wasm ABI ${report.abiVersion}: valid for Envoy`);
        const caps = report.capabilities;
        io.out(`${name}: capabilities declared: ${caps.declared.length > 0 ? caps.declared.join(", ") : "none"} (plus the base set)`);
        for (const u of caps.undeclaredImports) {
          io.out(`  warning: imports ${u.import}, which Envoy will deny${u.group ? `: add "${u.group}" to filter.json "capabilities"` : ""}`);
        }
        if (report.cases.length === 0) io.out(`${name}: no filter.test.json: nothing more to run`);
        for (const c of report.cases) {
          io.out(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}`);
          for (const p of c.problems) io.out(`       ${p}`);
          for (const w of c.warnings) io.out(`       note: ${w}`);
        }
        const failed = report.cases.filter((c) => !c.ok).length;
        if (failed > 0) throw new CliError(`${name}: ${failed} of ${report.cases.length} case${report.cases.length === 1 ? "" : "s"} failed`);
        if (report.cases.length > 0) io.out(`${name}: all ${report.cases.length} cases passed`);
        return 0;
      }
      case undefined:
      case "help":
      case "--help":
      case "-h":
        (command === undefined ? io.err : io.out)(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`filters: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof CliError) {
      io.err(`filters: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  run(process.argv.slice(2), process.env, { out: (l) => console.log(l), err: (l) => console.error(l) })
    .then(
      (code) => {
        process.exitCode = code;
      },
      (err: unknown) => {
        console.error(`filters: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        process.exitCode = 1;
      },
    )
    // `test` started the compile worker: end it rather than wait for its idle timeout.
    .finally(() => closeCompiler());
}
