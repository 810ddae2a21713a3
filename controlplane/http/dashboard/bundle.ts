// Server side of the dashboard: the page's TypeScript (app.ts and what it imports) bundled into
// one browser ES module with esbuild, once per process, on first request. No CDN, no build step.

import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const DIR = path.dirname(fileURLToPath(import.meta.url));

export interface DashboardAsset {
  body: string | Buffer;
  type: string;
}

let script: Promise<string> | undefined;

async function bundle(): Promise<string> {
  const result = await build({
    entryPoints: [path.join(DIR, "app.ts")],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    logLevel: "silent",
  });
  const file = result.outputFiles[0];
  if (!file) throw new Error("esbuild produced no output for the dashboard");
  return file.text;
}

/** The bundled app.js; a failed bundle is retried on the next request. */
export function dashboardScript(): Promise<string> {
  script ??= bundle().catch((err: unknown) => {
    script = undefined;
    throw err;
  });
  return script;
}

const TYPES = { "index.html": "text/html; charset=utf-8", "style.css": "text/css; charset=utf-8" } as const;

/** A static file of this folder. */
export async function dashboardFile(name: keyof typeof TYPES): Promise<DashboardAsset> {
  return { body: await readFile(path.join(DIR, name)), type: TYPES[name] };
}
