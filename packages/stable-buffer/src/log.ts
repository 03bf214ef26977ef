/**
 * Structured logs: one JSON object per line, so an operator can grep and a
 * tool can parse them during an incident.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
}

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Writes lines at or above `min` to stderr, tagged with the component name. */
export function jsonLogger(component: string, min: LogLevel = 'info', out: NodeJS.WritableStream = process.stderr): Logger {
  return {
    log(level, event, fields) {
      if (order[level] < order[min]) return;
      out.write(JSON.stringify({ t: new Date().toISOString(), level, component, event, ...fields }) + '\n');
    },
  };
}

/** Discards everything (embedding without logs). */
export const silentLogger: Logger = { log() {} };
