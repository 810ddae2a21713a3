// Forged stats cannot make the health monitor act. A client other than Envoy opens the
// MetricsService on the xDS port, names the node a real Envoy uses and reports six or more
// crashes of add-header's VM (`wasm.add-header.vm_reload_success`): before the fix, that alone
// disabled add-header for every Envoy. Stats now count only on the connection over which that
// node's ADS stream runs (Envoy sends both over its one HTTP/2 connection to xds_cluster), so:
//   - without the token the call is refused (UNAUTHENTICATED);
//   - with the token, on its own connection, the reports are dropped and counted;
//   - with the token and its own ADS stream as another node, reports naming the victim are
//     dropped too (a client never reports for another node);
// and add-header stays enabled in the API, the state and the real Envoy. The real Envoy's own
// stats keep counting (test/e2e/auto-disable.test.ts shows they still disable a crashing filter).
import assert from "node:assert/strict";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import { after, before, describe, it } from "node:test";
import { adsClientConstructor } from "../../bench/support/sim-envoy.ts";
import type { DiscoveryRequest, DiscoveryResponse } from "../../controlplane/xds/discovery-types.ts";
import { LISTENER } from "../../controlplane/xds/type-urls.ts";
import { TEST_XDS_TOKEN } from "../support/bootstrap.ts";
import { copyFilters } from "../support/controlplane.ts";
import { httpRequest } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { bearer, openStatsStream, type StatsStream } from "../support/stats-client.ts";
import { waitFor } from "../support/wait.ts";
import { XdsStream } from "../support/xds-client.ts";

const VICTIM = { id: "envoy-victim", cluster: "edge" };
const FILTER = "add-header";
const RELOADS = `wasm.${FILTER}.vm_reload_success`;
/** CP_AUTO_DISABLE_AFTER: the default, 5; each forged stream reports 10 reloads per flush. */
const THRESHOLD = 5;

interface Health {
  statsReporters: { node: string; cluster: string; peer: string; lastStatsAt: string }[];
  droppedStats?: { reports: number; last: { node: string; cluster: string; peer: string } | null };
  filters: Record<string, { runtimeFailures: number; action: string | null }>;
}
interface FilterDetail { enabled: boolean; health: { runtimeFailures: number; action: string | null } }
interface ClientEntry { node: { id: string; cluster: string }; streams: { peer: string }[] }

describe("forged stats on the xDS port do not disable a filter", { timeout: 180_000 }, () => {
  let stack: Stack | undefined;
  const closers: (() => void)[] = [];

  const details = (): string => stack?.details() ?? "";
  const api = async <T>(p: string): Promise<T> => JSON.parse((await stack!.cp.api(p)).body) as T;
  const health = (): Promise<Health> => api<Health>("/api/health");
  const filter = (): Promise<FilterDetail> => api<FilterDetail>(`/api/filters/${FILTER}`);
  /** Envoy runs add-header: a request through its listener carries the header it adds. */
  const envoyRunsFilter = async (): Promise<boolean> => {
    const r = await httpRequest(`http://127.0.0.1:${stack!.ports.listener}/headers`);
    return r.status === 200 && r.headers["x-wasm-filter"] === FILTER;
  };
  const xdsAddress = (): string => `127.0.0.1:${stack!.ports.xds}`;

  /** Six and more reloads per flush, three flushes: far beyond THRESHOLD. */
  const forge = (s: StatsStream, node = VICTIM): void => {
    s.write({ node, metrics: [{ name: RELOADS, kind: "counter", value: 0 }] });
    for (let i = 1; i <= 3; i++) s.write({ metrics: [{ name: RELOADS, kind: "counter", value: 10 * i }] });
  };

  /**
   * Waits until the forged reports were either acted on (the bug) or dropped `atLeast` times in
   * total, then asserts that nothing changed: not acted on, in the API, the state or Envoy.
   */
  const assertNotActedOn = async (atLeast: number, what: string): Promise<void> => {
    await waitFor(async () => {
      const [h, f] = await Promise.all([health(), filter()]);
      return !f.enabled || f.health.action !== null || (h.droppedStats?.reports ?? 0) >= atLeast;
    }, { what: `${what}: the forged reports dropped (${atLeast} in all) or acted on`, timeoutMs: 20_000, details });
    const f = await filter();
    assert.equal(f.enabled, true, `${what}: ${FILTER} must stay enabled`);
    assert.equal(f.health.action, null, `${what}: no automatic response`);
    assert.equal(f.health.runtimeFailures, 0, `${what}: forged failures are not counted`);
    assert.equal(await envoyRunsFilter(), true, `${what}: Envoy still runs ${FILTER}`);
  };

  before(async () => {
    const workDir = makeWorkDir("forged-stats");
    const filtersDir = copyFilters(path.join(workDir, "filters"));
    stack = await startStack({
      workDir, filtersDir,
      cpEnv: { CP_AUTO_DISABLE_AFTER: String(THRESHOLD), CP_AUTO_DISABLE_WINDOW: "60" },
      bootstrap: { nodeId: VICTIM.id, nodeCluster: VICTIM.cluster },
    });
    await waitFor(async () => (await envoyRunsFilter()) && (await health()).statsReporters.some((r) => r.node === VICTIM.id), {
      what: `Envoy ${VICTIM.id} running ${FILTER} and listed as a stats reporter`, timeoutMs: 60_000, details,
    });
  });

  after(async () => {
    for (const close of closers) close();
    await stack?.stop();
  });

  it("Envoy's stats stream and its ADS stream share one connection (same peer address:port)", async () => {
    const reporter = (await health()).statsReporters.find((r) => r.node === VICTIM.id);
    const clients = await api<ClientEntry[]>("/api/clients");
    const ads = clients.find((c) => c.node.id === VICTIM.id)?.streams.map((s) => s.peer) ?? [];
    assert.ok(reporter, "the real Envoy is a stats reporter");
    assert.ok(ads.length > 0, "the real Envoy has an ADS stream");
    assert.ok(ads.every((peer) => peer === reporter.peer), `ADS peers ${ads.join(", ")} vs stats peer ${reporter.peer}`);
  });

  it("without the token: refused with UNAUTHENTICATED, nothing counted", async () => {
    const client = new grpc.Client(xdsAddress(), grpc.credentials.createInsecure());
    closers.push(() => client.close());
    for (const metadata of [new grpc.Metadata(), bearer("not-the-token-0123456789abcdef")]) {
      const s = openStatsStream(client, metadata);
      forge(s);
      const err = await s.ended();
      assert.equal(err?.code, grpc.status.UNAUTHENTICATED, `status ${err?.code}: ${err?.details}`);
    }
    // Refused before any message is read: not even counted as dropped.
    assert.equal((await health()).droppedStats?.reports ?? 0, 0);
    await assertNotActedOn(0, "no token");
  });

  it("with the token but not Envoy's connection: dropped and counted", async () => {
    const client = new grpc.Client(xdsAddress(), grpc.credentials.createInsecure());
    closers.push(() => client.close());
    const s = openStatsStream(client, bearer(TEST_XDS_TOKEN));
    closers.push(() => s.cancel());
    forge(s);
    await assertNotActedOn(4, "token, own connection");
    const h = await health();
    assert.equal(h.droppedStats?.last?.node, VICTIM.id);
    assert.notEqual(h.droppedStats?.last?.peer, h.statsReporters.find((r) => r.node === VICTIM.id)?.peer);
    assert.deepEqual(h.statsReporters.map((r) => r.node), [VICTIM.id], "the forged stream is no stats reporter");
  });

  it("with the token and its own ADS stream as another node: reports naming the victim are dropped", async () => {
    const Ads = adsClientConstructor();
    const ads = new Ads(xdsAddress(), grpc.credentials.createInsecure());
    closers.push(() => ads.close());
    const call = (ads as unknown as { StreamAggregatedResources(m: grpc.Metadata): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> })
      .StreamAggregatedResources(bearer(TEST_XDS_TOKEN));
    const stream = new XdsStream<DiscoveryRequest, DiscoveryResponse>(call, "forger ADS");
    closers.push(() => stream.cancel());
    stream.send({ node: { id: "forger", cluster: VICTIM.cluster }, type_url: LISTENER, resource_names: [] });
    await stream.nextOf(LISTENER, "the forger's own (authenticated) listener response");
    await waitFor(async () => (await api<ClientEntry[]>("/api/clients")).some((c) => c.node.id === "forger"), { what: "the forger's ADS stream registered", timeoutMs: 5000, details });
    // The same HTTP/2 connection as its ADS stream: the peer matches, the node does not.
    const stats = new grpc.Client(xdsAddress(), grpc.credentials.createInsecure(), { channelOverride: ads.getChannel() });
    const s = openStatsStream(stats, bearer(TEST_XDS_TOKEN));
    closers.push(() => s.cancel());
    const dropped = (await health()).droppedStats?.reports ?? 0;
    forge(s);
    await assertNotActedOn(dropped + 4, "token, own ADS stream as another node");
    assert.equal((await health()).droppedStats?.last?.node, VICTIM.id);
  });

  it("the real Envoy's stats still count: it stays a live stats reporter", async () => {
    const before = (await health()).statsReporters.find((r) => r.node === VICTIM.id)?.lastStatsAt;
    await waitFor(async () => {
      const now = (await health()).statsReporters.find((r) => r.node === VICTIM.id)?.lastStatsAt;
      return now !== undefined && now !== before;
    }, { what: "a new flush from the real Envoy heard", timeoutMs: 10_000, details });
    assert.equal((await filter()).enabled, true);
  });
});
