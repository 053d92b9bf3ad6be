// Workspaces in the Lab: the "New workspace" dialog (name, machine type, JupyterLab or Notebook,
// idle timeout) and a tab showing the workspace's own Jupyter, served by this server's proxy
// at <base_url>spell/workspaces/<name>/ (same origin: it opens inside the tab).
import { Widget } from '@lumino/widgets';

import { askUntilTaken } from './ask';
import { IRun, followEvents, machineTypes, request } from './api';
import { FINAL, statusText } from './format';

export interface IWorkspace {
  name: string;
  url: string; // its path on this server
  run: IRun;
  runs: number[];
  ready: boolean; // its Jupyter answers
}

interface IWorkspaceForm {
  name: string;
  notebook: boolean;
  idle_timeout_minutes: number | null;
  spec: { machine_type: string };
}

const READY_CHECK_MS = 500; // while its Jupyter starts (no event says that it listens)

class NewWorkspaceForm extends Widget {
  private fields: Record<string, HTMLInputElement | HTMLSelectElement> = {};

  constructor(previous: Partial<IWorkspaceForm>) {
    super();
    this.addClass('jp-spell-new-run');
    const name = this.field('name', 'Name', document.createElement('input'));
    (name as HTMLInputElement).placeholder = 'ws1';
    name.value = previous.name ?? '';
    const machine = this.field(
      'machine_type',
      'Machine type',
      document.createElement('select')
    ) as HTMLSelectElement;
    const app = this.field(
      'app',
      'Jupyter',
      document.createElement('select')
    ) as HTMLSelectElement;
    app.append(new Option('JupyterLab', 'lab'), new Option('Notebook', 'tree'));
    app.value = previous.notebook ? 'tree' : 'lab';
    const idle = this.field(
      'idle_timeout_minutes',
      'Stop after idle minutes',
      document.createElement('input')
    ) as HTMLInputElement;
    idle.type = 'number';
    idle.min = '0';
    idle.value = previous.idle_timeout_minutes
      ? String(previous.idle_timeout_minutes)
      : '';
    void machineTypes().then(types => {
      for (const type of types) {
        machine.appendChild(new Option(type.name, type.name));
      }
      machine.value = previous.spec?.machine_type ?? types[0]?.name ?? 'CPU';
    });
  }

  private field(
    name: string,
    text: string,
    control: HTMLInputElement | HTMLSelectElement
  ): HTMLInputElement | HTMLSelectElement {
    const label = document.createElement('label');
    label.textContent = text;
    control.className = 'jp-mod-styled';
    control.name = name;
    control.dataset.testid = `spell-workspace-${name.replace(/_/g, '-')}`;
    label.appendChild(control);
    this.node.appendChild(label);
    this.fields[name] = control;
    return control;
  }

  showError(text: string): void {
    const error = document.createElement('p');
    error.className = 'jp-spell-error';
    error.dataset.testid = 'spell-workspace-error';
    error.textContent = text;
    this.node.appendChild(error);
  }

  getValue(): IWorkspaceForm {
    const idle = this.fields.idle_timeout_minutes.value.trim();
    return {
      name: this.fields.name.value.trim(),
      notebook: this.fields.app.value === 'tree',
      idle_timeout_minutes: idle ? Number(idle) : null,
      spec: { machine_type: this.fields.machine_type.value }
    };
  }
}

/** Ask for a workspace and start it (asked again with the server's message until it is taken
 * or the user cancels); null when cancelled. */
export function askForWorkspace(): Promise<IWorkspace | null> {
  return askUntilTaken(
    previous => new NewWorkspaceForm(previous),
    body =>
      request<IWorkspace>('workspaces', {
        method: 'POST',
        body: JSON.stringify(body)
      }),
    { title: 'New Spell workspace', label: 'Start', previous: {} }
  );
}

export function getWorkspace(name: string): Promise<IWorkspace> {
  return request<IWorkspace>(`workspaces/${encodeURIComponent(name)}`);
}

/** A workspace's tab: its state while it starts, then its Jupyter in a frame. */
export class WorkspaceView extends Widget {
  private state: HTMLElement;
  private frame: HTMLIFrameElement;
  private run: IRun;
  readonly runId: number;
  private unsubscribe: (() => void) | null = null;
  private checking = 0;
  private stopping = false; // asked to stop here: its page is not opened again

  constructor(private workspace: IWorkspace) {
    super();
    this.id = `spell-workspace-${workspace.name}`;
    this.addClass('jp-spell-workspace');
    this.title.label = `Workspace ${workspace.name}`;
    this.title.closable = true;
    this.run = workspace.run;
    this.runId = workspace.run.id;
    const bar = document.createElement('div');
    bar.className = 'jp-spell-run-bar';
    this.state = document.createElement('span');
    this.state.className = 'jp-spell-message';
    this.state.dataset.testid = 'spell-workspace-state';
    const open = document.createElement('a');
    open.textContent = 'Open in a new browser tab';
    open.href = this.page();
    open.target = '_blank';
    open.rel = 'noopener';
    const stop = document.createElement('button');
    stop.className = 'jp-mod-styled';
    stop.textContent = 'Stop';
    stop.dataset.testid = 'spell-workspace-stop';
    stop.onclick = () => {
      this.stopping = true;
      this.frame.src = 'about:blank'; // its page goes first: nothing asks a stopping Jupyter
      void request(`workspaces/${encodeURIComponent(workspace.name)}/stop`, {
        method: 'POST'
      }).catch(error => (this.state.textContent = (error as Error).message));
    };
    bar.append(stop, open, this.state);
    this.frame = document.createElement('iframe');
    this.frame.className = 'jp-spell-workspace-frame';
    this.frame.title = `Workspace ${workspace.name}`;
    this.frame.dataset.testid = 'spell-workspace-frame';
    this.node.append(bar, this.frame);
  }

  /** Its page: JupyterLab's /lab or Notebook's /tree, as it was started. */
  private page(): string {
    const app = this.run.spec.command.includes('jupyter-notebook')
      ? 'tree'
      : 'lab';
    return `${this.workspace.url}${app}`;
  }

  protected onAfterAttach(): void {
    this.unsubscribe = followEvents(
      run => {
        if (run.id === this.run.id) {
          this.run = run;
          this.render();
        }
      },
      () => undefined
    );
    this.render();
  }

  protected onBeforeDetach(): void {
    this.unsubscribe?.();
    window.clearTimeout(this.checking);
  }

  private render(): void {
    const { run } = this;
    if (FINAL.has(run.status)) {
      if (this.frame.getAttribute('src') !== 'about:blank') {
        this.frame.src = 'about:blank'; // its Jupyter is gone: nothing left asking it
      }
      this.state.textContent = `Ended ${statusText(run)}: start it again with New workspace and its name`;
    } else if (run.status !== 'running') {
      this.state.textContent = `Starting: ${statusText(run)}`;
    } else if (
      !this.stopping &&
      !this.frame.getAttribute('src')?.startsWith(this.workspace.url)
    ) {
      this.state.textContent = 'Starting Jupyter…';
      void this.whenAnswering();
    }
  }

  private async whenAnswering(): Promise<void> {
    window.clearTimeout(this.checking);
    const now = await getWorkspace(this.workspace.name).catch(() => null);
    if (this.stopping || this.run.status !== 'running') {
      return;
    }
    if (now?.ready && now.run.id === this.run.id) {
      this.state.textContent = `Running (run ${this.run.id})`;
      this.frame.src = this.page();
    } else {
      this.checking = window.setTimeout(
        () => void this.whenAnswering(),
        READY_CHECK_MS
      );
    }
  }
}
