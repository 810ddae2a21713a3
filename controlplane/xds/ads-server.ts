import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { FetchTracker } from "../registry/fetch-tracker.ts";
import type { ClientRegistry } from "./client-status.ts";
import type { SnapshotCache } from "./cache.ts";
import type { DiscoveryRequest, DiscoveryResponse } from "./discovery-types.ts";
import { protoIncludeDirs } from "./protos.ts";
import { ProtocolError, SotwSession, type SessionLog } from "./sotw-session.ts";
import { shortName } from "./type-urls.ts";

export interface AdsServerOptions {
  cache: SnapshotCache;
  clients: ClientRegistry;
  fetches: FetchTracker;
  log: SessionLog & { error(obj: object, msg: string): void };
}

type AdsCall = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

function loadAdsService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync("envoy/service/discovery/v3/ads.proto", {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
    includeDirs: protoIncludeDirs(),
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: grpc.ServiceClientConstructor } } } };
  };
  return pkg.envoy.service.discovery.v3.AggregatedDiscoveryService.service;
}

/** Binds one SotwSession per ADS stream and feeds it requests and snapshot changes. */
export function createAdsServer(opts: AdsServerOptions): grpc.Server {
  const server = new grpc.Server({
    // Envoy keeps ADS streams open for hours; keepalive finds dead peers behind NAT/docker.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
  });
  let nextStreamId = 1;
  server.addService(loadAdsService(), {
    StreamAggregatedResources: (call: AdsCall) => {
      const streamId = nextStreamId++;
      let ended = false;
      const send = (r: DiscoveryResponse): void => {
        if (ended) return;
        opts.log.info({ stream: streamId, node: session.client.nodeId, type: shortName(r.type_url), version: r.version_info, nonce: r.nonce, resources: r.resources.length }, "xDS push");
        call.write(r);
      };
      const session = new SotwSession(streamId, call.getPeer(), {
        registry: opts.clients,
        fetches: opts.fetches,
        log: opts.log,
        snapshot: () => opts.cache.get(),
        send,
      });
      const unwatch = opts.cache.watch((snapshot, changed) => session.handleSnapshot(snapshot, changed));
      const finish = (): void => {
        if (ended) return;
        ended = true;
        unwatch();
        session.close();
        opts.log.info({ stream: streamId, node: session.client.nodeId }, "xDS stream closed");
      };
      call.on("data", (req: DiscoveryRequest) => {
        try {
          session.handleRequest(req);
        } catch (err) {
          if (err instanceof ProtocolError) {
            opts.log.warn({ stream: streamId, error: err.message }, "xDS protocol error; closing stream");
            finish();
            call.emit("error", { code: err.grpcCode, details: err.message });
            return;
          }
          opts.log.error({ stream: streamId, err }, "xDS request handling failed");
          finish();
          call.emit("error", { code: grpc.status.INTERNAL, details: String(err) });
        }
      });
      call.on("end", () => {
        finish();
        call.end();
      });
      call.on("cancelled", finish);
      call.on("error", finish);
    },
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "delta xDS is not served yet; use api_type GRPC" });
    },
  });
  return server;
}

export function listenAds(server: grpc.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(new Error(`cannot listen for xDS on ${host}:${port}: ${err.message}`));
      else resolve(bound);
    });
  });
}
