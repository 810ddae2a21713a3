/** Free TCP ports on loopback, for giving every test its own Envoy/control-plane ports. */
import net from "node:net";

function listenEphemeral(): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => resolve(server));
  });
}

function portOf(server: net.Server): number {
  const address = server.address();
  if (address === null || typeof address === "string") {
    throw new Error(`unexpected server address: ${String(address)}`);
  }
  return address.port;
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
}

/**
 * A port that was free on 127.0.0.1 a moment ago (listen on :0, read the port, close).
 * Another process may still grab it before you bind it; prefer letting the server bind :0
 * itself and report its port when the server under test supports that.
 */
export async function freePort(): Promise<number> {
  const server = await listenEphemeral();
  const port = portOf(server);
  await close(server);
  return port;
}

/** `n` distinct free ports (all held open together, so they cannot collide with each other). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await listenEphemeral());
    return servers.map(portOf);
  } finally {
    await Promise.all(servers.map(close));
  }
}
