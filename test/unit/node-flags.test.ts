// `npm run cp` (package.json) and every launcher that imports CONTROLPLANE_NODE_FLAGS start the
// control plane with the same Node flags; and the flag takes effect in the Node that runs this.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { describe, test } from "node:test";
import { CONTROLPLANE_NODE_FLAGS } from "../../controlplane/node-flags.ts";
import { repoPath } from "../support/paths.ts";

describe("control plane Node flags", () => {
  test("package.json's cp script passes exactly CONTROLPLANE_NODE_FLAGS", () => {
    const pkg = JSON.parse(fs.readFileSync(repoPath("package.json"), "utf8")) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.cp, ["node", ...CONTROLPLANE_NODE_FLAGS, "scripts/run-controlplane.mjs"].join(" "));
  });

  test("this Node accepts them and caps the young generation at 2 x 16 MiB", () => {
    const script = "const v8 = require('node:v8');"
      + " const a = []; for (let i = 0; i < 2e6; i++) a.push({ i }); a.length = 0;"
      + " console.log(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size)";
    const r = spawnSync(process.execPath, [...CONTROLPLANE_NODE_FLAGS, "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Number(r.stdout) <= 2 * 16 * 1024 * 1024 + 1024 * 1024, `new space ${r.stdout.trim()} bytes`);
  });
});
