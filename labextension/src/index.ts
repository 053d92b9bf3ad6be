// spell-jupyter in JupyterLab: the Spell sidebar, a tab per run, and a new-run dialog.
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';

import { askForRun } from './newrun';
import { RunView } from './runview';
import { RunsSidebar } from './sidebar';

const spellIcon = new LabIcon({
  name: 'spell-jupyter:spell',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" ' +
    'fill="#616161" d="M12 2l2.4 6.9H21l-5.4 4.2 2 7L12 16l-5.6 4.1 2-7L3 8.9h6.6z"/></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'spell-jupyter:plugin',
  description: "Spell's runs, live logs and a new-run dialog",
  autoStart: true,
  requires: [ILabShell],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    palette: ICommandPalette | null
  ) => {
    const views = new Map<number, MainAreaWidget<RunView>>();
    const openRun = (id: number) => {
      let view = views.get(id);
      if (!view || view.isDisposed) {
        view = new MainAreaWidget({ content: new RunView(id) });
        view.id = `spell-run-view-${id}`;
        view.title.label = `Run ${id}`;
        view.title.icon = spellIcon;
        views.set(id, view);
        shell.add(view, 'main');
      }
      shell.activateById(view.id);
    };
    app.commands.addCommand('spell:new-run', {
      label: 'New Spell run…',
      caption: 'Run a command on Spell',
      execute: async () => {
        const run = await askForRun();
        if (run) {
          openRun(run.id);
        }
      }
    });
    app.commands.addCommand('spell:open-run', {
      label: 'Open a Spell run',
      execute: args => openRun(Number(args.id))
    });
    const sidebar = new RunsSidebar(openRun, () =>
      app.commands.execute('spell:new-run')
    );
    sidebar.title.icon = spellIcon;
    shell.add(sidebar, 'left', { rank: 300 });
    palette?.addItem({ command: 'spell:new-run', category: 'Spell' });
  }
};

export default plugin;
