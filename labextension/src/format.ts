// How runs look in the panels: statuses, durations, ANSI-coloured log text.
import { IRun } from './api';

export const FINAL = new Set([
  'complete',
  'failed',
  'build_failed',
  'mount_failed',
  'stopped',
  'killed',
  'interrupted'
]);

/** Whether `run` is an older picture of a run than `shown`: responses and events travel on
 * different connections, so an answer read before an event may arrive after it. A run's status
 * history only grows. */
export function isOlder(run: IRun, shown: IRun | undefined): boolean {
  return !!shown && run.status_history.length < shown.status_history.length;
}

/** The statuses of a run before its end, in the order of its life. */
export const LIVE_STATUSES = [
  'machine_requested',
  'building',
  'mounting',
  'running',
  'saving',
  'pushing'
];

/** Where a status comes in a run's life (the final ones last). */
export function statusRank(status: string): number {
  return FINAL.has(status)
    ? LIVE_STATUSES.length
    : LIVE_STATUSES.indexOf(status);
}

export function statusText(run: IRun): string {
  const text = run.status.replace(/_/g, ' ');
  return run.status === 'failed' && run.user_exit_code !== null
    ? `${text} (${run.user_exit_code})`
    : text;
}

export function duration(run: IRun, now = Date.now()): string {
  const start = Date.parse(run.created_at);
  const end = run.ended_at
    ? Date.parse(run.ended_at)
    : FINAL.has(run.status)
      ? start
      : now;
  const seconds = Math.max(0, (end - start) / 1000);
  if (seconds < 60) {
    return `${seconds.toFixed(1)}s`;
  }
  const minutes = Math.floor(seconds / 60);
  return minutes < 60
    ? `${minutes}m${Math.floor(seconds % 60)}s`
    : `${Math.floor(minutes / 60)}h${minutes % 60}m`;
}

const ANSI_COLOURS = [
  'black',
  'red',
  'green',
  'yellow',
  'blue',
  'magenta',
  'cyan',
  'white'
];

// ANSI "select graphic rendition" sequences (ESC [ ... m): the colours of terminal output
// eslint-disable-next-line no-control-regex
const SGR_PARTS = /(\x1b\[[0-9;]*m)/;
// eslint-disable-next-line no-control-regex
const SGR = /^\x1b\[([0-9;]*)m$/;

/** A log line as a terminal shows it: text after the last `\r` (a progress bar's current
 * state), SGR colours as spans. Text only: never parsed as HTML. */
export function renderLine(text: string): HTMLElement {
  const line = document.createElement('div');
  line.className = 'jp-spell-log-line';
  const shown =
    text
      .split('\r')
      .filter(part => part !== '')
      .pop() ?? '';
  let colour: string | null = null;
  let bold = false;
  for (const part of shown.split(SGR_PARTS)) {
    const sgr = SGR.exec(part);
    if (sgr) {
      for (const code of (sgr[1] || '0').split(';').map(Number)) {
        if (code === 0) {
          colour = null;
          bold = false;
        } else if (code === 1) {
          bold = true;
        } else if (code >= 30 && code <= 37) {
          colour = ANSI_COLOURS[code - 30];
        } else if (code === 39) {
          colour = null;
        }
      }
      continue;
    }
    if (!part) {
      continue;
    }
    const span = document.createElement('span');
    span.textContent = part;
    if (colour) {
      span.className = `jp-spell-ansi-${colour}`;
    }
    if (bold) {
      span.style.fontWeight = 'bold';
    }
    line.appendChild(span);
  }
  return line;
}

/** 1536 -> '1.5KiB' (as `spell ls` says it). */
export function formatSize(size: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit++;
  }
  return unit ? `${size.toFixed(1)}${units[unit]}` : `${size}B`;
}
