// The Spell sidebar: the runs, newest first, a page at a time, filtered by status, kind and
// label, kept current by the server's event stream (never polled).
import { Widget } from '@lumino/widgets';

import { IRun, SpellError, followEvents, listRuns, request } from './api';
import { FINAL, LIVE_STATUSES, duration, isOlder, statusText } from './format';

export const PAGE = 100;

const SHOWN_KINDS = ['run', 'workflow', 'hyper']; // workspaces and kernels when asked for

export class RunsSidebar extends Widget {
  private runs = new Map<number, IRun>();
  private total = 0;
  private offset = 0;
  private body: HTMLTableSectionElement;
  private state: HTMLElement;
  private pageText: HTMLElement;
  private older: HTMLButtonElement;
  private newer: HTMLButtonElement;
  private status: HTMLSelectElement;
  private kind: HTMLSelectElement;
  private label: HTMLInputElement;
  private unsubscribe: (() => void) | null = null;
  private ticker = 0;
  private reloading: Promise<void> | null = null;
  private reloadAgain = false;

  constructor(
    private openRun: (id: number) => void,
    private newRun: () => void,
    private newWorkspace: () => void
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
    const workspace = document.createElement('button');
    workspace.className = 'jp-mod-styled';
    workspace.textContent = 'Workspace';
    workspace.title = 'New workspace: JupyterLab on a Spell machine type';
    workspace.dataset.testid = 'spell-new-workspace';
    workspace.onclick = () => this.newWorkspace();
    head.append(heading, create, workspace);
    const filters = document.createElement('div');
    filters.className = 'jp-spell-filters';
    this.status = this.choice('Status', 'spell-filter-status', [
      ['', 'Any status'],
      ['live', 'Live'],
      ['complete', 'Complete'],
      ['failed', 'Failed'],
      ['stopped', 'Stopped'],
      ['killed', 'Killed'],
      ['interrupted', 'Interrupted']
    ]);
    this.kind = this.choice('Kind', 'spell-filter-kind', [
      ['', 'Runs, workflows, searches'],
      ['run', 'Runs'],
      ['workflow', 'Workflows'],
      ['hyper', 'Searches'],
      ['workspace', 'Workspaces'],
      ['kernel', 'Kernels']
    ]);
    this.label = document.createElement('input');
    this.label.className = 'jp-mod-styled';
    this.label.placeholder = 'Label';
    this.label.setAttribute('aria-label', 'Only runs with this label');
    this.label.dataset.testid = 'spell-filter-label';
    this.label.onchange = () => this.first();
    filters.append(this.status, this.kind, this.label);
    this.state = document.createElement('div');
    this.state.className = 'jp-spell-state';
    const table = document.createElement('table');
    table.className = 'jp-spell-runs';
    table.innerHTML =
      '<thead><tr><th>ID</th><th>Status</th><th>Command</th><th>Machine</th>' +
      '<th>Duration</th><th>Labels</th></tr></thead>';
    this.body = table.createTBody();
    const pager = document.createElement('div');
    pager.className = 'jp-spell-pager';
    this.newer = this.pageButton('Newer', -1);
    this.older = this.pageButton('Older', 1);
    this.pageText = document.createElement('span');
    this.pageText.dataset.testid = 'spell-page';
    pager.append(this.newer, this.pageText, this.older);
    this.node.append(head, filters, this.state, table, pager);
  }

  private choice(
    name: string,
    testid: string,
    options: string[][]
  ): HTMLSelectElement {
    const select = document.createElement('select');
    select.className = 'jp-mod-styled';
    select.setAttribute('aria-label', name);
    select.dataset.testid = testid;
    for (const [value, text] of options) {
      select.appendChild(new Option(text, value));
    }
    select.onchange = () => this.first();
    return select;
  }

  private pageButton(text: string, step: number): HTMLButtonElement {
    const button = document.createElement('button');
    button.className = 'jp-mod-styled jp-spell-small';
    button.textContent = text;
    button.dataset.testid = `spell-page-${text.toLowerCase()}`;
    button.onclick = () => {
      this.offset = Math.max(0, this.offset + step * PAGE);
      void this.reload();
    };
    return button;
  }

  protected onAfterAttach(): void {
    // The page at once (the first paint waits for no stream), and again each time the stream
    // opens: what changed between a read and the stream's start is not lost.
    void this.reload();
    this.unsubscribe = followEvents(
      run => this.upsert(run),
      connected => {
        if (connected) {
          this.state.textContent = '';
          void this.reload(); // catch up on the page as a whole after a gap
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

  private first(): void {
    this.offset = 0;
    void this.reload();
  }

  /** Read the page again; calls made meanwhile are folded into one more read. */
  private reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = this.load().finally(() => {
      this.reloading = null;
      if (this.reloadAgain) {
        this.reloadAgain = false;
        void this.reload();
      }
    });
    return this.reloading;
  }

  private async load(): Promise<void> {
    const wanted = this.status.value;
    try {
      const page = await listRuns({
        statuses: wanted === 'live' ? LIVE_STATUSES : wanted ? [wanted] : [],
        kinds: this.kind.value ? [this.kind.value] : SHOWN_KINDS,
        labels: this.label.value.trim() ? [this.label.value.trim()] : [],
        limit: PAGE,
        offset: this.offset
      });
      const before = this.runs;
      this.runs = new Map();
      for (const run of page.runs) {
        const known = before.get(run.id);
        this.runs.set(run.id, known && isOlder(run, known) ? known : run);
      }
      this.total = page.total;
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
    const known = this.runs.get(run.id);
    if (known) {
      if (!this.matches(run)) {
        void this.reload(); // it leaves this filter's page
      } else if (!isOlder(run, known)) {
        this.runs.set(run.id, run);
        this.draw();
      }
    } else if (this.offset === 0 && this.matches(run)) {
      void this.reload(); // a new run on the first page (the total moves too)
    }
  }

  private matches(run: IRun): boolean {
    const wanted = this.status.value;
    const label = this.label.value.trim();
    const kinds = this.kind.value ? [this.kind.value] : SHOWN_KINDS;
    return (
      !run.archived &&
      kinds.includes(run.kind) &&
      (!label || run.labels.includes(label)) &&
      (!wanted ||
        (wanted === 'live' ? !FINAL.has(run.status) : run.status === wanted))
    );
  }

  private draw(): void {
    const shown = [...this.runs.values()].sort((a, b) => b.id - a.id);
    const rows = shown.map(run => {
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
    const filtered = this.status.value || this.kind.value || this.label.value;
    if (!rows.length) {
      this.state.textContent = filtered
        ? 'No runs match these filters'
        : 'No runs yet: start one with New run';
    } else if (this.state.textContent?.startsWith('No runs')) {
      this.state.textContent = '';
    }
    this.pageText.textContent = rows.length
      ? `${this.offset + 1}–${this.offset + rows.length} of ${this.total}`
      : '';
    this.newer.disabled = this.offset === 0;
    this.older.disabled = this.offset + PAGE >= this.total;
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
