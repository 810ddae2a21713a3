// Every command in README.md is run: here (blocks marked `<!-- runnable -->`, which must be quick
// and leave nothing behind), or by the test or CI step COVERED names for it (the long-running
// ones: `npm run dev` and its curl are driven end to end by test/e2e/dev.test.ts; `npm run setup`
// and `npm test` are what .ci/run runs on a fresh clone). A command in neither fails this test,
// as do an `npm run` script or a file path the README names that does not exist.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { describe, it } from "node:test";
import { repoPath, repoRoot } from "../support/paths.ts";

const README = fs.readFileSync(repoPath("README.md"), "utf8");
const scripts = (JSON.parse(fs.readFileSync(repoPath("package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;

interface Block {
  marker: "runnable" | "covered" | undefined;
  line: number;
  commands: string[];
}

/** Shell blocks (```sh) with the HTML comment on the line before them, and their commands. */
function shellBlocks(markdown: string): Block[] {
  const lines = markdown.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.findIndex((line, j) => j > i && line.startsWith("```"));
    assert.ok(end > i, `README.md:${i + 1}: unclosed code block`);
    if (["sh", "bash", "shell"].includes(open[1]!)) {
      const previous = lines.slice(0, i).reverse().find((line) => line.trim() !== "") ?? "";
      const marker = /^<!-- runnable -->$/.test(previous) ? "runnable" : /^<!-- covered: .+ -->$/.test(previous) ? "covered" : undefined;
      // One command per line; a trailing "# ..." is the README's comment, not part of it.
      const commands = lines.slice(i + 1, end).map((line) => line.replace(/\s+#\s.*$/, "").trim()).filter((line) => line !== "");
      blocks.push({ marker, line: i + 1, commands });
    }
    i = end;
  }
  return blocks;
}

/**
 * The commands that run elsewhere, and the proof: `file` must contain `contains`. Edit the README
 * command and this together, so the claim stays true.
 */
const COVERED: Record<string, { file: string; contains: string; why: string }> = {
  "npm run setup": { file: ".ci/run", contains: "\nnpm run setup\n", why: "CI's first step on a fresh clone" },
  "npm run dev": {
    file: "test/e2e/dev.test.ts", contains: 'spawn("npm", ["run", "dev"', why: "the e2e test runs it, curls, edits, Ctrl-C",
  },
  "curl -si http://127.0.0.1:10000/headers": {
    file: "test/e2e/dev.test.ts", contains: "/curl -si (http:\\/\\/\\S+)/",
    why: "the e2e test curls what npm run dev prints (the default port is asserted by the options unit test)",
  },
  "npm test": { file: ".ci/run", contains: "timeout --kill-after=30s 20m npm test\n", why: "CI runs it after npm run setup" },
  // No Docker engine in CI: the compose file is checked offline with a token set, and its Envoy
  // bootstrap + token are what every e2e test runs with the PyPI Envoy.
  "export CP_XDS_TOKEN=$(openssl rand -hex 32)": { file: ".ci/run", contains: "CP_XDS_TOKEN=", why: "compose check with a token" },
  "CP_XDS_HOST=0.0.0.0 npm run cp": { file: "test/unit/config.test.ts", contains: "CP_XDS_TOKEN", why: "0.0.0.0 is accepted with a token" },
  "docker compose up": { file: ".ci/run", contains: "docker-compose -f docker-compose.yml config -q", why: "offline config check" },
  "curl -si localhost:10000/headers": {
    file: "test/e2e/dev.test.ts", contains: "/headers", why: "the same request through the local Envoy",
  },
  // Replicas (README "Running several replicas"): the ha profile is checked offline; what it runs
  // (replicas on etcd, an Envoy failing over) is the replicas e2e test with real etcd and Envoy.
  "export CP_XDS_TOKEN=$(openssl rand -hex 32) CP_ADMIN_TOKEN=$(openssl rand -hex 32)": {
    file: ".ci/run", contains: "--profile ha config -q", why: "ha profile check with a token",
  },
  "docker compose --profile ha up -d envoy-ha": { file: ".ci/run", contains: "--profile ha config -q", why: "offline config check of the ha profile" },
  "curl -si localhost:10001/headers": {
    file: "test/e2e/replicas-etcd.test.ts", contains: "/headers", why: "requests through Envoys on replicas",
  },
};

describe("README commands", () => {
  const blocks = shellBlocks(README);

  it("every shell block is marked runnable or covered, and every covered command says where it runs", () => {
    assert.ok(blocks.length >= 4, "the README has shell blocks");
    for (const block of blocks) {
      assert.ok(block.marker,
        `README.md:${block.line}: precede the block with <!-- runnable --> or <!-- covered: <which test or CI step> -->`);
      if (block.marker !== "covered") continue;
      for (const command of block.commands) {
        const cover = COVERED[command];
        assert.ok(cover, `README.md:${block.line}: "${command}" is marked covered, but COVERED in this test does not say by what`);
        const text = fs.readFileSync(repoPath(cover.file), "utf8");
        assert.ok(text.includes(cover.contains),
          `"${command}" is said to run in ${cover.file} (${cover.why}), which has no ${JSON.stringify(cover.contains)}`);
      }
    }
  });

  it("the quick start is npm run setup, npm run dev, the first curl, npm test, and fits one screen", () => {
    const start = README.indexOf("## Quick start");
    const end = README.indexOf("\n## ", start + 1);
    assert.ok(start > 0 && end > start);
    const quickStart = README.slice(start, end);
    assert.ok(README.slice(0, end).split("\n").length <= 45, "title, intro and quick start fit 45 lines");
    const order = ["npm run setup", "npm run dev", "curl -si http://127.0.0.1:10000/headers", "filters/add-header/index.ts",
      "http://127.0.0.1:19000/", "npm test"];
    const positions = order.map((needle) => quickStart.indexOf(needle));
    assert.ok(positions.every((p) => p >= 0), `quick start mentions ${order.join(", ")}`);
    assert.deepEqual([...positions].sort((a, b) => a - b), positions, "in that order");
  });

  it("every npm script the README names exists", () => {
    const named = new Set([...README.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!));
    assert.ok(named.has("dev") && named.has("setup"));
    for (const name of named) assert.ok(scripts[name], `README names "npm run ${name}", which package.json does not define`);
    assert.ok(scripts.test, "npm test");
  });

  it("every file path and link the README names exists", () => {
    const paths = new Set<string>();
    for (const m of README.matchAll(/`([^`\s]+)`/g)) {
      const token = m[1]!;
      // Repository paths: a folder or a file with an extension; not URLs, globs or placeholders.
      const looksLikePath = /^[\w.-]+(\/[\w.-]*)*$/.test(token) && !token.includes("..");
      if (looksLikePath && (token.includes("/") || /\.(ts|json|yml|yaml|md|sh)$/.test(token))) {
        paths.add(token.replace(/\/$/, ""));
      }
    }
    for (const m of README.matchAll(/\]\(([^)#\s]+)[^)]*\)/g)) {
      if (!/^https?:/.test(m[1]!)) paths.add(m[1]!);
    }
    for (const p of ["filters/add-header/index.ts", "docker-compose.yml", "docs/security.md", "docs/xds.md"]) {
      assert.ok(paths.has(p), `finds ${p}`);
    }
    // Made by npm run setup, not in a clone.
    const generated = new Set([".tools"]);
    // "Layout" names subfolders inside their parent's parentheses: `controlplane/` (`compile/`, ...).
    const parents = ["", "controlplane", "test", "dev"];
    const exists = (p: string): boolean => (p.includes("/") ? [""] : parents).some((parent) => fs.existsSync(repoPath(parent, p)));
    const missing = [...paths].filter((p) => !generated.has(p) && !exists(p));
    assert.deepEqual(missing, [], "paths named in README.md that do not exist");
  });

  for (const block of blocks.filter((b) => b.marker === "runnable")) {
    for (const command of block.commands) {
      it(`runs: ${command}`, () => {
        const result = spawnSync("bash", ["-c", command], { cwd: repoRoot, encoding: "utf8", timeout: 60_000 });
        assert.equal(result.status, 0,
          `README.md:${block.line}: "${command}" exited ${String(result.status)}\n${result.stdout}\n${result.stderr}`);
        assert.match(result.stdout, /Usage/, "prints its usage");
      });
    }
  }
});
