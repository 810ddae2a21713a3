import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply } from "fastify";
import { moduleCapabilities, parseCapabilityList } from "../../compile/capabilities.ts";
import { ROOT_ID_RULE, ROOT_ID_SOURCE } from "../../compile/manifest.ts";
import { preflightGate } from "../../compile/preflight-gate.ts";
import { formatBytes, validateModule } from "../../compile/validate.ts";
import { effectiveFilters, type EffectiveFilter } from "../../registry/effective.ts";
import type { FilterChoice } from "../../state/operator-state.ts";
import { StoreWriteError } from "../../store/durable-file.ts";
import { EXTENSION_CONFIG } from "../../xds/type-urls.ts";
import type { AdminDeps } from "../admin-deps.ts";
import type { FilterView } from "../api-view.ts";

const NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$";
const SHA_PATTERN = "^[0-9a-f]{64}$";
/** Largest prebuilt module accepted by upload unless CP_MAX_MODULE_BYTES says otherwise. */
export const MAX_MODULE_BYTES = 8 * 1024 * 1024;
const FAIL_POLICY_ENUM = ["open", "closed", "reload"] as const;

const nameParams = {
  type: "object",
  required: ["name"],
  properties: { name: { type: "string", pattern: NAME_PATTERN, description: "filter name (folder under filters/)" } },
} as const;
const errorSchema = { type: "object", properties: { error: { type: "string" } }, required: ["error"] } as const;
const filterSchema = {
  type: "object",
  properties: {
    name: { type: "string" },
    enabled: { type: "boolean" },
    order: { type: "integer" },
    sha256: { type: ["string", "null"] },
    status: { type: "string", enum: ["ok", "building", "error"] },
    error: { type: "string", description: "compiler or validation message with file:line" },
    builtAt: { type: "string" },
    buildMs: { type: "number" },
    size: { type: "integer" },
    configuration: { type: ["string", "null"] },
    failPolicy: { type: "string", enum: FAIL_POLICY_ENUM },
    capabilities: {
      type: "object",
      description: "declared: groups from filter.json; granted: Envoy's allowed_capabilities; undeclaredImports: host functions the module imports without a grant (Envoy denies those calls)",
      properties: {
        declared: { type: "array", items: { type: "string" } },
        granted: { type: "array", items: { type: "string" } },
        undeclaredImports: { type: "array", items: { type: "object", properties: { import: { type: "string" }, group: { type: "string" } }, required: ["import"] } },
      },
    },
    targets: { type: ["object", "null"], properties: { clusters: { type: "array", items: { type: "string" } }, nodes: { type: "array", items: { type: "string" } } } },
    pinnedSha256: { type: ["string", "null"] },
    health: {
      type: "object",
      description: "runtime failures Envoys reported (FAIL_RELOAD stats) and the last automatic response (rolled_back or disabled) with its reason",
      properties: {
        runtimeFailures: { type: "integer" },
        lastFailureAt: { type: ["string", "null"] },
        action: { type: ["string", "null"], enum: ["rolled_back", "disabled", null] },
        reason: { type: ["string", "null"] },
        actedAt: { type: ["string", "null"] },
      },
    },
  },
  required: ["name", "enabled", "order", "sha256", "status"],
} as const;
const detailSchema = {
  type: "object",
  properties: {
    ...filterSchema.properties,
    history: { type: "array", items: { type: "object", properties: { sha256: { type: "string" }, builtAt: { type: "string" }, size: { type: "integer" }, source: { type: "string" }, current: { type: "boolean" } } } },
    envoys: { type: "array", items: { type: "object", properties: { node: { type: "string" }, cluster: { type: "string" }, sha256: { type: ["string", "null"] } } } },
  },
} as const;
const MODULE_BODY = {
  description: "the module's bytes (a proxy-wasm ABI 0.2.x Wasm binary)",
  content: Object.fromEntries(["application/wasm", "application/octet-stream"]
    .map((type) => [type, { schema: { type: "string", format: "binary" } }])),
};
const responses = (ok: object) => ({ 200: ok, 400: errorSchema, 404: errorSchema, 503: errorSchema });

/** The API shape of a filter: what it is, whether and how Envoy runs it, how its build went. */
export function filterView(f: EffectiveFilter): FilterView {
  const out: FilterView = {
    name: f.name,
    enabled: f.enabled,
    order: f.order,
    sha256: f.sha256 ?? null,
    status: f.status,
    configuration: f.configuration ?? null,
    failPolicy: f.failPolicy,
    targets: f.targets ?? null,
    pinnedSha256: f.pinnedSha256 ?? null,
  };
  if (f.error !== undefined) out.error = f.error;
  if (f.builtAt !== undefined) out.builtAt = f.builtAt;
  if (f.buildMs !== undefined) out.buildMs = f.buildMs;
  if (f.size !== undefined) out.size = f.size;
  if (f.capabilities !== undefined) out.capabilities = f.capabilities;
  return out;
}

/**
 * Filter routes. Every change is an operator-state change (persisted atomically) that the
 * publisher turns into snapshots: enable/disable and configuration are RDS/ECDS-only, order and
 * targeting change listeners.
 */
export async function filterRoutes(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  // The filter view plus its runtime health record, when the health monitor runs.
  const view = (f: EffectiveFilter): FilterView => (deps.health ? { ...filterView(f), health: deps.health.health(f.name) } : filterView(f));
  const find = (name: string) => effectiveFilters(deps.registry, deps.state).find((f) => f.name === name);
  const notFound = (reply: FastifyReply, name: string) => reply.code(404).send({ error: `no filter named ${JSON.stringify(name)}` });
  const change = async (name: string, reply: FastifyReply, choice: FilterChoice, what: Record<string, unknown>) => {
    if (!deps.registry.get(name)) return notFound(reply, name);
    try {
      await deps.state.update(name, choice);
    } catch (err) {
      // Nothing changed (operator-state.ts saves before it applies): say why, retryable.
      if (err instanceof StoreWriteError) return reply.code(503).send({ error: `${name}: not changed: ${err.message}` });
      throw err;
    }
    deps.events.emit({ type: "state.changed", filter: name, change: what });
    const updated = find(name);
    return updated ? view(updated) : notFound(reply, name);
  };
  // A change of what Envoy runs (configuration, pinned module) is pre-flighted first: the module
  // started with the configuration Envoy would get (compile/preflight-gate.ts). Refused: a 400
  // with the module's reason, nothing saved, nothing pushed.
  const gate = preflightGate(deps.registry, deps.state);
  const gatedChange = async (name: string, reply: FastifyReply, choice: FilterChoice, what: Record<string, unknown>) => {
    if (!deps.registry.get(name)) return notFound(reply, name);
    const outcome = await gate.change(name, choice, () => change(name, reply, choice, what));
    if (outcome.ok) return outcome.value;
    reply.log.warn({ filter: name, change: what, error: outcome.error }, "operator change refused by the pre-flight");
    return reply.code(400).send({ error: outcome.error });
  };

  app.get("/api/filters", {
    schema: { summary: "List filters", tags: ["filters"], response: { 200: { type: "array", items: filterSchema } } },
  }, async () => effectiveFilters(deps.registry, deps.state).map(view));

  app.get<{ Params: { name: string } }>("/api/filters/:name", {
    schema: { summary: "One filter, its retained modules and which module each Envoy runs", tags: ["filters"], params: nameParams, response: responses(detailSchema) },
  }, async (req, reply) => {
    const f = find(req.params.name);
    if (!f) return notFound(reply, req.params.name);
    const history = deps.registry.historyOf(f.name).map((m) => ({ sha256: m.sha256, builtAt: m.builtAt, size: m.size, source: m.source, current: m.sha256 === f.sha256 }));
    const envoys = deps.clients.list().flatMap((c) => {
      const acked = c.types.get(EXTENSION_CONFIG)?.ackedResources?.[f.name];
      if (acked === undefined) return [];
      return [{ node: c.nodeId, cluster: c.nodeCluster, sha256: deps.resourceAt(EXTENSION_CONFIG, f.name, acked)?.moduleSha256 ?? null }];
    });
    return { ...view(f), history: history.reverse(), envoys };
  });

  for (const action of ["enable", "disable"] as const) {
    app.post<{ Params: { name: string } }>(`/api/filters/:name/${action}`, {
      schema: { summary: `${action === "enable" ? "Enable" : "Disable"} a filter (route-level switch: no listener drain)`, tags: ["filters"], params: nameParams, response: responses(filterSchema) },
    }, async (req, reply) => {
      if (req.body !== undefined && req.body !== null && !(typeof req.body === "object" && Object.keys(req.body).length === 0)) {
        return reply.code(400).send({ error: `${action} takes no request body` });
      }
      req.log.info({ filter: req.params.name, action }, "filter switched");
      return change(req.params.name, reply, { enabled: action === "enable" }, { enabled: action === "enable" });
    });
  }

  app.put<{ Params: { name: string }; Body: { order: number } }>("/api/filters/:name/order", {
    schema: {
      summary: "Position in the HTTP filter chain (lower runs first; changes the listener)", tags: ["filters"], params: nameParams,
      body: { type: "object", required: ["order"], additionalProperties: false, properties: { order: { type: "integer", minimum: -1000000, maximum: 1000000 } } },
      response: responses(filterSchema),
    },
  }, async (req, reply) => change(req.params.name, reply, { order: req.body.order }, { order: req.body.order }));

  app.put<{ Params: { name: string }; Body: { configuration: string } }>("/api/filters/:name/configuration", {
    schema: {
      summary: "Plugin configuration handed to the module's onConfigure (ECDS only, no rebuild); 400 if the module traps or returns false with it (pre-flight)",
      tags: ["filters"], params: nameParams,
      body: { type: "object", required: ["configuration"], additionalProperties: false, properties: { configuration: { type: "string", maxLength: 65536 } } },
      response: responses(filterSchema),
    },
  }, async (req, reply) => gatedChange(req.params.name, reply, { configuration: req.body.configuration }, { configuration: req.body.configuration }));

  app.delete<{ Params: { name: string } }>("/api/filters/:name/configuration", {
    schema: {
      summary: "Back to the manifest's configuration (pre-flighted like a PUT)", tags: ["filters"], params: nameParams, response: responses(filterSchema),
    },
  }, async (req, reply) => gatedChange(req.params.name, reply, { configuration: undefined }, { configuration: null }));

  app.put<{ Params: { name: string }; Body: { failPolicy: (typeof FAIL_POLICY_ENUM)[number] } }>("/api/filters/:name/fail-policy", {
    schema: {
      summary: "open: skip the filter when its VM cannot run; closed: answer 503; reload: 503 and Envoy rebuilds a crashed VM (Envoy's failure_policy)", tags: ["filters"], params: nameParams,
      body: { type: "object", required: ["failPolicy"], additionalProperties: false, properties: { failPolicy: { type: "string", enum: FAIL_POLICY_ENUM } } },
      response: responses(filterSchema),
    },
  }, async (req, reply) => change(req.params.name, reply, { failPolicy: req.body.failPolicy }, { failPolicy: req.body.failPolicy }));

  const idList = { type: "array", maxItems: 256, items: { type: "string", minLength: 1, maxLength: 253 } } as const;
  app.put<{ Params: { name: string }; Body: { clusters?: string[]; nodes?: string[] } }>("/api/filters/:name/targets", {
    schema: {
      summary: "Run the filter only on Envoys with these node clusters or ids (both empty: everywhere)", tags: ["filters"], params: nameParams,
      body: { type: "object", additionalProperties: false, properties: { clusters: idList, nodes: idList } },
      response: responses(filterSchema),
    },
  }, async (req, reply) => {
    const targets = { clusters: [...new Set(req.body.clusters ?? [])].sort(), nodes: [...new Set(req.body.nodes ?? [])].sort() };
    const all = targets.clusters.length === 0 && targets.nodes.length === 0;
    return change(req.params.name, reply, { targets: all ? undefined : targets }, { targets: all ? null : targets });
  });

  app.delete<{ Params: { name: string } }>("/api/filters/:name/targets", {
    schema: { summary: "Run the filter on every Envoy", tags: ["filters"], params: nameParams, response: responses(filterSchema) },
  }, async (req, reply) => change(req.params.name, reply, { targets: undefined }, { targets: null }));

  app.post<{ Params: { name: string }; Body: { sha256: string } }>("/api/filters/:name/rollback", {
    schema: {
      summary: "Pin one of the filter's retained modules until its next edit or an unpin; 400 if it does not start with the current configuration (pre-flight)",
      tags: ["filters"], params: nameParams,
      body: { type: "object", required: ["sha256"], additionalProperties: false, properties: { sha256: { type: "string", pattern: SHA_PATTERN } } },
      response: responses(filterSchema),
    },
  }, async (req, reply) => {
    const { name } = req.params;
    if (!deps.registry.get(name)) return notFound(reply, name);
    if (!deps.registry.historyOf(name).some((m) => m.sha256 === req.body.sha256)) {
      return reply.code(404).send({ error: `filter ${name} has no retained module ${req.body.sha256} (see GET /api/filters/${name} history)` });
    }
    return gatedChange(name, reply, { pinnedSha256: req.body.sha256 }, { pinnedSha256: req.body.sha256 });
  });

  app.delete<{ Params: { name: string } }>("/api/filters/:name/pin", {
    schema: {
      summary: "Drop a rollback pin: back to the newest module (pre-flighted like a rollback)", tags: ["filters"], params: nameParams,
      response: responses(filterSchema),
    },
  }, async (req, reply) => gatedChange(req.params.name, reply, { pinnedSha256: undefined }, { pinnedSha256: null }));

  // Prebuilt modules (Rust, Go, C++ SDKs): validated exactly like a built one.
  const maxModuleBytes = deps.maxModuleBytes ?? MAX_MODULE_BYTES;
  app.addContentTypeParser(["application/wasm", "application/octet-stream"], { parseAs: "buffer", bodyLimit: maxModuleBytes }, (_req, body, done) => done(null, body));
  app.put<{ Params: { name: string }; Querystring: { rootId?: string; capabilities?: string }; Body: Buffer }>("/api/filters/:name/module", {
    bodyLimit: maxModuleBytes,
    // The body is raw bytes, which a JSON schema cannot validate (fastify would check the Buffer
    // against it): the request body is declared for the OpenAPI document only.
    config: { swaggerTransform: ({ schema, url }) => ({ schema: { ...schema, body: MODULE_BODY }, url }) },
    // Refuse an announced oversize body before reading it, with the reason (the body limit
    // alone answers a bare "Request body is too large", and only after reading that much).
    onRequest: async (req, reply) => {
      const length = Number(req.headers["content-length"]);
      if (Number.isFinite(length) && length > maxModuleBytes) {
        return reply.code(413).header("connection", "close").send({ error: `${(req.params as { name?: string }).name ?? "module"}: module is ${formatBytes(length)}, over the ${formatBytes(maxModuleBytes)} limit (CP_MAX_MODULE_BYTES)` });
      }
    },
    schema: {
      summary: "Upload a prebuilt proxy-wasm module (application/wasm); served and pushed like a built one", tags: ["filters"], params: nameParams,
      querystring: { type: "object", additionalProperties: false, properties: {
        rootId: { type: "string", pattern: ROOT_ID_SOURCE, description: `root id the module registers (default: the filter name); ${ROOT_ID_RULE}` },
        capabilities: { type: "string", maxLength: 1024, description: "comma-separated capability groups the module needs beyond the base set (as filter.json `capabilities`)" },
      } },
      response: { ...responses(filterSchema), 413: errorSchema },
    },
  }, async (req, reply) => {
    const { name } = req.params;
    if (!Buffer.isBuffer(req.body) || req.body.byteLength === 0) {
      return reply.code(400).send({ error: "send the module as the request body with content-type application/wasm" });
    }
    const declared = parseCapabilityList(req.query.capabilities ?? "");
    if (!declared.ok) return reply.code(400).send({ error: `${name}: ${declared.error}` });
    const bytes = new Uint8Array(req.body);
    const checked = validateModule(bytes, { maxBytes: maxModuleBytes });
    if (!checked.ok) return reply.code(bytes.byteLength > maxModuleBytes ? 413 : 400).send({ error: `${name}: ${checked.error}` });
    const rootId = req.query.rootId ?? name;
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    // Checked and stored under the filter's pre-flight lock: a configuration change cannot slip in
    // between and leave Envoy a pair nobody started.
    const refused = await gate.exclusive(name, async () => {
      // Started as Envoy would start it, with this root id and the filter's configuration: a module
      // that does not create that root context (or traps, or refuses the configuration) would make
      // Envoy fail every request through the listener once pushed.
      const configuration = find(name)?.configuration ?? "";
      const verdict = await gate.check(bytes, { sha256, rootId, configuration });
      if (!verdict.ok) {
        req.log.warn({ filter: name, rootId, error: verdict.error }, "uploaded module refused by the pre-flight");
        return { status: 400, error: `${name}: the module does not start with root id ${JSON.stringify(rootId)}: ${verdict.error}` };
      }
      const capabilities = moduleCapabilities(bytes, declared.groups);
      const prior = deps.registry.get(name);
      try {
        // Stored (module, then the filter's record) before it is announced: survives a restart.
        await deps.registry.commitModule(name, bytes, { sha256, rootId, buildMs: 0, source: "upload", capabilities }, prior?.defaults ?? {},
          () => deps.events.emit({ type: "build.succeeded", filter: name, sha256, buildMs: 0, bytes: bytes.byteLength }));
      } catch (err) {
        if (!(err instanceof StoreWriteError)) throw err;
        req.log.error({ filter: name, error: err.message }, "uploaded module not stored");
        return { status: 503, error: `${name}: module not stored, nothing changed: ${err.message}` };
      }
      return undefined;
    });
    if (refused) return reply.code(refused.status).send({ error: refused.error });
    req.log.info({ filter: name, sha256, bytes: bytes.byteLength }, "prebuilt module uploaded");
    const updated = find(name);
    return updated ? view(updated) : notFound(reply, name);
  });
}
