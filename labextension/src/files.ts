// A SpellFS browser: runs/, uploads/, public/ and links with sizes and dates; files open in Lab
// (through the SpellFS drive), download (folders as a tar), copy a path for --mount, and
// uploads into uploads/ by drag and drop from the desktop or Lab's file browser, resumable.
import { Clipboard } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { Drag } from '@lumino/dragdrop';
import { Widget } from '@lumino/widgets';

import { IFileInfo, listFolder } from './api';
import { DRIVE, downloadUrl } from './drive';
import { formatSize } from './format';
import { uploadFile } from './upload';

const CONTENTS_MIME = 'application/x-jupyter-icontents';

export interface IFilesOptions {
  /** Where the browser starts and above which it does not go ('' for SpellFS's root). */
  root: string;
  /** Open a SpellFS file in Lab ("SpellFS:runs/3/loss.csv"). */
  open: (path: string) => void;
  /** A file of the Lab's own file browser, as a Blob (for drops from it). */
  readLabFile: (path: string) => Promise<Blob>;
  testid: string;
}

export class FilesBrowser extends Widget {
  private path: string;
  private crumbs: HTMLElement;
  private body: HTMLTableSectionElement;
  private state: HTMLElement;
  private progress: HTMLElement;

  constructor(private options: IFilesOptions) {
    super();
    this.path = options.root;
    this.addClass('jp-spell-files');
    this.node.dataset.testid = options.testid;
    const bar = document.createElement('div');
    bar.className = 'jp-spell-files-bar';
    this.crumbs = document.createElement('div');
    this.crumbs.className = 'jp-spell-crumbs';
    const refresh = this.button('Refresh', () => void this.refresh());
    const chooser = document.createElement('input');
    chooser.type = 'file';
    chooser.multiple = true;
    chooser.hidden = true;
    chooser.dataset.testid = 'spell-upload-input';
    chooser.onchange = () => {
      void this.upload(
        [...(chooser.files ?? [])].map(file => [file.name, file])
      );
      chooser.value = '';
    };
    const upload = this.button('Upload', () => chooser.click());
    bar.append(this.crumbs, refresh, upload, chooser);
    this.state = document.createElement('div');
    this.state.className = 'jp-spell-state';
    this.progress = document.createElement('div');
    this.progress.className = 'jp-spell-progress';
    const table = document.createElement('table');
    table.className = 'jp-spell-runs jp-spell-file-table';
    table.innerHTML =
      '<thead><tr><th>Name</th><th>Size</th><th>Modified</th><th></th></tr></thead>';
    this.body = table.createTBody();
    this.node.append(bar, this.state, this.progress, table);
  }

  get currentPath(): string {
    return this.path;
  }

  protected onAfterShow(): void {
    void this.refresh(); // read when seen, not while hidden behind another tab
  }

  protected onAfterAttach(): void {
    this.node.addEventListener('dragover', this);
    this.node.addEventListener('drop', this);
    this.node.addEventListener('lm-dragenter', this);
    this.node.addEventListener('lm-dragover', this);
    this.node.addEventListener('lm-drop', this);
  }

  protected onBeforeDetach(): void {
    for (const type of [
      'dragover',
      'drop',
      'lm-dragenter',
      'lm-dragover',
      'lm-drop'
    ]) {
      this.node.removeEventListener(type, this);
    }
  }

  handleEvent(event: Event): void {
    switch (event.type) {
      case 'dragover': // files from the desktop
        event.preventDefault();
        break;
      case 'drop': {
        const drop = event as DragEvent;
        drop.preventDefault();
        const files = [...(drop.dataTransfer?.files ?? [])];
        void this.upload(files.map(file => [file.name, file]));
        break;
      }
      case 'lm-dragenter':
      case 'lm-dragover': {
        const drag = event as Drag.Event;
        if (drag.mimeData.hasData(CONTENTS_MIME)) {
          drag.preventDefault();
          drag.stopPropagation();
          drag.dropAction = drag.proposedAction; // Lab's listing offers 'move'; we copy
        }
        break;
      }
      case 'lm-drop': {
        const drag = event as Drag.Event;
        if (!drag.mimeData.hasData(CONTENTS_MIME)) {
          return;
        }
        drag.preventDefault();
        drag.stopPropagation();
        drag.dropAction = drag.proposedAction; // the file stays in Lab's folder
        const paths = drag.mimeData.getData(CONTENTS_MIME) as string[];
        void this.uploadLabFiles(paths);
        break;
      }
    }
  }

  /** Show `path` (a folder of SpellFS). */
  async go(path: string): Promise<void> {
    this.path = path;
    await this.refresh();
  }

  async refresh(): Promise<void> {
    this.drawCrumbs();
    try {
      const entries = await listFolder(this.path);
      this.state.textContent = entries.length ? '' : 'Nothing here yet';
      this.body.replaceChildren(...entries.map(entry => this.row(entry)));
    } catch (error) {
      this.body.replaceChildren();
      this.state.textContent = (error as Error).message;
    }
  }

  private drawCrumbs(): void {
    const parts = this.path ? this.path.split('/') : [];
    const rootParts = this.options.root ? this.options.root.split('/') : [];
    const links: HTMLElement[] = [];
    const home = document.createElement('a');
    home.textContent = this.options.root || 'SpellFS';
    home.onclick = () => void this.go(this.options.root);
    links.push(home);
    for (let i = rootParts.length; i < parts.length; i++) {
      const link = document.createElement('a');
      link.textContent = parts[i];
      const target = parts.slice(0, i + 1).join('/');
      link.onclick = () => void this.go(target);
      links.push(link);
    }
    this.crumbs.replaceChildren();
    links.forEach((link, index) => {
      if (index) {
        this.crumbs.append(' / ');
      }
      this.crumbs.append(link);
    });
  }

  private row(entry: IFileInfo): HTMLTableRowElement {
    const folder = entry.type !== 'file';
    const row = document.createElement('tr');
    row.tabIndex = 0;
    row.dataset.path = entry.path;
    const open = () =>
      folder ? void this.go(entry.path) : this.options.open(entry.path);
    row.ondblclick = open;
    row.onkeydown = event => {
      if (event.key === 'Enter') {
        open();
      }
    };
    const name = row.insertCell();
    name.className = 'jp-spell-file-name';
    name.textContent =
      (folder ? `${entry.name}/` : entry.name) +
      (entry.target ? ` → ${entry.target}` : '');
    row.insertCell().textContent = folder ? '' : formatSize(entry.size);
    row.insertCell().textContent = entry.modified
      ? new Date(entry.modified).toLocaleString()
      : '';
    const actions = row.insertCell();
    actions.className = 'jp-spell-file-actions';
    const download = document.createElement('a');
    download.textContent = 'Download';
    download.href = downloadUrl(entry.path, folder);
    download.download = folder ? `${entry.name}.tar` : entry.name;
    download.dataset.testid = 'spell-download';
    const copy = this.button('Copy path', () => {
      Clipboard.copyToSystem(entry.path);
      this.state.textContent = `Copied ${entry.path} (use it with --mount)`;
    });
    copy.dataset.testid = 'spell-copy-path';
    actions.append(download, copy);
    return row;
  }

  private button(text: string, onClick: () => void): HTMLButtonElement {
    const button = document.createElement('button');
    button.className = 'jp-mod-styled jp-spell-small';
    button.textContent = text;
    button.onclick = event => {
      event.stopPropagation();
      onClick();
    };
    return button;
  }

  /** Where a dropped file goes: beside what is shown when that is under uploads/. */
  private uploadName(fileName: string): string {
    const folder = this.path === 'uploads' || this.path.startsWith('uploads/');
    const under = folder ? this.path.slice('uploads'.length + 1) : '';
    return under ? `${under}/${fileName}` : fileName;
  }

  private async uploadLabFiles(paths: string[]): Promise<void> {
    const files: [string, Blob][] = [];
    for (const path of paths) {
      try {
        files.push([
          PathExt.basename(path),
          await this.options.readLabFile(path)
        ]);
      } catch (error) {
        this.state.textContent = `${path}: ${(error as Error).message}`;
      }
    }
    await this.upload(files);
  }

  private async upload(files: [string, Blob][]): Promise<void> {
    for (const [fileName, blob] of files) {
      const name = this.uploadName(fileName);
      const line = document.createElement('div');
      line.dataset.testid = 'spell-upload-progress';
      const bar = document.createElement('progress');
      bar.max = Math.max(1, blob.size);
      const text = document.createElement('span');
      line.append(`uploads/${name} `, bar, text);
      this.progress.appendChild(line);
      try {
        const done = await uploadFile(name, blob, held => {
          bar.value = held;
          text.textContent = ` ${formatSize(held)} of ${formatSize(blob.size)}`;
        });
        text.textContent = ` uploaded (${formatSize(blob.size)})`;
        line.dataset.done = done;
      } catch (error) {
        text.textContent = ` ${(error as Error).message}`;
        line.classList.add('jp-spell-error');
      }
    }
    await this.refresh();
  }
}

export function spellPath(path: string): string {
  return `${DRIVE}:${path}`;
}
