import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply } from "fastify";
import { moduleCapabilities, parseCapabilityList } from "../../compile/capabilities.ts";
import { ROOT_ID_RULE, ROOT_ID_SOURCE } from "../../compile/manifest.ts";
import { preflightGate, refusal } from "../../compile/preflight-gate.ts";
import { formatBytes, validateModule } from "../../compile/validate.ts";
import { effectiveFilters, type EffectiveFilter } from "../../registry/effective.ts";
import { normalizeTargets, TARGET_KINDS, targetsNodes, targetsRoutes, type FilterChoice } from "../../state/operator-state.ts";
import { StoreWriteError } from "../../store/durable-file.ts";
import type { ClientStatus } from "../../xds/client-status.ts";
import { decodeResource, knownRoutes, placementOf, type KnownRoutes, type Placement } from "../../xds/filter-placement.ts";
import { EXTENSION_CONFIG, LISTENER, ROUTE } from "../../xds/type-urls.ts";
import type { AdminDeps } from "../admin-deps.ts";
import type { FilterView } from "../api-view.ts";

const NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,62}$";
const SHA_PATTERN = "^[0-9a-f]{64}$";
/** Largest prebuilt module accepted by upload unless CP_MAX_MODULE_BYTES says otherwise. */
export const MAX_MODULE_BYTES = 8 * 1024 * 1024;
const FAIL_POLICY_ENUM = ["open", "closed", "reload"] as const;
/** The routes file's route name rule (controlplane/routes/routes-file.ts). */
const ROUTE_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$";
/** Per-route configurations a filter may have: each is one more HCM filter slot in every listener. */
export const MAX_ROUTE_CONFIGURATIONS = 16;

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
    targets: {
      type: ["object", "null"],
      description: "clusters/nodes: which Envoys; routes/hosts: where in their route table (null: everywhere)",
      properties: Object.fromEntries(TARGET_KINDS.map((k) => [k, { type: "array", items: { type: "string" } }])),
    },
    targetsFrom: {
      type: "string", enum: ["operator", "manifest"], description: "who chose the targets (filter.json's until an operator PUTs)",
    },
    routeConfigurations: {
      type: "object", additionalProperties: { type: "string" },
      description: "route name -> the plugin configuration the filter runs with on that route " +
        "(PUT /api/filters/{name}/routes/{route}/configuration)",
    },
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
    envoys: {
      type: "array",
      items: {
        type: "object",
        properties: {
          node: { type: "string" }, cluster: { type: "string" }, sha256: { type: ["string", "null"] },
          inChain: { type: "boolean", description: "the filter is in this Envoy's HTTP filter chain (node targeting)" },
          routes: {
            type: ["array", "null"],
            description: "the routes it runs on, from the listener and routes this Envoy ACKed (empty: nowhere; null: not known)",
            items: {
              type: "object",
              properties: {
                routeConfig: { type: "string" }, host: { type: "string" }, route: { type: "string" },
                configuration: { type: "string", enum: ["filter", "route"], description: "route: with the route's own configuration" },
              },
            },
          },
        },
      },
    },
    unknownTargets: {
      type: "object",
      description: "targeted routes/hosts (and per-route configurations) the current routes do not have: they run nowhere",
      properties: { routes: { type: "array", items: { type: "string" } }, hosts: { type: "array", items: { type: "string" } } },
    },
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
  if (f.targetsFrom !== undefined) out.targetsFrom = f.targetsFrom;
  if (f.routeConfigurations !== undefined) out.routeConfigurations = { ...f.routeConfigurations };
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

  // The route table Envoys are served now (the default group's RDS; every group has the same
  // routes). Undefined before the first publish: targets are then checked for shape only.
  const currentRoutes = (): KnownRoutes | undefined => {
    const rds = deps.snapshot()?.types.get(ROUTE);
    return rds ? knownRoutes([...rds.resources.values()].map(decodeResource)) : undefined;
  };
  // Names the current routes do not have, as the reason of a 400 (with the known ones). A target
  // whose route vanishes later is kept: it runs nowhere, and the detail lists it in unknownTargets.
  const unknownPlaces = (routes: readonly string[], hosts: readonly string[]): string | undefined => {
    const known = currentRoutes();
    if (!known) return undefined;
    const badRoutes = routes.filter((r) => !known.routes.has(r));
    const badHosts = hosts.filter((h) => !known.hasHost(h));
    if (badRoutes.length === 0 && badHosts.length === 0) return undefined;
    const list = (what: string, names: string[]): string[] =>
      (names.length > 0 ? [`unknown ${what} ${names.map((n) => JSON.stringify(n)).join(", ")}`] : []);
    return `${[...list("route", badRoutes), ...list("host", badHosts)].join("; ")} (${known.describe()})`;
  };
  // Where a filter runs on one Envoy, from the listener and routes it ACKed; routes null if those
  // versions are no longer in the cache's history.
  const ackedPlacement = (c: ClientStatus, name: string): Placement | { inChain: boolean; routes: null } => {
    const acked = (typeUrl: string) => Object.entries(c.types.get(typeUrl)?.ackedResources ?? {})
      .map(([n, v]) => deps.resourceAt(typeUrl, n, v));
    const listeners = acked(LISTENER);
    const routeConfigs = acked(ROUTE);
    if (listeners.length === 0 || listeners.includes(undefined) || routeConfigs.includes(undefined)) return { inChain: true, routes: null };
    return placementOf(name, listeners.map((l) => decodeResource(l!)), routeConfigs.map((r) => decodeResource(r!)));
  };
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
      const sha256 = deps.resourceAt(EXTENSION_CONFIG, f.name, acked)?.moduleSha256 ?? null;
      return [{ node: c.nodeId, cluster: c.nodeCluster, sha256, ...ackedPlacement(c, f.name) }];
    });
    const known = currentRoutes();
    const unknownTargets = {
      routes: known
        ? [...new Set([...(f.targets?.routes ?? []), ...Object.keys(f.routeConfigurations ?? {})])].filter((r) => !known.routes.has(r))
        : [],
      hosts: known ? (f.targets?.hosts ?? []).filter((h) => !known.hasHost(h)) : [],
    };
    return { ...view(f), history: history.reverse(), envoys, unknownTargets };
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
  app.put<{ Params: { name: string }; Body: Partial<Record<(typeof TARGET_KINDS)[number], string[]>> }>("/api/filters/:name/targets", {
    schema: {
      summary: "Run the filter only on Envoys with these node clusters or ids (a listener change for them), and only on these routes " +
        "and virtual hosts (by name or domain; an RDS update only, no drain, no new VM). All empty: everywhere. " +
        "400 names unknown routes/hosts.",
      tags: ["filters"], params: nameParams,
      body: { type: "object", additionalProperties: false, properties: Object.fromEntries(TARGET_KINDS.map((k) => [k, idList])) },
      response: responses(filterSchema),
    },
  }, async (req, reply) => {
    const targets = normalizeTargets(req.body);
    const unknown = unknownPlaces(targets.routes, targets.hosts);
    if (unknown) return reply.code(400).send({ error: `${req.params.name}: targets not changed: ${unknown}` });
    // All empty is stored as an explicit "everywhere": it wins over filter.json's targets (DELETE goes back to those).
    const all = !targetsNodes(targets) && !targetsRoutes(targets);
    return change(req.params.name, reply, { targets }, { targets: all ? null : targets });
  });

  app.delete<{ Params: { name: string } }>("/api/filters/:name/targets", {
    schema: {
      summary: "Drop the operator's targets: back to filter.json's, else everywhere", tags: ["filters"], params: nameParams,
      response: responses(filterSchema),
    },
  }, async (req, reply) => change(req.params.name, reply, { targets: undefined }, { targets: null }));

  const routeParams = {
    type: "object", required: ["name", "route"],
    properties: {
      ...nameParams.properties,
      route: { type: "string", pattern: ROUTE_NAME_PATTERN, description: "a route name from the routes file" },
    },
  } as const;
  app.put<{ Params: { name: string; route: string }; Body: { configuration: string } }>("/api/filters/:name/routes/:route/configuration", {
    schema: {
      summary: "Run the filter with another plugin configuration on one route: a second filter slot sharing the filter's VM (adding one " +
        "changes the listener, a drain; changing it is ECDS only); 400 if the route is unknown or the module refuses it (pre-flight)",
      tags: ["filters"], params: routeParams,
      body: {
        type: "object", required: ["configuration"], additionalProperties: false,
        properties: { configuration: { type: "string", maxLength: 65536 } },
      },
      response: responses(filterSchema),
    },
  }, async (req, reply) => {
    const { name, route } = req.params;
    const entry = deps.registry.get(name);
    if (!entry) return notFound(reply, name);
    const unknown = unknownPlaces([route], []);
    if (unknown) return reply.code(400).send({ error: `${name}: route configuration not set: ${unknown}` });
    const current = { ...(deps.state.choice(name).routeConfigurations ?? {}) };
    if (!(route in current) && Object.keys(current).length >= MAX_ROUTE_CONFIGURATIONS) {
      return reply.code(400).send({
        error: `${name}: at most ${MAX_ROUTE_CONFIGURATIONS} per-route configurations per filter (each is a filter slot in every listener)`,
      });
    }
    current[route] = req.body.configuration;
    // Started first with this configuration, as Envoy would start the slot (the filter's module and root id).
    const refused = await gate.exclusive(name, async () => {
      const f = find(name);
      if (!f?.sha256 || !f.rootId) return undefined;
      const wasm = await deps.registry.readModule(f.sha256);
      if (!wasm) return `${name}: module ${f.sha256} is not retained any more: nothing changed`;
      const plugin = { sha256: f.sha256, rootId: f.rootId, configuration: req.body.configuration };
      const verdict = await gate.check(wasm, plugin);
      return verdict.ok ? undefined : refusal(name, plugin, verdict.error);
    });
    if (refused) {
      req.log.warn({ filter: name, route, error: refused }, "route configuration refused by the pre-flight");
      return reply.code(400).send({ error: refused });
    }
    return change(name, reply, { routeConfigurations: current }, { route, routeConfiguration: req.body.configuration });
  });

  app.delete<{ Params: { name: string; route: string } }>("/api/filters/:name/routes/:route/configuration", {
    schema: {
      summary: "Drop a route's own configuration: the filter's applies there again (its slot leaves the listener: a drain)",
      tags: ["filters"], params: routeParams, response: responses(filterSchema),
    },
  }, async (req, reply) => {
    const { name, route } = req.params;
    if (!deps.registry.get(name)) return notFound(reply, name);
    const current = { ...(deps.state.choice(name).routeConfigurations ?? {}) };
    if (!(route in current)) return reply.code(404).send({ error: `${name} has no configuration for route ${JSON.stringify(route)}` });
    delete current[route];
    const left = Object.keys(current).length > 0 ? current : undefined;
    return change(name, reply, { routeConfigurations: left }, { route, routeConfiguration: null });
  });

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
