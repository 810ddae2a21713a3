// Filters and Envoys, rendered from the admin API's JSON.

import { PUSH_ORDER, shortName } from "../../xds/type-urls.ts";
import type { ClientView, FilterView, RoutesApiView, TypeView } from "./api.ts";
import { clock, fill, h, pill, short } from "./dom.ts";

// asc: "in filters/x/index.ts(12,5)"; others "index.ts:12" or "index.ts:12:5"; cargo (Rust
// filters): "filters/x/src/lib.rs:12:5" or "filters/x/Cargo.toml:8:14".
const LOCATION = /([\w./@-]+\.(?:ts|rs|toml))(?:\((\d+),(\d+)\)|:(\d+)(?::(\d+))?)/;

/** The first file:line[:column] a build error names, if any. */
export function errorLocation(error: string): string | undefined {
  const m = LOCATION.exec(error);
  if (!m) return undefined;
  const line = m[2] ?? m[4];
  const column = m[3] ?? m[5];
  return `${m[1]}:${line}${column ? `:${column}` : ""}`;
}

interface FilterRow {
  tr: HTMLTableRowElement;
  toggle: HTMLInputElement;
  cells: { name: HTMLElement; status: HTMLElement; order: HTMLElement; sha: HTMLElement; build: HTMLElement };
}

export type ToggleHandler = (name: string, enabled: boolean, input: HTMLInputElement) => void;

/**
 * Keyed rows, updated in place: a refresh never replaces the switch an operator is about to
 * click, and one whose request is in flight (data-pending) keeps what the operator chose.
 */
export class FiltersTable {
  private readonly rows = new Map<string, FilterRow>();

  constructor(private readonly tbody: HTMLTableSectionElement, private readonly onToggle: ToggleHandler) {}

  render(filters: readonly FilterView[]): void {
    const seen = new Set<string>();
    filters.forEach((f, i) => {
      seen.add(f.name);
      const row = this.rows.get(f.name) ?? this.create(f.name);
      update(row, f);
      if (this.tbody.children[i] !== row.tr) this.tbody.insertBefore(row.tr, this.tbody.children[i] ?? null);
    });
    for (const [name, row] of this.rows) {
      if (seen.has(name)) continue;
      row.tr.remove();
      this.rows.delete(name);
    }
  }

  private create(name: string): FilterRow {
    const toggle = h("input", { type: "checkbox", role: "switch", class: "switch", "aria-label": `enable ${name}`, "data-testid": "toggle" });
    toggle.addEventListener("change", () => this.onToggle(name, toggle.checked, toggle));
    const td = () => h("td");
    const cells = { name: td(), status: td(), order: h("td"), sha: td(), build: td() };
    const tr = h("tr", { "data-filter": name }, cells.name, cells.status, h("td", {}, toggle), cells.order, cells.sha, cells.build);
    const row = { tr, toggle, cells };
    this.rows.set(name, row);
    return row;
  }
}

function update(row: FilterRow, f: FilterView): void {
  row.tr.dataset.status = f.status;
  row.tr.dataset.enabled = String(f.enabled);
  if (row.toggle.dataset.pending === undefined) row.toggle.checked = f.enabled;
  const targets = [
    ...(f.targets?.clusters ?? []).map((c) => `cluster ${c}`), ...(f.targets?.nodes ?? []).map((n) => `node ${n}`),
    ...(f.targets?.routes ?? []).map((r) => `route ${r}`), ...(f.targets?.hosts ?? []).map((v) => `host ${v}`),
  ];
  const routeConfigs = Object.keys(f.routeConfigurations ?? {});
  fill(row.cells.name,
    h("strong", {}, f.name),
    f.pinnedSha256 ? h("span", { class: "tag", title: `rolled back to ${f.pinnedSha256}` }, "pinned") : null,
    f.failPolicy === "open" ? h("span", { class: "tag", title: "fail open: skipped when its VM cannot run" }, "fail open") : null,
    // reload is the default (503 while its VM cannot run, a crashed VM is rebuilt): no tag.
    f.failPolicy === "closed" ? h("span", { class: "tag", title: "fail closed: 503 while its VM cannot run; a crashed VM stays failed" }, "fail closed") : null,
    f.health?.action ? h("span", { class: "tag bad", title: `${f.health.reason ?? ""} (${f.health.actedAt ?? ""})` }, f.health.action === "disabled" ? "auto-disabled" : "auto rolled back") : null,
    (f.capabilities?.undeclaredImports.length ?? 0) > 0
      ? h("span", { class: "tag", title: `Envoy denies: ${f.capabilities!.undeclaredImports.map((u) => u.import + (u.group ? ` (declare "${u.group}")` : "")).join(", ")}` }, "undeclared capability")
      : null,
    targets.length > 0
      ? h("span", { class: "tag", title: targets.join(", "), "data-testid": "targets" },
        targets.length <= 2 ? `only ${targets.join(", ")}` : `only ${targets.length} targets`)
      : null,
    routeConfigs.length > 0
      ? h("span", { class: "tag", title: `own configuration on route ${routeConfigs.join(", ")}`, "data-testid": "route-configurations" },
        `${routeConfigs.length} route configuration${routeConfigs.length > 1 ? "s" : ""}`)
      : null,
  );
  row.cells.status.replaceChildren(pill(f.status, f.status));
  row.cells.order.textContent = String(f.order);
  row.cells.sha.replaceChildren(short(f.sha256));
  if (f.error !== undefined) {
    const where = errorLocation(f.error);
    fill(row.cells.build,
      where ? h("div", { class: "where", "data-testid": "error-location" }, where) : null,
      h("pre", { "data-testid": "error" }, f.error),
    );
  } else {
    const facts = [f.builtAt ? `built ${clock(f.builtAt)}` : "", f.buildMs !== undefined ? `in ${f.buildMs} ms` : "", f.size !== undefined ? `${(f.size / 1024).toFixed(1)} KiB` : ""];
    row.cells.build.replaceChildren(h("span", { class: "muted small" }, facts.filter(Boolean).join(" ") || "—"));
  }
}

/** One row per route: where it matches and where it goes; a refused edit of the file above it. */
export function renderRoutes(tbody: HTMLTableSectionElement, source: HTMLElement, errorBox: HTMLElement, v: RoutesApiView): void {
  source.textContent = v.file === null ? "no routes file: everything to CP_UPSTREAM" : `${v.file} · loaded ${clock(v.loadedAt)}`;
  errorBox.hidden = v.error === null;
  errorBox.textContent = v.error ? `Last edit refused (the routes below keep serving): ${v.error.message}` : "";
  const endpoints = new Map(v.upstreams.map((u) => [u.name, `${u.endpoints.join(", ")}${u.discovery === "dns" ? " (DNS)" : ""}`]));
  tbody.replaceChildren(...v.virtualHosts.flatMap((vh) => vh.routes.map((r, i) => {
    const m = r.match;
    const what = m.prefix !== undefined ? `prefix ${m.prefix}` : m.path !== undefined ? `path ${m.path}` : `regex ${m.regex ?? ""}`;
    const headers = (m.headers ?? []).map((hd) => hd.name);
    return h("tr", { "data-route": r.name, "data-vhost": vh.name },
      h("td", {}, i === 0 ? h("strong", {}, vh.name) : ""),
      h("td", { class: "small" }, i === 0 ? vh.domains.join(", ") : ""),
      h("td", {}, r.name),
      h("td", {}, h("code", {}, what), headers.length > 0 ? h("span", { class: "muted small" }, ` + headers ${headers.join(", ")}`) : ""),
      h("td", { "data-testid": "upstream" }, r.upstream),
      h("td", { class: "small muted" }, endpoints.get(r.upstream) ?? ""),
    );
  })));
}

/** ACKed, NACKed (the version sent was rejected), pending or waiting (nothing sent yet). */
export function typeState(t: TypeView): "acked" | "nacked" | "pending" | "waiting" {
  if (t.sentVersion === null) return "waiting";
  if (t.ackedVersion === t.sentVersion) return "acked";
  if (t.lastNack && t.lastNack.version === t.sentVersion) return "nacked";
  return "pending";
}

const STATE_TEXT = { acked: "ACKed", nacked: "NACKed", pending: "pending", waiting: "waiting" } as const;

const rank = (typeUrl: string): number => {
  const i = PUSH_ORDER.indexOf(typeUrl);
  return i < 0 ? PUSH_ORDER.length : i;
};

export function renderEnvoys(container: HTMLElement, clients: readonly ClientView[]): void {
  container.replaceChildren(...clients.map((c) => {
    const types = Object.entries(c.types).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
    const states = types.map(([, t]) => typeState(t));
    const overall = states.includes("nacked") ? "nacked" : states.every((s) => s === "acked") ? "acked" : "pending";
    const streams = c.streams.map((s) => `#${s.id} ${s.peer} since ${clock(s.connectedAt)}`).join(", ");
    return h("div", { class: "envoy", "data-node": c.node.id, "data-cluster": c.node.cluster, "data-replica": c.replica ?? "", "data-state": overall },
      h("h3", {}, c.node.id, " ", h("span", { class: "muted" }, `cluster ${c.node.cluster}`), " ", pill(overall, overall === "acked" ? "all ACKed" : overall)),
      h("div", { class: "muted small" }, c.replica !== undefined ? `replica ${c.replica} · ` : "",
        `${c.streams.length} stream${c.streams.length === 1 ? "" : "s"}: ${streams}`,
        c.cacheMissResends > 0 ? ` · ${c.cacheMissResends} cache-miss re-send${c.cacheMissResends === 1 ? "" : "s"}` : ""),
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Type"), h("th", {}, "Sent"), h("th", {}, "ACKed"), h("th", {}, "State"), h("th", {}, "Last NACK"))),
        h("tbody", {}, ...types.map(([typeUrl, t], i) => h("tr", { "data-type": t.short || shortName(typeUrl), "data-state": states[i] },
          h("td", {}, t.short || shortName(typeUrl)),
          h("td", {}, short(t.sentVersion)),
          h("td", {}, short(t.ackedVersion)),
          h("td", {}, pill(states[i] ?? "pending", STATE_TEXT[states[i] ?? "pending"])),
          h("td", { class: "nack" }, t.lastNack ? `${clock(t.lastNack.at)} ${t.lastNack.message}` : ""),
        ))),
      ),
    );
  }));
}
