// cargo-build.ts: reading cargo's JSON and text output into "file:line:col: error" lines (pure,
// on output captured from cargo 1.95), and the process handling that needs no Rust: a missing
// cargo, and a hung one killed at the deadline with the processes it started.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { cargoBuild, cargoRecipe, cargoStderrErrors, cargoTargetDir, parseCargoOutput } from "../../../controlplane/compile/cargo-build.ts";
import { waitFor } from "../../support/wait.ts";

const where = { filterDir: "/repo/filters/hello-rust", baseDir: "/repo" };
const target = { kind: ["cdylib"], crate_types: ["cdylib"], name: "hello_rust", src_path: "/repo/filters/hello-rust/src/lib.rs" };

function compilerMessage(message: object, manifest = "/repo/filters/hello-rust/Cargo.toml"): string {
  return JSON.stringify({ reason: "compiler-message", package_id: "path+file:///repo/filters/hello-rust#0.1.0", manifest_path: manifest, target, message });
}

// As cargo 1.95 prints it for `Action::Continu` (trimmed to the fields read).
const E0599 = {
  rendered: "error[E0599]: no variant or associated item named `Continu` found for enum `Action` in the current scope\n" +
    "  --> src/lib.rs:38:17\n   |\n38 |         Action::Continu\n   |                 ^^^^^^^ variant or associated item not found in `Action`\n\n",
  level: "error",
  code: { code: "E0599" },
  message: "no variant or associated item named `Continu` found for enum `Action` in the current scope",
  spans: [
    { file_name: "src/lib.rs", line_start: 12, column_start: 1, is_primary: false },
    { file_name: "src/lib.rs", line_start: 38, column_start: 17, is_primary: true },
  ],
};

describe("parseCargoOutput", () => {
  test("an error names the file relative to the repository, line and column first, then rustc's rendering", () => {
    const out = parseCargoOutput(
      [
        JSON.stringify({ reason: "build-script-executed", package_id: "registry+https://github.com/rust-lang/crates.io-index#proxy-wasm@0.2.5" }),
        compilerMessage(E0599),
        "not json: a build script's println",
        JSON.stringify({ reason: "build-finished", success: false }),
      ].join("\n"),
      where,
    );
    assert.equal(out.errors.length, 1);
    const [headline, ...rest] = out.errors[0]!.split("\n");
    assert.equal(headline, `filters/hello-rust/src/lib.rs:38:17: error[E0599]: ${E0599.message}`);
    assert.equal(rest[0], "  --> src/lib.rs:38:17", "the rendering follows, without repeating the message");
    assert.equal(out.artifact, undefined);
  });

  test("a success yields the cdylib's .wasm and the filter's own warnings, not its dependencies'", () => {
    const warning = {
      rendered: "warning: unused variable: `x`\n", level: "warning", code: { code: "unused_variables" }, message: "unused variable: `x`",
      spans: [{ file_name: "src/lib.rs", line_start: 3, column_start: 9, is_primary: true }],
    };
    const dep = "/home/u/.cargo/registry/src/x/proxy-wasm-0.2.5";
    const out = parseCargoOutput(
      [
        compilerMessage({ ...warning, spans: [{ file_name: `${dep}/src/lib.rs`, line_start: 1, column_start: 1, is_primary: true }] }, `${dep}/Cargo.toml`),
        compilerMessage(warning),
        JSON.stringify({
          reason: "compiler-artifact", manifest_path: `${dep}/Cargo.toml`, target: { kind: ["lib"], crate_types: ["lib"] },
          filenames: ["/t/libproxy_wasm.rlib"],
        }),
        JSON.stringify({
          reason: "compiler-artifact", manifest_path: "/repo/filters/hello-rust/Cargo.toml", target, filenames: ["/t/wasm32-wasip1/release/hello_rust.wasm"],
        }),
        JSON.stringify({ reason: "build-finished", success: true }),
      ].join("\n"),
      where,
    );
    assert.deepEqual(out.errors, []);
    assert.equal(out.artifact, "/t/wasm32-wasip1/release/hello_rust.wasm");
    assert.equal(out.warnings.length, 1);
    assert.match(out.warnings[0]!, /^filters\/hello-rust\/src\/lib\.rs:3:9: warning\[unused_variables\]: unused variable: `x`$/);
  });

  test("a crate that is not a cdylib reports no artifact", () => {
    const rlib = {
      reason: "compiler-artifact", manifest_path: "/repo/filters/hello-rust/Cargo.toml", target: { kind: ["lib"], crate_types: ["rlib"] },
      filenames: ["/t/libhello_rust.rlib"],
    };
    const out = parseCargoOutput(JSON.stringify(rlib), where);
    assert.equal(out.artifact, undefined);
  });
});

describe("cargoStderrErrors", () => {
  test("a Cargo.toml error gets its location in front, progress lines are dropped", () => {
    const stderr = [
      "    Updating crates.io index",
      "error: unclosed array, expected `]`",
      " --> Cargo.toml:23:9",
      "   |",
      "23 | bad = [",
      "   |        ^",
      "",
    ].join("\n");
    const [e, ...more] = cargoStderrErrors(stderr, where);
    assert.deepEqual(more, []);
    assert.match(e!, /^filters\/hello-rust\/Cargo\.toml:23:9: error: unclosed array, expected `\]`\n --> Cargo\.toml:23:9/);
    assert.doesNotMatch(e!, /Updating/);
  });

  test("errors without a location stay as cargo wrote them", () => {
    const stderr = "   Compiling hello-rust v0.1.0\n" +
      "error: cannot update the lock file /repo/filters/hello-rust/Cargo.lock because --locked was passed to prevent this\nhelp: remove --locked\n";
    assert.deepEqual(cargoStderrErrors(stderr, where), [
      "error: cannot update the lock file /repo/filters/hello-rust/Cargo.lock because --locked was passed to prevent this\nhelp: remove --locked",
    ]);
  });
});

describe("cargo's recipe and target folder", () => {
  test("--locked exactly when the filter ships a Cargo.lock; always release for wasm32-wasip1 with JSON messages", () => {
    assert.deepEqual(cargoRecipe(false), ["build", "--release", "--target", "wasm32-wasip1", "--message-format=json"]);
    assert.deepEqual(cargoRecipe(true).slice(-1), ["--locked"]);
  });

  test("one target folder per filter folder, outside it", async () => {
    const a = await cargoTargetDir("/state/cargo-target", "/repo/filters/hello-rust");
    const b = await cargoTargetDir("/state/cargo-target", "/other/filters/hello-rust");
    assert.match(a, /^\/state\/cargo-target\/hello-rust-[0-9a-f]{12}$/);
    assert.notEqual(a, b, "a copy of the filters folder gets its own");
    assert.equal(await cargoTargetDir("/state/cargo-target", "/repo/filters/hello-rust"), a, "stable");
  });
});

describe("cargoBuild: the process", () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-xds-cargo-"));
    fs.mkdirSync(path.join(dir, "filters", "x"), { recursive: true });
    fs.writeFileSync(path.join(dir, "filters", "x", "Cargo.toml"), "[package]\nname = \"x\"\n");
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("a missing cargo is a build error saying how to install Rust", async () => {
    const r = await cargoBuild(path.join(dir, "filters", "x"), { targetDir: path.join(dir, "t"), baseDir: dir, cargo: path.join(dir, "no-such-cargo") });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : "", /^cargo not found \(.*no-such-cargo\): .*rustup\.rs.*rustup target add wasm32-wasip1/);
  });

  test("a cargo that hangs is killed at the deadline, with the processes it started", async () => {
    // Stands in for cargo and the rustc it would start: a child that outlives a killed parent
    // unless the whole process group goes.
    const pidFile = path.join(dir, "child.pid");
    const fake = path.join(dir, "hanging-cargo");
    fs.writeFileSync(fake, `#!/bin/sh\nsleep 60 &\necho $! > ${pidFile}\nwait\n`, { mode: 0o755 });
    const r = await cargoBuild(path.join(dir, "filters", "x"), { targetDir: path.join(dir, "t"), baseDir: dir, cargo: fake, timeoutMs: 500 });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : "", /^cargo build timed out after 500 ms \(killed\)$/);
    const child = Number(fs.readFileSync(pidFile, "utf8"));
    await waitFor(() => !alive(child), { what: `the hung build's child ${child} to be gone`, timeoutMs: 5000 });
  });

  test("a cargo that exits non-zero without diagnostics quotes its output", async () => {
    const fake = path.join(dir, "failing-cargo");
    fs.writeFileSync(fake, "#!/bin/sh\necho 'something odd happened' >&2\nexit 101\n", { mode: 0o755 });
    const r = await cargoBuild(path.join(dir, "filters", "x"), { targetDir: path.join(dir, "t"), baseDir: dir, cargo: fake });
    assert.equal(r.ok, false);
    assert.equal(!r.ok ? r.error : "", "cargo build failed (exit code 101); its output:\nsomething odd happened");
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
