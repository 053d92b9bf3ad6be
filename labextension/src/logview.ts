// A run's logs, windowed: every line is kept as text, only the lines in sight are in the page
// (fixed line height), so a run of a million lines scrolls as smoothly as one of ten. A follow
// toggle, search (Enter: next match) and a download of the whole log.
import { Widget } from '@lumino/widgets';

import { ILogEntry } from './api';
import { renderLine } from './format';

const LINE_PX = 18;
const SPARE = 20; // lines drawn beyond the visible ones, each side
const KEPT = 1_000_000; // lines held in the tab; older ones are dropped (the download has all)

interface ILine {
  text: string;
  kind: '' | 'status' | 'stderr';
}

export class LogView extends Widget {
  readonly follow: HTMLInputElement;
  private scroller: HTMLElement;
  private spacer: HTMLElement;
  private shownLines: HTMLElement;
  private search: HTMLInputElement;
  private found: HTMLElement;
  private lines: ILine[] = [];
  private dropped = 0;
  private matches: number[] = [];
  private current = -1;
  private frame = 0;

  constructor(downloadUrl: string) {
    super();
    this.addClass('jp-spell-logview');
    const bar = document.createElement('div');
    bar.className = 'jp-spell-logs-bar';
    const label = document.createElement('label');
    this.follow = document.createElement('input');
    this.follow.type = 'checkbox';
    this.follow.checked = true;
    this.follow.dataset.testid = 'spell-follow';
    label.append(this.follow, ' Follow');
    this.follow.onchange = () => this.follow.checked && this.toEnd();
    this.search = document.createElement('input');
    this.search.className = 'jp-mod-styled';
    this.search.placeholder = 'Search the logs';
    this.search.setAttribute('aria-label', 'Search the logs');
    this.search.dataset.testid = 'spell-log-search';
    this.search.oninput = () => this.find();
    this.search.onkeydown = event => {
      if (event.key === 'Enter') {
        this.next(event.shiftKey ? -1 : 1);
      }
    };
    this.found = document.createElement('span');
    this.found.className = 'jp-spell-found';
    this.found.dataset.testid = 'spell-log-found';
    const download = document.createElement('a');
    download.textContent = 'Download';
    download.href = downloadUrl;
    download.dataset.testid = 'spell-log-download';
    bar.append(label, this.search, this.found, download);
    this.scroller = document.createElement('div');
    this.scroller.className = 'jp-spell-logs';
    this.scroller.dataset.testid = 'spell-run-logs';
    this.scroller.tabIndex = 0;
    this.spacer = document.createElement('div');
    this.spacer.className = 'jp-spell-logs-spacer';
    this.shownLines = document.createElement('div');
    this.shownLines.className = 'jp-spell-logs-window';
    this.spacer.appendChild(this.shownLines);
    this.scroller.appendChild(this.spacer);
    this.scroller.onscroll = () => {
      const atEnd =
        this.scroller.scrollTop + this.scroller.clientHeight >=
        this.scroller.scrollHeight - LINE_PX;
      if (!atEnd && this.follow.checked && !this.frame) {
        this.follow.checked = false; // the user scrolled up to read
      }
      this.schedule();
    };
    this.node.append(bar, this.scroller);
  }

  /** How many lines the tab holds. */
  get count(): number {
    return this.lines.length;
  }

  append(entries: ILogEntry[]): void {
    for (const entry of entries) {
      this.lines.push({
        text: entry.text,
        kind: entry.status_event
          ? 'status'
          : entry.stream === 'stderr'
            ? 'stderr'
            : ''
      });
    }
    const extra = this.lines.length - KEPT;
    if (extra > 0) {
      this.lines.splice(0, extra);
      this.dropped += extra;
      this.matches = [];
    }
    if (this.search.value) {
      this.find(false);
    }
    this.schedule();
  }

  protected onResize(): void {
    this.schedule();
  }

  protected onAfterShow(): void {
    this.schedule();
  }

  private schedule(): void {
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.draw();
        this.frame = 0;
      });
    }
  }

  private toEnd(): void {
    this.spacer.style.height = `${this.lines.length * LINE_PX}px`;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.schedule();
  }

  private draw(): void {
    this.spacer.style.height = `${(this.lines.length + (this.dropped ? 1 : 0)) * LINE_PX}px`;
    if (this.follow.checked) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    }
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / LINE_PX) - SPARE);
    const last = Math.min(
      this.lines.length,
      Math.ceil((top + height) / LINE_PX) + SPARE
    );
    const marked = this.current >= 0 ? this.matches[this.current] : -1;
    const drawn: HTMLElement[] = [];
    if (this.dropped && first === 0) {
      const note = document.createElement('div');
      note.className = 'jp-spell-log-line jp-spell-log-status';
      note.textContent = `… ${this.dropped} earlier lines are in the download`;
      drawn.push(note);
    }
    for (let i = first; i < last; i++) {
      const line = renderLine(this.lines[i].text);
      if (this.lines[i].kind) {
        line.classList.add(`jp-spell-log-${this.lines[i].kind}`);
      }
      if (i === marked) {
        line.classList.add('jp-spell-log-match');
      }
      drawn.push(line);
    }
    this.shownLines.style.transform = `translateY(${first * LINE_PX}px)`;
    this.shownLines.replaceChildren(...drawn);
  }

  private find(jump = true): void {
    const wanted = this.search.value.toLowerCase();
    this.matches = [];
    if (wanted) {
      this.lines.forEach((line, index) => {
        if (line.text.toLowerCase().includes(wanted)) {
          this.matches.push(index);
        }
      });
    }
    if (jump) {
      this.current = this.matches.length ? 0 : -1;
      this.reveal();
    }
    this.found.textContent = wanted
      ? `${this.matches.length ? this.current + 1 : 0} of ${this.matches.length}`
      : '';
  }

  private next(step: number): void {
    if (!this.matches.length) {
      return;
    }
    const count = this.matches.length;
    this.current = (this.current + step + count) % count;
    this.found.textContent = `${this.current + 1} of ${count}`;
    this.reveal();
  }

  /** Scroll the current match into sight (following stops: the user is reading). */
  private reveal(): void {
    if (this.current < 0) {
      this.schedule();
      return;
    }
    this.follow.checked = false;
    const line = this.matches[this.current];
    this.scroller.scrollTop = Math.max(
      0,
      line * LINE_PX - this.scroller.clientHeight / 2
    );
    this.schedule();
  }
}
