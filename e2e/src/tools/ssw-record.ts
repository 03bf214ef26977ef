#!/usr/bin/env node
/**
 * Runs a primary's south-side wrap in record mode, alone (no NSW), for the
 * SSW e2e tests: attaches to the buffer as writer, starts the wrap on the
 * service, prints {"ev":"ready"} and then its status every --status-ms.
 * SIGTERM stops it cleanly; its rules are removed on every exit path.
 *
 *   ssw-record --vip A --port P --buffer tcp://IP:PORT [--ack eager|delayed|lazy|hold] [--queue N] [--status-ms 200]
 */
import { RecordingWrap, type AckStrategy } from '@ftcp/ssw';
import { StableBufferClient } from '@ftcp/stable-buffer';

function arg(name: string, dflt?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) {
    process.stderr.write(`ssw-record: --${name} is required\n`);
    process.exit(2);
  }
  return v;
}

const emit = (ev: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(`${JSON.stringify({ ev, t: Date.now(), ...fields })}\n`);
};

const buffer = StableBufferClient.connect({ endpoint: arg('buffer'), node: `ssw-${process.pid}` });
try {
  const { epoch } = await buffer.attachAsWriter();
  const wrap = await RecordingWrap.start({
    vip: arg('vip'),
    port: Number(arg('port')),
    queue: Number(arg('queue', '7400')),
    buffer,
    ack: arg('ack', 'eager') as AckStrategy,
  });
  const timer = setInterval(() => emit('status', { ...wrap.status(), unacknowledged: buffer.unacknowledged }), Number(arg('status-ms', '200')));
  emit('ready', { epoch });
  const stop = async (): Promise<void> => {
    clearInterval(timer);
    emit('status', { ...wrap.status(), unacknowledged: buffer.unacknowledged });
    await wrap.stop();
    buffer.close();
    emit('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
} catch (err) {
  emit('error', { message: String(err), code: (err as { code?: string }).code });
  buffer.close();
  process.exit(1);
}
