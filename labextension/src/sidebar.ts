// The Spell sidebar: the runs, newest first, kept current by the server's event stream.
import { Widget } from '@lumino/widgets';

import { IRun, SpellError, followEvents, listRuns, request } from './api';
import { FINAL, duration, isOlder, statusText } from './format';

const SHOWN = 200;

export class RunsSidebar extends Widget {
  private runs = new Map<number, IRun>();
  private body: HTMLTableSectionElement;
  private state: HTMLElement;
  private filter: HTMLSelectElement;
  private unsubscribe: (() => void) | null = null;
  private ticker = 0;

  constructor(
    private openRun: (id: number) => void,
    private newRun: () => void
  ) {
    super();
    this.id = 'spell-sidebar';
    this.addClass('jp-spell-sidebar');
    this.title.caption = 'Spell runs';
    const head = document.createElement('div');
    head.className = 'jp-spell-sidebar-head';
    const heading = document.createElement('h2');
    heading.textContent = 'Spell runs';
    heading.dataset.testid = 'spell-sidebar-heading';
    const create = document.createElement('button');
    create.className = 'jp-mod-styled jp-mod-accept';
    create.textContent = 'New run';
    create.dataset.testid = 'spell-new-run';
    create.onclick = () => this.newRun();
    this.filter = document.createElement('select');
    this.filter.className = 'jp-mod-styled';
    this.filter.setAttribute('aria-label', 'Show runs');
    for (const [value, label] of [
      ['', 'All'],
      ['live', 'Live'],
      ['complete', 'Complete'],
      ['failed', 'Failed'],
      ['stopped', 'Stopped']
    ]) {
      this.filter.appendChild(new Option(label, value));
    }
    this.filter.onchange = () => this.draw();
    this.state = document.createElement('div');
    this.state.className = 'jp-spell-state';
    head.append(heading, create, this.filter);
    const table = document.createElement('table');
    table.className = 'jp-spell-runs';
    table.innerHTML =
      '<thead><tr><th>ID</th><th>Status</th><th>Command</th><th>Machine</th>' +
      '<th>Duration</th><th>Labels</th></tr></thead>';
    this.body = table.createTBody();
    this.node.append(head, this.state, table);
  }

  protected onAfterAttach(): void {
    // the stream first; once it is open, the list as it is (again after each reconnect)
    this.unsubscribe = followEvents(
      run => this.upsert(run),
      connected => {
        if (connected) {
          this.state.textContent = '';
          void this.load(); // catch up on the list as a whole after a gap
        } else {
          void this.probe();
        }
      }
    );
    this.ticker = window.setInterval(() => this.tick(), 1000);
  }

  protected onBeforeDetach(): void {
    this.unsubscribe?.();
    window.clearInterval(this.ticker);
  }

  private async load(): Promise<void> {
    try {
      const runs = await listRuns([], SHOWN);
      runs.forEach(run => this.keep(run));
      this.draw();
    } catch (error) {
      this.state.textContent = (error as Error).message;
    }
  }

  /** Why the stream dropped: a refusal is said as it is; else the server is away. */
  private async probe(): Promise<void> {
    try {
      await request('');
      this.state.textContent = 'Reconnecting to the server…';
    } catch (error) {
      this.state.textContent =
        error instanceof SpellError && error.status === 403
          ? error.message
          : 'The server is not answering: reconnecting…';
    }
  }

  private upsert(run: IRun): void {
    this.keep(run);
    this.draw();
  }

  private keep(run: IRun): void {
    if (!isOlder(run, this.runs.get(run.id))) {
      this.runs.set(run.id, run);
    }
  }

  private visible(): IRun[] {
    const wanted = this.filter.value;
    return [...this.runs.values()]
      .filter(
        run =>
          run.kind !== 'workspace' && run.kind !== 'kernel' && !run.archived
      )
      .filter(run =>
        !wanted
          ? true
          : wanted === 'live'
            ? !FINAL.has(run.status)
            : run.status === wanted
      )
      .sort((a, b) => b.id - a.id)
      .slice(0, SHOWN);
  }

  private draw(): void {
    const rows = this.visible().map(run => {
      const row = document.createElement('tr');
      row.dataset.runId = String(run.id);
      row.tabIndex = 0;
      row.onclick = () => this.openRun(run.id);
      row.onkeydown = event => {
        if (event.key === 'Enter') {
          this.openRun(run.id);
        }
      };
      const cells = [
        String(run.id),
        statusText(run),
        run.command,
        run.machine_type,
        duration(run),
        run.labels.join(', ')
      ];
      cells.forEach((text, index) => {
        const cell = row.insertCell();
        cell.textContent = text;
        if (index === 1) {
          cell.className = `jp-spell-status jp-spell-status-${run.status}`;
          cell.dataset.testid = 'spell-run-status';
        } else if (index === 4) {
          cell.className = 'jp-spell-duration';
        }
      });
      return row;
    });
    this.body.replaceChildren(...rows);
    if (!rows.length && !this.state.textContent) {
      this.state.textContent = 'No runs yet: start one with New run';
    } else if (rows.length && this.state.textContent?.startsWith('No runs')) {
      this.state.textContent = '';
    }
  }

  private tick(): void {
    for (const row of this.body.rows) {
      const run = this.runs.get(Number(row.dataset.runId));
      if (run && !FINAL.has(run.status)) {
        row.cells[4].textContent = duration(run);
      }
    }
  }
}
