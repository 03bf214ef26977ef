/**
 * A loopback TCP proxy that keeps both directions of every connection it
 * carries. A real client talks to the proxy, the proxy to the server under
 * the shim; what the client sent is what a playback agent's instream must
 * give the replica (the SSW's log on a real backup), what the server sent is
 * what the replica's send buffer must hold. Connections are named by the
 * proxy's upstream port: the peer port the server's accept saw.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** Both directions of one proxied connection. */
export interface TappedConnection {
  /** The port the server saw as its peer's. */
  peerPort: number;
  toServer: Buffer;
  toClient: Buffer;
  /** Both sides closed. */
  done: boolean;
}

/** A proxy from 127.0.0.1:{@link port} to 127.0.0.1:upstreamPort. */
export class TapProxy {
  readonly connections: TappedConnection[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly upstreamPort: number) {
    this.server = createServer((client) => this.carry(client));
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** The connection whose server-side peer port is `port`. */
  byPeerPort(port: number): TappedConnection | undefined {
    return this.connections.find((c) => c.peerPort === port);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private carry(client: Socket): void {
    const upstream = connect(this.upstreamPort, '127.0.0.1');
    this.sockets.add(client).add(upstream);
    const tap: TappedConnection = { peerPort: 0, toServer: Buffer.alloc(0), toClient: Buffer.alloc(0), done: false };
    client.pause();
    upstream.on('connect', () => {
      tap.peerPort = upstream.localPort!;
      this.connections.push(tap);
      client.resume();
    });
    client.on('data', (d: Buffer) => {
      tap.toServer = Buffer.concat([tap.toServer, d]);
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      tap.toClient = Buffer.concat([tap.toClient, d]);
      client.write(d);
    });
    let ended = 0;
    const half = (): void => {
      if (++ended === 2) tap.done = true;
    };
    client.on('end', () => {
      upstream.end();
      half();
    });
    upstream.on('end', () => {
      client.end();
      half();
    });
    for (const s of [client, upstream]) {
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => {
        this.sockets.delete(s);
        tap.done = true;
      });
    }
  }
}
