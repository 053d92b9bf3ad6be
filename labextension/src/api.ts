// The Spell REST API of the Jupyter server this Lab runs on (/spell/api/v1/), through
// JupyterLab's own ServerConnection: its token, XSRF cookie and base URL.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const API = 'spell/api/v1';

export interface IRun {
  id: number;
  command: string;
  status: string;
  status_message: string;
  user_exit_code: number | null;
  kind: string;
  machine_type: string;
  labels: string[];
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  archived: boolean;
  status_history: { status: string; at: string; message: string }[];
}

export interface ILogEntry {
  offset: number;
  timestamp: string;
  status: string;
  status_event: boolean;
  stream: string | null;
  text: string;
}

export interface IMachineType {
  name: string;
  available: number;
  unavailable_reason: string | null;
}

/** An error the server answered, with its own message. */
export class SpellError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

const settings = ServerConnection.makeSettings();

export function apiUrl(path: string): string {
  return URLExt.join(settings.baseUrl, API, path);
}

export async function request<T>(
  path: string,
  init: RequestInit = {}
): Promise<T> {
  const response = await ServerConnection.makeRequest(
    apiUrl(path),
    init,
    settings
  );
  const text = await response.text();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = JSON.parse(text).message || message;
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 403) {
      message = `Spell refused this session (${message}): reload JupyterLab, or log in again`;
    }
    throw new SpellError(response.status, message);
  }
  return (text ? JSON.parse(text) : {}) as T;
}

export async function listRuns(
  statuses: string[],
  limit = 200
): Promise<IRun[]> {
  const query = new URLSearchParams({ limit: String(limit) });
  statuses.forEach(status => query.append('status', status));
  const page = await request<{ runs: IRun[] }>(`runs?${query}`);
  return page.runs;
}

export function runAction(id: number, action: 'stop' | 'kill'): Promise<IRun> {
  return request<IRun>(`runs/${id}/${action}`, { method: 'POST' });
}

export function newRun(body: object): Promise<IRun> {
  return request<IRun>('runs', { method: 'POST', body: JSON.stringify(body) });
}

export async function machineTypes(): Promise<IMachineType[]> {
  const report = await request<{ machine_types: IMachineType[] }>(
    'machine-types'
  );
  return report.machine_types;
}

type RunListener = (run: IRun) => void;
type StateListener = (connected: boolean) => void;

/** The server's event stream, one EventSource for the whole Lab (a browser allows few
 * connections per server): `onRun` for each run created or changed, `onState` when the stream
 * opens (read what you show again then) or drops. EventSource resumes by itself after a drop
 * or a server restart, from the last event ID, with nothing missed. Returns the unsubscribe. */
export function followEvents(
  onRun: RunListener,
  onState: StateListener
): () => void {
  runListeners.add(onRun);
  stateListeners.add(onState);
  if (!source) {
    openEvents();
  } else if (source.readyState === EventSource.OPEN) {
    onState(true);
  }
  return () => {
    runListeners.delete(onRun);
    stateListeners.delete(onState);
    if (!runListeners.size && source) {
      source.close();
      source = null;
    }
  };
}

function openEvents(): void {
  const url = new URL(apiUrl('events'), window.location.href);
  if (settings.token) {
    url.searchParams.set('token', settings.token);
  }
  const opened = new EventSource(url.toString());
  source = opened;
  opened.addEventListener('run', event => {
    const run = JSON.parse((event as MessageEvent).data) as IRun;
    runListeners.forEach(listener => listener(run));
  });
  opened.onopen = () => stateListeners.forEach(listener => listener(true));
  opened.onerror = () => {
    stateListeners.forEach(listener => listener(false));
    if (opened.readyState === EventSource.CLOSED && source === opened) {
      // refused (not just cut off): EventSource gives up; try again a little later
      source = null;
      window.setTimeout(() => {
        if (!source && runListeners.size) {
          openEvents();
        }
      }, REOPEN_MS);
    }
  };
}

const REOPEN_MS = 5000;
let source: EventSource | null = null;
const runListeners = new Set<RunListener>();
const stateListeners = new Set<StateListener>();

/** A run's log entries as they come (NDJSON over a fetch stream), until it ends or `signal`. */
export async function followLogs(
  id: number,
  onEntries: (entries: ILogEntry[]) => void,
  signal: AbortSignal
): Promise<void> {
  const init: RequestInit = { signal };
  const response = await ServerConnection.makeRequest(
    apiUrl(`runs/${id}/logs?follow=true`),
    init,
    settings
  );
  if (!response.ok || !response.body) {
    throw new SpellError(
      response.status,
      `could not read the logs of run ${id}`
    );
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      return;
    }
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    const entries = lines
      .filter(line => line)
      .map(line => JSON.parse(line) as ILogEntry);
    if (entries.length) {
      onEntries(entries);
    }
  }
}
