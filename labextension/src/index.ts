// spell-jupyter in JupyterLab: the Spell sidebar (runs), a SpellFS panel, a tab per run, the
// new-run dialog, and "Run on Spell" for .py, .sh and .ipynb files (file browser, notebook
// toolbar). SpellFS is also a read-only drive, so Lab opens run outputs with its own viewers.
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  Notification,
  ToolbarButton
} from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { DocumentRegistry, IDocumentWidget } from '@jupyterlab/docregistry';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';

import { failure, request } from './api';
import { DRIVE, SpellDrive } from './drive';
import { FilesBrowser } from './files';
import { IRunForm, askForRun, formOf } from './newrun';
import {
  IWorkspace,
  WorkspaceView,
  askForWorkspace,
  getWorkspace
} from './workspaces';
import { RunView } from './runview';
import { RunsSidebar } from './sidebar';

const spellIcon = new LabIcon({
  name: 'spell-jupyter:spell',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" ' +
    'fill="#616161" d="M12 2l2.4 6.9H21l-5.4 4.2 2 7L12 16l-5.6 4.1 2-7L3 8.9h6.6z"/></svg>'
});

const filesIcon = new LabIcon({
  name: 'spell-jupyter:files',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" ' +
    'fill="#616161" d="M4 5h6l2 2h8v12H4z M13 10l1 2.6h2.8l-2.2 1.7.8 2.7-2.4-1.6-2.4 1.6.8-2.7-2.2-1.7H12z"/></svg>'
});

const RUNNABLE = /\.(py|sh|ipynb)$/i;

// the base URL of a workspace's Jupyter, served through its host
const WORKSPACE_PAGE = /\/spell\/workspaces\/[^/]+\/$/;

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'spell-jupyter:plugin',
  description:
    "Spell's runs, live logs, outputs and metrics, SpellFS, and a new-run dialog",
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    palette: ICommandPalette | null,
    fileBrowser: IDefaultFileBrowser | null
  ) => {
    if (WORKSPACE_PAGE.test(PageConfig.getBaseUrl())) {
      return; // a workspace's own Lab: Spell is its host's, reached from code, not from here
    }
    app.serviceManager.contents.addDrive(new SpellDrive());
    const openFile = (path: string) =>
      void app.commands.execute('docmanager:open', {
        path: `${DRIVE}:${path}`
      });
    const readLabFile = async (path: string): Promise<Blob> => {
      const settings = ServerConnection.makeSettings();
      const response = await ServerConnection.makeRequest(
        URLExt.join(settings.baseUrl, 'files', URLExt.encodeParts(path)),
        {},
        settings
      );
      if (!response.ok) {
        throw await failure(response);
      }
      return response.blob();
    };
    const files = { open: openFile, readLabFile };

    const views = new Map<number, MainAreaWidget<RunView>>();
    const openRun = (id: number) => {
      let view = views.get(id);
      if (!view || view.isDisposed) {
        const content = new RunView(id, {
          files,
          rerun: run => void submit(formOf(run), `Rerun of run ${run.id}`),
          openWorkspace: name =>
            void app.commands.execute('spell:open-workspace', { name })
        });
        view = new MainAreaWidget({ content });
        view.id = `spell-run-view-${id}`;
        view.title.label = `Run ${id}`;
        view.title.icon = spellIcon;
        views.set(id, view);
        shell.add(view, 'main');
      }
      shell.activateById(view.id);
    };
    const submit = async (form: IRunForm = {}, title?: string) => {
      const run = await askForRun(form, '', title);
      if (run) {
        openRun(run.id);
      }
    };
    const runFile = async (path: string) => {
      try {
        const prepared = await request<IRunForm & { warnings: string[] }>(
          'lab/prepare-run',
          { method: 'POST', body: JSON.stringify({ path }) }
        );
        const { warnings, ...form } = prepared;
        warnings.forEach(warning => Notification.warning(warning));
        await submit(form, `Run ${path} on Spell`);
      } catch (error) {
        Notification.error((error as Error).message);
      }
    };

    app.commands.addCommand('spell:new-run', {
      label: 'New Spell run…',
      caption: 'Run a command on Spell',
      execute: () => submit()
    });
    app.commands.addCommand('spell:open-run', {
      label: 'Open a Spell run',
      execute: args => openRun(Number(args.id))
    });
    app.commands.addCommand('spell:run-file', {
      label: 'Run on Spell',
      caption: 'Run this file on Spell, with its folder as the code',
      icon: spellIcon,
      isVisible: args =>
        typeof args.path === 'string' ||
        [...(fileBrowser?.selectedItems() ?? [])].some(
          item => item.type !== 'directory' && RUNNABLE.test(item.path)
        ),
      execute: args => {
        const path =
          typeof args.path === 'string'
            ? args.path
            : [...(fileBrowser?.selectedItems() ?? [])].find(item =>
                RUNNABLE.test(item.path)
              )?.path;
        if (path) {
          return runFile(path);
        }
      }
    });
    if (!app.docRegistry.getFileType('shell')) {
      app.docRegistry.addFileType({
        name: 'shell',
        displayName: 'Shell script',
        extensions: ['.sh'],
        mimeTypes: ['text/x-sh'],
        contentType: 'file',
        fileFormat: 'text'
      });
    }
    for (const type of ['python', 'notebook', 'shell']) {
      app.contextMenu.addItem({
        command: 'spell:run-file',
        selector: `.jp-DirListing-item[data-file-type="${type}"]`,
        rank: 3
      });
    }
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (
        panel: IDocumentWidget,
        context: DocumentRegistry.IContext<DocumentRegistry.IModel>
      ) => {
        if (context.path.startsWith(`${DRIVE}:`)) {
          return; // a run's output: run it again from a folder of the Lab
        }
        const button = new ToolbarButton({
          icon: spellIcon,
          label: 'Run on Spell',
          tooltip: 'Run this notebook on Spell (saved first)',
          onClick: async () => {
            if (context.model.dirty) {
              await context.save();
            }
            await runFile(context.path);
          }
        });
        button.node.dataset.testid = 'spell-notebook-run';
        panel.toolbar.insertAfter('cellType', 'spell-run', button);
        return button;
      }
    });

    const workspaceViews = new Map<string, MainAreaWidget<WorkspaceView>>();
    const openWorkspace = (workspace: IWorkspace) => {
      let view = workspaceViews.get(workspace.name);
      if (!view || view.isDisposed || view.content.runId !== workspace.run.id) {
        view?.dispose();
        view = new MainAreaWidget({ content: new WorkspaceView(workspace) });
        view.id = `spell-workspace-view-${workspace.name}`;
        view.title.label = `Workspace ${workspace.name}`;
        view.title.icon = spellIcon;
        workspaceViews.set(workspace.name, view);
        shell.add(view, 'main');
      }
      shell.activateById(view.id);
    };
    app.commands.addCommand('spell:new-workspace', {
      label: 'New Spell workspace…',
      caption:
        'JupyterLab on a Spell machine type, with its files kept between stops',
      execute: async () => {
        const workspace = await askForWorkspace();
        if (workspace) {
          openWorkspace(workspace);
        }
      }
    });
    app.commands.addCommand('spell:open-workspace', {
      label: 'Open a Spell workspace',
      execute: async args => {
        try {
          openWorkspace(await getWorkspace(String(args.name)));
        } catch (error) {
          Notification.error((error as Error).message);
        }
      }
    });
    const sidebar = new RunsSidebar(
      openRun,
      () => app.commands.execute('spell:new-run'),
      () => app.commands.execute('spell:new-workspace')
    );
    sidebar.title.icon = spellIcon;
    shell.add(sidebar, 'left', { rank: 300 });
    const spellfs = new FilesBrowser({
      ...files,
      root: '',
      testid: 'spell-files'
    });
    spellfs.id = 'spell-files-panel';
    spellfs.title.icon = filesIcon;
    spellfs.title.caption = 'SpellFS';
    shell.add(spellfs, 'right', { rank: 300 }); // beside Lab's file browser: drag from it
    palette?.addItem({ command: 'spell:new-run', category: 'Spell' });
    palette?.addItem({ command: 'spell:new-workspace', category: 'Spell' });
  }
};

export default plugin;
