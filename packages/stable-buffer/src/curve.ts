/**
 * ZeroMQ CURVE authentication. With CURVE alone any client that knows the
 * server's public key gets in; refusing unknown clients needs a ZAP handler
 * (RFC 27/ZAP) at inproc://zeromq.zap.01. One handler serves the process and
 * tells servers apart by their ZAP domain.
 */
import { Reply, curveKeyPair } from 'zeromq';

/** A CURVE key pair in Z85 text (40 characters each). */
export interface CurveKeyPair {
  publicKey: string;
  secretKey: string;
}

/** Makes a new CURVE key pair. */
export function makeCurveKeyPair(): CurveKeyPair {
  return curveKeyPair();
}

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const allowed = new Map<string, Set<string>>();
let handler: Reply | null = null;
let starting: Promise<void> | null = null;

/** Z85 form of a 32-byte CURVE public key as ZAP hands it over. */
function z85(bytes: Buffer): string {
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let v = bytes.readUInt32BE(i);
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(alphabet[v % 85]!);
      v = Math.floor(v / 85);
    }
    out += chunk.join('');
  }
  return out;
}

async function serve(sock: Reply): Promise<void> {
  for await (const frames of sock) {
    // ZAP request: version, request id, domain, address, identity, mechanism, credentials...
    const [version, requestId, domain, , , mechanism, key] = frames;
    const keys = allowed.get(domain?.toString() ?? '');
    const ok =
      version?.toString() === '1.0' &&
      mechanism?.toString() === 'CURVE' &&
      key !== undefined &&
      key.length === 32 &&
      keys !== undefined &&
      keys.has(z85(key));
    await sock.send(['1.0', requestId ?? Buffer.alloc(0), ok ? '200' : '400', ok ? 'OK' : 'unknown client key', ok ? z85(key!) : '', '']);
  }
}

/** Allows exactly `clientKeys` (Z85 public keys) on sockets with ZAP domain `domain`. */
export async function allowCurveClients(domain: string, clientKeys: readonly string[]): Promise<void> {
  allowed.set(domain, new Set(clientKeys));
  if (handler) return;
  starting ??= (async () => {
    const sock = new Reply({ linger: 0 });
    await sock.bind(ZAP_ENDPOINT);
    handler = sock;
    void serve(sock).catch(() => {});
  })();
  await starting;
}

/** Forgets a domain; the process-wide handler stays for the others. */
export function forgetCurveDomain(domain: string): void {
  allowed.delete(domain);
}
