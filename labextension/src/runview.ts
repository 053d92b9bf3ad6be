// A run's tab: its status, Stop and Kill, and its logs streaming live (a follow toggle; lines
// kept in the page are bounded, so a run of a million lines does not freeze the tab).
import { Widget } from '@lumino/widgets';

import {
  ILogEntry,
  IRun,
  followEvents,
  followLogs,
  request,
  runAction
} from './api';
import {
  FINAL,
  duration,
  isOlder,
  renderLine,
  statusRank,
  statusText
} from './format';

const KEPT_LINES = 5000;

export class RunView extends Widget {
  private header: HTMLElement;
  private logs: HTMLElement;
  private follow: HTMLInputElement;
  private message: HTMLElement;
  private stopButton: HTMLButtonElement;
  private killButton: HTMLButtonElement;
  private abort = new AbortController();
  private unsubscribe: (() => void) | null = null;
  private dropped = 0;
  private shown: IRun | undefined;
  private logStatus = ''; // the newest status the log told of

  constructor(readonly runId: number) {
    super();
    this.id = `spell-run-${runId}`;
    this.addClass('jp-spell-run');
    this.title.label = `Run ${runId}`;
    this.title.closable = true;
    this.header = document.createElement('div');
    this.header.className = 'jp-spell-run-header';
    this.header.dataset.testid = 'spell-run-header';
    const bar = document.createElement('div');
    bar.className = 'jp-spell-run-bar';
    this.stopButton = this.button('Stop', () => this.act('stop'));
    this.killButton = this.button('Kill', () => this.act('kill'));
    this.killButton.classList.add('jp-mod-warn');
    const label = document.createElement('label');
    this.follow = document.createElement('input');
    this.follow.type = 'checkbox';
    this.follow.checked = true;
    label.append(this.follow, ' Follow');
    this.message = document.createElement('span');
    this.message.className = 'jp-spell-message';
    bar.append(this.stopButton, this.killButton, label, this.message);
    this.logs = document.createElement('div');
    this.logs.className = 'jp-spell-logs';
    this.logs.dataset.testid = 'spell-run-logs';
    this.node.append(this.header, bar, this.logs);
  }

  private button(text: string, onClick: () => void): HTMLButtonElement {
    const button = document.createElement('button');
    button.className = 'jp-mod-styled';
    button.textContent = text;
    button.dataset.testid = `spell-${text.toLowerCase()}`;
    button.onclick = onClick;
    return button;
  }

  protected onAfterAttach(): void {
    // the stream first, then the run as it is: a change between the two is not lost
    this.unsubscribe = followEvents(
      run => {
        if (run.id === this.runId) {
          this.showRun(run);
        }
      },
      connected => {
        if (connected) {
          void this.load();
        }
      }
    );
    void followLogs(
      this.runId,
      entries => this.append(entries),
      this.abort.signal
    ).catch(error => {
      if (!this.abort.signal.aborted) {
        this.message.textContent = (error as Error).message;
      }
    });
  }

  dispose(): void {
    this.abort.abort();
    this.unsubscribe?.();
    super.dispose();
  }

  private async load(): Promise<void> {
    try {
      this.showRun(await request<IRun>(`runs/${this.runId}`));
    } catch (error) {
      this.message.textContent = (error as Error).message;
    }
  }

  private showRun(run: IRun): void {
    if (isOlder(run, this.shown)) {
      return; // an answer read before the event already shown
    }
    this.shown = run;
    const final = FINAL.has(run.status);
    this.header.replaceChildren();
    const title = document.createElement('h2');
    title.textContent = `Run ${run.id}: ${run.command}`;
    const facts = document.createElement('div');
    const status = document.createElement('span');
    status.className = `jp-spell-status jp-spell-status-${run.status}`;
    status.dataset.testid = 'spell-run-view-status';
    status.textContent = statusText(run);
    facts.append(
      status,
      ` · ${run.machine_type} · ${duration(run)} · outputs: runs/${run.id}`,
      run.labels.length ? ` · ${run.labels.join(', ')}` : ''
    );
    this.header.append(title, facts);
    this.stopButton.disabled = final;
    this.killButton.disabled = final;
    this.showStatus(this.logStatus);
  }

  private append(entries: ILogEntry[]): void {
    const lines = entries.map(entry => {
      const line = renderLine(entry.text);
      if (entry.status_event) {
        line.classList.add('jp-spell-log-status');
        this.showStatus(entry.status); // the log says it first; the event brings the rest
      } else if (entry.stream === 'stderr') {
        line.classList.add('jp-spell-log-stderr');
      }
      return line;
    });
    this.logs.append(...lines);
    const extra = this.logs.childElementCount - KEPT_LINES;
    for (let i = 0; i < extra; i++) {
      this.logs.firstElementChild?.remove();
    }
    if (extra > 0) {
      this.dropped += extra;
      this.message.textContent = `The first ${this.dropped} lines are not shown here (spell logs ${this.runId} has them all)`;
    }
    if (this.follow.checked) {
      this.logs.scrollTop = this.logs.scrollHeight;
    }
  }

  /** A status the log told of, shown at once when it is later in the run's life than the
   * one shown (final ones wait for the run itself, with its exit code). */
  private showStatus(status: string): void {
    if (statusRank(status) > statusRank(this.logStatus)) {
      this.logStatus = status;
    }
    const shown = this.header.querySelector<HTMLElement>('.jp-spell-status');
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
    try {
      this.showRun(await runAction(this.runId, action));
      this.message.textContent = action === 'stop' ? 'Stopping…' : 'Killing…';
    } catch (error) {
      this.message.textContent = (error as Error).message;
    }
  }
}
