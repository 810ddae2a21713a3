// CP_STORE=etcd://... parsed apart from the etcd client, so configuration loads without it.

export interface EtcdTarget {
  /** `http://host:port` endpoints of the etcd members. */
  hosts: string[];
  /** Key prefix every key of this deployment lives under (ends with "/"). */
  prefix: string;
}

const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/**
 * `etcd://host:port[,host:port...][/prefix]`; the prefix defaults to `wasm-xds`, so several
 * deployments can share one etcd cluster by naming different prefixes.
 */
export function parseEtcdUrl(url: string): EtcdTarget {
  const m = /^etcd:\/\/([^/]+)(?:\/([A-Za-z0-9_-][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_-][A-Za-z0-9._-]*)*)\/?)?$/.exec(url);
  const members = m?.[1]?.split(",") ?? [];
  if (!m || members.length === 0 || !members.every((h) => HOST_PORT.test(h))) {
    throw new Error(`expected etcd://host:port[,host:port...][/prefix], got ${JSON.stringify(url)}`);
  }
  return { hosts: members.map((h) => `http://${h}`), prefix: `${m[2] ?? "wasm-xds"}/` };
}
