import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ADOPT_CLIENT_ISN, ADOPT_SERVER_ISN } from './support/marks.js';

const HARNESS = fileURLToPath(new URL('./support/adopt-harness.js', import.meta.url));
const SEND = fileURLToPath(new URL('./support/send-segment.js', import.meta.url));
const isRoot = process.getuid?.() === 0;

function sh(...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8' });
}

describe('RecordingWrap adopting a connection (root, client and server namespaces)', function () {
  this.timeout(30_000);
  const tag = `${process.pid % 100000}`;
  const clientNs = `ftcp-adopt-c-${tag}`;
  const serverNs = `ftcp-adopt-s-${tag}`;
  const subnet = `10.${150 + (process.pid % 50)}.${process.pid % 250}`;
  const clientIp = `${subnet}.1`;
  const vip = `${subnet}.2`;
  const port = 20000 + (process.pid % 20000);
  const queue = 1200 + (process.pid % 1000);
  const adoptedPort = 40000;
  const strangerPort = 40001;
  let child: ChildProcessWithoutNullStreams | undefined;
  let lines: AsyncIterator<string>;

  async function next(ev: string): Promise<Record<string, unknown>> {
    for (;;) {
      const r = await lines.next();
      if (r.done) throw new Error(`the harness ended before ${ev}`);
      const msg = JSON.parse(r.value) as Record<string, unknown>;
      if (msg['ev'] === 'error') throw new Error(`harness: ${JSON.stringify(msg)}`);
      if (msg['ev'] === ev) return msg;
    }
  }

  /** Packets counted by the client's raw-table rule tagged `comment`. */
  function clientCount(comment: string): number {
    const out = sh('ip', 'netns', 'exec', clientNs, 'iptables', '-t', 'raw', '-L', 'PREROUTING', '-v', '-n', '-x');
    const line = out.split('\n').find((l) => l.includes(`/* ${comment} */`));
    if (line === undefined) throw new Error(`no rule ${comment}:\n${out}`);
    return Number(line.trim().split(/\s+/)[0]);
  }

  function sendFromClient(srcPort: number, payload: string): void {
    sh('ip', 'netns', 'exec', clientNs, process.execPath, SEND, clientIp, vip, String(srcPort), String(port), String(ADOPT_CLIENT_ISN + 1 + 5), String(ADOPT_SERVER_ISN + 1), payload);
  }

  async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  before(async function () {
    if (!isRoot) this.skip();
    const dev = `fad${tag}`;
    sh('ip', 'netns', 'add', clientNs);
    sh('ip', 'netns', 'add', serverNs);
    sh('ip', 'link', 'add', `${dev}c`, 'type', 'veth', 'peer', 'name', `${dev}s`);
    sh('ip', 'link', 'set', `${dev}c`, 'netns', clientNs);
    sh('ip', 'link', 'set', `${dev}s`, 'netns', serverNs);
    sh('ip', '-n', clientNs, 'addr', 'add', `${clientIp}/24`, 'dev', `${dev}c`);
    sh('ip', '-n', serverNs, 'addr', 'add', `${vip}/24`, 'dev', `${dev}s`);
    for (const [ns, d] of [[clientNs, `${dev}c`], [serverNs, `${dev}s`]] as const) {
      sh('ip', '-n', ns, 'link', 'set', d, 'up');
      sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    }
    // What reaches the client from the service: RSTs, and zero-window ACKs
    // (TCP window field, bytes 14-15 of the TCP header, is zero).
    const from = ['-s', vip, '-p', 'tcp', '--sport', String(port)];
    sh('ip', 'netns', 'exec', clientNs, 'iptables', '-t', 'raw', '-A', 'PREROUTING', ...from, '--tcp-flags', 'RST', 'RST', '-m', 'comment', '--comment', 'rst');
    sh('ip', 'netns', 'exec', clientNs, 'iptables', '-t', 'raw', '-A', 'PREROUTING', ...from, '--tcp-flags', 'ACK,RST', 'ACK', '-m', 'u32', '--u32', '0>>22&0x3C@12&0xFFFF=0', '-m', 'comment', '--comment', 'zero-window-ack');
    child = spawn('ip', ['netns', 'exec', serverNs, process.execPath, HARNESS, vip, String(port), String(queue), clientIp, String(adoptedPort)], { stdio: ['pipe', 'pipe', 'pipe'] });
    lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    await next('ready');
  });

  after(async () => {
    if (!isRoot) return;
    if (child && child.exitCode === null) {
      child.stdin.write('stop\n');
      await new Promise((r) => child!.once('exit', r));
    }
    for (const ns of [clientNs, serverNs]) {
      try {
        sh('ip', 'netns', 'del', ns);
      } catch {
        // Never created.
      }
    }
  });

  it("drops a pending connection's segment before the kernel can reset it and answers with a zero-window ACK", async () => {
    sendFromClient(adoptedPort, 'world');
    await until(() => clientCount('zero-window-ack') >= 1, 3000, 'a zero-window ACK at the client');
    // The client has no socket for the ACK and resets; the wrap drops that too.
    await new Promise((r) => setTimeout(r, 200));
    expect(clientCount('rst'), 'the server kernel never saw the segment').to.equal(0);
    child!.stdin.write('status\n');
    const s = (await next('status')) as unknown as { pending: number; wrap: { pendingDropped: number; adopted: number }; recorder: { zeroWindowAcks: number; adopted: number; segmentsLogged: number } };
    expect(s.pending).to.equal(1);
    expect(s.wrap.adopted).to.equal(1);
    expect(s.recorder.adopted).to.equal(1);
    expect(s.wrap.pendingDropped).to.be.at.least(1);
    expect(s.recorder.zeroWindowAcks).to.be.at.least(1);
    expect(s.recorder.segmentsLogged).to.equal(0);
  });

  it('lets a segment of a connection it did not adopt reach the kernel, which resets it', async () => {
    const before = clientCount('rst');
    sendFromClient(strangerPort, 'stranger');
    await until(() => clientCount('rst') > before, 3000, "the server kernel's RST");
  });

  // Last: it ends the harness. The server a primary runs outlives the
  // wrap's process (its own session), and its kernel, unwrapped, would
  // acknowledge client bytes nobody logged.
  it('keeps its rules when its process dies of an uncaught exception, so the service fails closed instead of open', async () => {
    child!.stdin.write('crash\n');
    const code = await new Promise<number | null>((r) => child!.once('exit', (c) => r(c)));
    expect(code, 'the harness died of the exception').to.not.equal(0);
    expect(sh('ip', 'netns', 'exec', serverNs, 'iptables-save', '-t', 'mangle')).to.match(/FTCP-/);
    const before = clientCount('rst');
    sendFromClient(strangerPort, 'stranger');
    await new Promise((r) => setTimeout(r, 300));
    expect(clientCount('rst'), "the kernel's RST to a stranger never left: nothing of the service passes").to.equal(before);
  });
});
