// A run's tab: its header (status, machine, duration), actions (Stop, Kill, Label, Archive,
// Rerun) and four panes: the logs streaming live, what the run was made of, its outputs
// (runs/<id>/ in a SpellFS browser) and its metrics as charts.
import { InputDialog } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { Panel, TabPanel, Widget } from '@lumino/widgets';

import {
  IRun,
  archiveRun,
  followEvents,
  followLogs,
  labelRun,
  linkUrl,
  request,
  runAction
} from './api';
import { RunDetails } from './details';
import { FilesBrowser, IFilesOptions } from './files';
import { FINAL, duration, isOlder, statusRank, statusText } from './format';
import { LogView } from './logview';
import { MetricsView } from './charts';

export interface IRunViewOptions {
  files: Omit<IFilesOptions, 'root' | 'testid'>;
  /** The new-run dialog, filled in from this run. */
  rerun: (run: IRun) => void;
  /** A workspace's tab (for runs of kind workspace). */
  openWorkspace: (name: string) => void;
}

export class RunView extends Panel {
  private header = new Widget();
  private message: HTMLElement;
  private buttons: Record<string, HTMLButtonElement> = {};
  private logs: LogView;
  private details = new RunDetails();
  private outputs: FilesBrowser;
  private metrics: MetricsView;
  private abort = new AbortController();
  private unsubscribe: (() => void) | null = null;
  private shown: IRun | undefined;
  private logStatus = ''; // the newest status the log told of
  private ticker = 0;

  constructor(
    readonly runId: number,
    private options: IRunViewOptions
  ) {
    super();
    this.id = `spell-run-${runId}`;
    this.addClass('jp-spell-run');
    this.title.label = `Run ${runId}`;
    this.title.closable = true;
    this.header.addClass('jp-spell-run-header');
    this.header.node.dataset.testid = 'spell-run-header';
    const bar = new Widget();
    bar.addClass('jp-spell-run-bar');
    for (const [text, act] of [
      ['Stop', () => this.act('stop')],
      ['Kill', () => this.act('kill')],
      ['Label', () => this.label()],
      ['Archive', () => this.archive()],
      ['Rerun', () => this.shown && this.options.rerun(this.shown)],
      ['Open workspace', () => this.openWorkspace()]
    ] as [string, () => void][]) {
      const button = document.createElement('button');
      button.className = 'jp-mod-styled';
      button.textContent = text;
      button.dataset.testid = `spell-${text.toLowerCase().replace(' ', '-')}`;
      button.onclick = act;
      this.buttons[text] = button;
      bar.node.appendChild(button);
    }
    this.buttons.Kill.classList.add('jp-mod-warn');
    this.message = document.createElement('span');
    this.message.className = 'jp-spell-message';
    this.message.dataset.testid = 'spell-run-message';
    bar.node.appendChild(this.message);
    this.logs = new LogView(linkUrl(`runs/${runId}/logs?download=true`));
    this.logs.title.label = 'Logs';
    this.details.title.label = 'Details';
    this.outputs = new FilesBrowser({
      ...options.files,
      root: `runs/${runId}`,
      testid: 'spell-run-outputs'
    });
    this.outputs.title.label = 'Outputs';
    this.metrics = new MetricsView(runId);
    this.metrics.title.label = 'Metrics';
    const panes = new TabPanel();
    panes.addClass('jp-spell-run-panes');
    for (const pane of [this.logs, this.details, this.outputs, this.metrics]) {
      panes.addWidget(pane);
    }
    this.addWidget(this.header);
    this.addWidget(bar);
    this.addWidget(panes);
  }

  protected onAfterAttach(): void {
    // the run at once, and again each time the stream opens (nothing lost between the two)
    void this.load();
    this.unsubscribe = followEvents(
      run => {
        if (run.id === this.runId) {
          this.showRun(run);
          this.metrics.update(); // the last values come before the run's end
        }
      },
      connected => {
        if (connected) {
          void this.load();
          this.metrics.update();
        }
      },
      runId => {
        if (runId === this.runId) {
          this.metrics.update();
        }
      }
    );
    void followLogs(
      this.runId,
      entries => {
        this.logs.append(entries);
        for (const entry of entries) {
          if (entry.status_event) {
            this.showStatus(entry.status); // the log says it first; the event brings the rest
          }
        }
      },
      this.abort.signal
    ).catch(error => {
      if (!this.abort.signal.aborted) {
        this.message.textContent = (error as Error).message;
      }
    });
    this.ticker = window.setInterval(() => this.tick(), 1000);
  }

  dispose(): void {
    this.abort.abort();
    this.unsubscribe?.();
    window.clearInterval(this.ticker);
    super.dispose();
  }

  private async load(): Promise<void> {
    try {
      this.showRun(await request<IRun>(`runs/${this.runId}`));
    } catch (error) {
      this.message.textContent = (error as Error).message;
    }
  }

  private openWorkspace(): void {
    const name = this.shown?.spec.workspace?.name;
    if (name) {
      this.options.openWorkspace(name);
    }
  }

  private showRun(run: IRun): void {
    if (isOlder(run, this.shown)) {
      return; // an answer read before the event already shown
    }
    const first = !this.shown;
    const changed =
      !this.shown ||
      this.shown.status_history.length !== run.status_history.length ||
      this.shown.labels.join() !== run.labels.join();
    this.shown = run;
    const final = FINAL.has(run.status);
    this.header.node.replaceChildren();
    const title = document.createElement('h2');
    title.textContent = `Run ${run.id}: ${run.command}`;
    const facts = document.createElement('div');
    const status = document.createElement('span');
    status.className = `jp-spell-status jp-spell-status-${run.status}`;
    status.dataset.testid = 'spell-run-view-status';
    status.textContent = statusText(run);
    const time = document.createElement('span');
    time.className = 'jp-spell-duration';
    time.textContent = duration(run);
    const board = document.createElement('a');
    if (run.spec.tensorboard_dir) {
      board.textContent = 'TensorBoard';
      board.href = URLExt.join(
        PageConfig.getBaseUrl(),
        `spell/runs/${run.id}/tensorboard/`
      );
      board.target = '_blank';
      board.rel = 'noopener';
      board.dataset.testid = 'spell-run-tensorboard';
    }
    facts.append(
      status,
      ` · ${run.machine_type} · `,
      time,
      run.labels.length ? ` · ${run.labels.join(', ')}` : '',
      run.archived ? ' · archived' : '',
      run.status_message ? ` · ${run.status_message}` : '',
      run.spec.tensorboard_dir ? ' · ' : '',
      run.spec.tensorboard_dir ? board : ''
    );
    this.header.node.append(title, facts);
    this.buttons.Stop.disabled = final;
    this.buttons.Kill.disabled = final;
    this.buttons.Archive.disabled = !final || run.archived;
    // a workspace is started again by its name (resuming its files), not rerun as a command
    this.buttons['Open workspace'].hidden = !run.spec.workspace;
    this.buttons.Rerun.hidden = !!run.spec.workspace;
    this.showStatus(this.logStatus);
    if (first || changed) {
      this.details.render(run);
    }
    if (final && !first && this.outputs.isVisible) {
      void this.outputs.refresh(); // what the run saved at its end
    }
  }

  private tick(): void {
    const time = this.header.node.querySelector('.jp-spell-duration');
    if (time && this.shown && !FINAL.has(this.shown.status)) {
      time.textContent = duration(this.shown);
    }
  }

  /** A status the log told of, shown at once when it is later in the run's life than the
   * one shown (final ones wait for the run itself, with its exit code). */
  private showStatus(status: string): void {
    if (statusRank(status) > statusRank(this.logStatus)) {
      this.logStatus = status;
    }
    const shown =
      this.header.node.querySelector<HTMLElement>('.jp-spell-status');
    if (
      shown &&
      this.shown &&
      !FINAL.has(this.logStatus) &&
      statusRank(this.logStatus) > statusRank(this.shown.status)
    ) {
      shown.className = `jp-spell-status jp-spell-status-${this.logStatus}`;
      shown.textContent = this.logStatus.replace(/_/g, ' ');
    }
  }

  private async act(action: 'stop' | 'kill'): Promise<void> {
    await this.attempt(
      () => runAction(this.runId, action),
      action === 'stop' ? 'Stopping…' : 'Killing…'
    );
  }

  private async label(): Promise<void> {
    const answer = await InputDialog.getText({
      title: `Label run ${this.runId}`,
      placeholder: 'a label, such as best'
    });
    if (answer.button.accept && answer.value) {
      const label = answer.value.trim();
      await this.attempt(
        () => labelRun(this.runId, label),
        `Labelled ${label}`
      );
    }
  }

  private async archive(): Promise<void> {
    await this.attempt(
      () => archiveRun(this.runId),
      'Archived: hidden from the runs list (spell ps --archived shows it)'
    );
  }

  /** Ask the server; the run it answers is shown, else its message. */
  private async attempt(ask: () => Promise<IRun>, done: string): Promise<void> {
    try {
      this.showRun(await ask());
      this.message.textContent = done;
    } catch (error) {
      this.message.textContent = (error as Error).message;
    }
  }
}
