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
  spec: IRunSpec;
  workflow_id: number | null;
  search_id: number | null;
}

export interface IMount {
  resource: string;
  path: string;
}

export interface ICodeSpec {
  repository: string;
  commit?: string | null;
  archive?: string | null;
  patch?: string | null;
  github_url?: string | null;
  github_ref?: string | null;
}

/** What a run is asked to be (POST /runs); the fields the Lab shows and sets. */
export interface IRunSpec {
  command: string;
  machine_type: string;
  framework: string;
  docker_image?: string | null;
  pip_packages: string[];
  apt_packages: string[];
  requirements?: string | null;
  conda_env?: string | null;
  envvars: Record<string, string>;
  mounts: IMount[];
  labels: string[];
  description: string;
  timeout_minutes?: number | null;
  cwd: string;
  code?: ICodeSpec | null;
  project?: string | null;
  workspace?: { name: string; notebook: boolean } | null;
  tensorboard_dir?: string | null;
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

/** An API URL a link or the browser itself opens (downloads): absolute, with the token. */
export function linkUrl(path: string): string {
  const url = new URL(apiUrl(path), window.location.href);
  if (settings.token) {
    url.searchParams.set('token', settings.token);
  }
  return url.toString();
}

export async function request<T>(
  path: string,
  init: RequestInit = {},
  as: 'json' | 'text' = 'json'
): Promise<T> {
  const response = await ServerConnection.makeRequest(
    apiUrl(path),
    init,
    settings
  );
  if (!response.ok) {
    throw await failure(response);
  }
  const text = await response.text();
  if (as === 'text') {
    return text as T;
  }
  return (text ? JSON.parse(text) : {}) as T;
}

/** The error a refused response carries, with the server's own message. */
export async function failure(response: Response): Promise<SpellError> {
  let message = `${response.status} ${response.statusText}`;
  try {
    message = JSON.parse(await response.text()).message || message;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 403) {
    message = `Spell refused this session (${message}): reload JupyterLab, or log in again`;
  }
  return new SpellError(response.status, message);
}

export interface IFileInfo {
  path: string;
  name: string;
  type: string;
  size: number;
  modified?: string | null;
  target?: string | null;
}

/** A SpellFS folder's entries (links and folders first, then files, by name). */
export async function listFolder(path: string): Promise<IFileInfo[]> {
  const listing = await request<{ entries: IFileInfo[] }>(
    path ? `resources/${encodePath(path)}` : 'resources'
  );
  return listing.entries;
}

export function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

export interface IRunQuery {
  statuses?: string[];
  kinds?: string[];
  labels?: string[];
  limit?: number;
  offset?: number;
}

/** A page of runs, newest first, and how many match in all. */
export async function listRuns(
  query: IRunQuery
): Promise<{ runs: IRun[]; total: number }> {
  const params = new URLSearchParams({
    limit: String(query.limit ?? 100),
    offset: String(query.offset ?? 0)
  });
  (query.statuses ?? []).forEach(status => params.append('status', status));
  (query.kinds ?? []).forEach(kind => params.append('kind', kind));
  (query.labels ?? []).forEach(label => params.append('label', label));
  return request<{ runs: IRun[]; total: number }>(`runs?${params}`);
}

export function runAction(id: number, action: 'stop' | 'kill'): Promise<IRun> {
  return request<IRun>(`runs/${id}/${action}`, { method: 'POST' });
}

export function archiveRun(id: number): Promise<IRun> {
  return request<IRun>(`runs/${id}/archive`, { method: 'POST' });
}

export function labelRun(id: number, label: string): Promise<IRun> {
  return request<IRun>(`runs/${id}/labels/${encodeURIComponent(label)}`, {
    method: 'PUT'
  });
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
type MetricsListener = (runId: number) => void;
type StateListener = (connected: boolean) => void;

/** The server's event stream, one EventSource for the whole Lab (a browser allows few
 * connections per server): `onRun` for each run created or changed, `onState` when the stream
 * opens (read what you show again then) or drops. EventSource resumes by itself after a drop
 * or a server restart, from the last event ID, with nothing missed. Returns the unsubscribe. */
export function followEvents(
  onRun: RunListener,
  onState: StateListener,
  onMetrics?: MetricsListener
): () => void {
  runListeners.add(onRun);
  stateListeners.add(onState);
  if (onMetrics) {
    metricsListeners.add(onMetrics);
  }
  if (!source) {
    openEvents();
  } else if (source.readyState === EventSource.OPEN) {
    onState(true);
  }
  return () => {
    runListeners.delete(onRun);
    stateListeners.delete(onState);
    if (onMetrics) {
      metricsListeners.delete(onMetrics);
    }
    if (!runListeners.size && source) {
      source.close();
      source = null;
    }
  };
}

function openEvents(): void {
  const opened = new EventSource(linkUrl('events'));
  source = opened;
  opened.addEventListener('run', event => {
    const run = JSON.parse((event as MessageEvent).data) as IRun;
    runListeners.forEach(listener => listener(run));
  });
  opened.addEventListener('metrics', event => {
    const { run_id } = JSON.parse((event as MessageEvent).data) as {
      run_id: number;
    };
    metricsListeners.forEach(listener => listener(run_id));
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
const metricsListeners = new Set<MetricsListener>();

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
