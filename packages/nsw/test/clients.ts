/**
 * Small real clients for the server tests: they speak plain TCP to a port
 * on loopback (a {@link TapProxy} in front of the server under test).
 */
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { promisify } from 'node:util';

export const execFileP = promisify(execFile);

/** Sends `request`, half-closes, and resolves with everything the server sent until it closed. */
export function exchange(port: number, request: string | Buffer, timeoutMs = 10000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no end from port ${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      sock.end();
      resolve(Buffer.concat(chunks));
    });
    sock.write(request);
  });
}

/** An HTTP/1.0 GET of `path`: the whole response, headers included. */
export function httpGet(port: number, path: string): Promise<Buffer> {
  return exchange(port, `GET ${path} HTTP/1.0\r\nHost: localhost\r\n\r\n`);
}
