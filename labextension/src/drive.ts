// SpellFS as a read-only JupyterLab drive ("SpellFS:runs/3/loss.csv"), so that Lab opens run
// outputs and uploads with its own viewers: text, images, CSV tables, notebooks.
import { PathExt } from '@jupyterlab/coreutils';
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import {
  IFileInfo,
  SpellError,
  apiUrl,
  encodePath,
  failure,
  linkUrl,
  listFolder
} from './api';

export const DRIVE = 'SpellFS';

const TEXT =
  /\.(txt|log|md|py|sh|json|csv|tsv|ya?ml|toml|cfg|ini|xml|html|js|ts|r|jl)$/i;

/** A SpellFS path as a Contents model (no content). */
export function toModel(info: IFileInfo): Contents.IModel {
  const folder = info.type === 'directory' || info.type === 'link';
  const modified = info.modified ?? new Date(0).toISOString();
  return {
    name: info.name,
    path: info.path,
    type: folder
      ? 'directory'
      : info.name.endsWith('.ipynb')
        ? 'notebook'
        : 'file',
    writable: false,
    created: modified,
    last_modified: modified,
    mimetype: '',
    content: null,
    format: null,
    size: info.size
  };
}

export class SpellDrive implements Contents.IDrive {
  readonly name = DRIVE;
  readonly serverSettings = ServerConnection.makeSettings();
  private changed = new Signal<this, Contents.IChangedArgs>(this);
  private disposed = false;

  get fileChanged(): ISignal<this, Contents.IChangedArgs> {
    return this.changed;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    this.disposed = true;
    Signal.clearData(this);
  }

  async get(
    path: string,
    options?: Contents.IFetchOptions
  ): Promise<Contents.IModel> {
    const parent = PathExt.dirname(path);
    const name = PathExt.basename(path);
    const info = path
      ? (await listFolder(parent)).find(entry => entry.name === name)
      : { path, name, type: 'directory', size: 0 };
    if (!info) {
      throw new SpellError(404, `SpellFS has no ${path}`);
    }
    if (info.type !== 'file') {
      const entries = await listFolder(path);
      return {
        ...toModel(info),
        content: entries.map(toModel),
        format: 'json'
      };
    }
    const model = toModel(info);
    if (options?.content === false) {
      return model;
    }
    const bytes = await fetchBytes(path);
    const wanted =
      model.type === 'notebook'
        ? 'json'
        : (options?.format ?? (TEXT.test(name) ? 'text' : 'base64'));
    if (wanted === 'base64') {
      return {
        ...model,
        format: 'base64',
        mimetype: 'application/octet-stream',
        content: toBase64(bytes)
      };
    }
    const text = new TextDecoder().decode(bytes);
    return wanted === 'json'
      ? { ...model, format: 'json', content: JSON.parse(text) }
      : { ...model, format: 'text', mimetype: 'text/plain', content: text };
  }

  async getDownloadUrl(path: string): Promise<string> {
    return downloadUrl(path, false);
  }

  newUntitled(): Promise<Contents.IModel> {
    return readOnly();
  }
  delete(): Promise<void> {
    return readOnly();
  }
  rename(): Promise<Contents.IModel> {
    return readOnly();
  }
  save(): Promise<Contents.IModel> {
    return readOnly();
  }
  copy(): Promise<Contents.IModel> {
    return readOnly();
  }
  createCheckpoint(): Promise<Contents.ICheckpointModel> {
    return readOnly();
  }
  async listCheckpoints(): Promise<Contents.ICheckpointModel[]> {
    return [];
  }
  restoreCheckpoint(): Promise<void> {
    return readOnly();
  }
  deleteCheckpoint(): Promise<void> {
    return readOnly();
  }
}

function readOnly<T>(): Promise<T> {
  return Promise.reject(
    new SpellError(
      403,
      'SpellFS is read-only here: save a copy in your own folders, or upload into uploads/ from the Spell files panel'
    )
  );
}

/** A file's URL (with the session's token, for links), or a folder's as a tar. */
export function downloadUrl(path: string, folder: boolean): string {
  return linkUrl(`${folder ? 'download' : 'files'}/${encodePath(path)}`);
}

async function fetchBytes(path: string): Promise<Uint8Array> {
  const settings = ServerConnection.makeSettings();
  const response = await ServerConnection.makeRequest(
    apiUrl(`files/${encodePath(path)}`),
    {},
    settings
  );
  if (!response.ok) {
    throw await failure(response);
  }
  return new Uint8Array(await response.arrayBuffer());
}

function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
