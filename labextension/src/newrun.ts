// The new-run dialog: command, machine type (with how many fit now), framework, pip and apt
// packages, environment variables, mounts picked from SpellFS, labels, description, timeout.
// Filled in from a run for Rerun, or from a file for "Run on Spell" (whose code, prepared by the
// server, rides along unseen). The server validates; its 400 is shown under the field it names.
import { Widget } from '@lumino/widgets';

import { askUntilTaken } from './ask';
import {
  IRun,
  IRunSpec,
  listFolder,
  machineTypes,
  newRun,
  request
} from './api';

export type IRunForm = Partial<IRunSpec>;

const TEST_IDS: Record<string, string> = {
  machine_type: 'spell-machine-type',
  pip_packages: 'spell-pip',
  apt_packages: 'spell-apt',
  timeout_minutes: 'spell-timeout'
};

/** Fields that the server's messages name in words rather than by the field's name. */
const TOPICS: [RegExp, string][] = [
  [/machine type/i, 'machine_type'],
  [/framework/i, 'framework'],
  [/pip package/i, 'pip_packages'],
  [/apt package/i, 'apt_packages'],
  [/environment variable/i, 'envvars'],
  [/mount|SpellFS path|resource/i, 'mounts'],
  [/label/i, 'labels'],
  [/timeout/i, 'timeout_minutes'],
  [/command/i, 'command']
];

const words = (text: string) => text.split(/[\s,]+/).filter(word => word);

class NewRunForm extends Widget {
  private fields: Record<string, HTMLInputElement | HTMLSelectElement> = {};
  private mountRows: HTMLElement;
  private mountChoices: HTMLDataListElement;

  constructor(private previous: IRunForm = {}) {
    super();
    this.addClass('jp-spell-new-run');
    this.input('command', 'Command', previous.command, 'python train.py');
    this.select('machine_type', 'Machine type');
    this.select('framework', 'Framework');
    this.input(
      'pip_packages',
      'pip packages',
      (previous.pip_packages ?? []).join(' '),
      'numpy torch==2.3'
    );
    this.input(
      'apt_packages',
      'apt packages',
      (previous.apt_packages ?? []).join(' '),
      'ffmpeg'
    );
    this.input(
      'envvars',
      'Environment variables',
      Object.entries(previous.envvars ?? {})
        .map(([name, value]) => `${name}=${value}`)
        .join(' '),
      'SEED=1 MODE=fast'
    );
    const mounts = document.createElement('fieldset');
    mounts.className = 'jp-spell-mounts';
    const legend = document.createElement('legend');
    legend.textContent = 'Mounts (SpellFS path, then where the run sees it)';
    this.mountRows = document.createElement('div');
    this.mountRows.dataset.testid = 'spell-mounts';
    const add = document.createElement('button');
    add.className = 'jp-mod-styled jp-spell-small';
    add.textContent = 'Add mount';
    add.type = 'button';
    add.dataset.testid = 'spell-add-mount';
    add.onclick = () => this.addMount('', '');
    this.mountChoices = document.createElement('datalist');
    this.mountChoices.id = `spell-mount-choices-${Date.now()}`;
    mounts.append(legend, this.mountRows, add, this.mountChoices);
    this.node.appendChild(mounts);
    (previous.mounts ?? []).forEach(mount =>
      this.addMount(mount.resource, mount.path)
    );
    this.input(
      'labels',
      'Labels',
      (previous.labels ?? []).join(' '),
      'baseline'
    );
    this.input('description', 'Description', previous.description ?? '');
    const timeout = this.input(
      'timeout_minutes',
      'Timeout (minutes)',
      previous.timeout_minutes ? `${previous.timeout_minutes}` : ''
    );
    timeout.type = 'number';
    timeout.min = '0';
    if (previous.code) {
      const code = document.createElement('p');
      code.className = 'jp-spell-note';
      code.dataset.testid = 'spell-code-note';
      code.textContent =
        `Code: ${previous.code.repository}` +
        (previous.code.commit
          ? ` at ${previous.code.commit.slice(0, 10)}`
          : '') +
        (previous.code.patch ? ' with its uncommitted changes' : '') +
        (previous.cwd ? `, in ${previous.cwd}` : '');
      this.node.appendChild(code);
    }
    void this.fillChoices();
  }

  private async fillChoices(): Promise<void> {
    const machine = this.fields.machine_type as HTMLSelectElement;
    const framework = this.fields.framework as HTMLSelectElement;
    const [types, facts] = await Promise.all([
      machineTypes(),
      request<{ frameworks?: string[] }>('')
    ]);
    for (const type of types) {
      const note = type.unavailable_reason
        ? 'none free'
        : `${type.available} free`;
      machine.appendChild(new Option(`${type.name} (${note})`, type.name));
    }
    machine.value = this.previous.machine_type ?? types[0]?.name ?? 'CPU';
    for (const name of facts.frameworks ?? ['default']) {
      framework.appendChild(new Option(name, name));
    }
    framework.value = this.previous.framework ?? 'default';
    const places: string[] = [];
    const top = (await listFolder('')).map(entry => entry.name);
    for (const folder of ['uploads', 'runs', 'public']) {
      if (top.includes(folder)) {
        const entries = await listFolder(folder);
        places.push(...entries.slice(-50).map(entry => entry.path));
      }
    }
    this.mountChoices.replaceChildren(...places.map(path => new Option(path)));
  }

  private addMount(resource: string, path: string): void {
    const row = document.createElement('div');
    row.className = 'jp-spell-mount';
    const from = document.createElement('input');
    from.className = 'jp-mod-styled';
    from.value = resource;
    from.placeholder = 'uploads/data or runs/3';
    from.setAttribute('list', this.mountChoices.id);
    from.setAttribute('aria-label', 'SpellFS path');
    from.dataset.testid = 'spell-mount-resource';
    const to = document.createElement('input');
    to.className = 'jp-mod-styled';
    to.value = path;
    to.placeholder = '(its name)';
    to.setAttribute('aria-label', 'Where the run sees it');
    const remove = document.createElement('button');
    remove.className = 'jp-mod-styled jp-spell-small';
    remove.type = 'button';
    remove.textContent = 'Remove';
    remove.onclick = () => row.remove();
    row.append(from, to, remove);
    this.mountRows.appendChild(row);
  }

  private input(
    name: string,
    text: string,
    value = '',
    placeholder = ''
  ): HTMLInputElement {
    const control = document.createElement('input');
    control.value = value;
    control.placeholder = placeholder;
    this.labelled(name, text, control);
    return control;
  }

  private select(name: string, text: string): void {
    this.labelled(name, text, document.createElement('select'));
  }

  private labelled(
    name: string,
    text: string,
    control: HTMLInputElement | HTMLSelectElement
  ): void {
    const label = document.createElement('label');
    label.textContent = text;
    control.className = 'jp-mod-styled';
    control.name = name;
    control.dataset.testid = TEST_IDS[name] ?? `spell-${name}`;
    label.appendChild(control);
    this.node.appendChild(label);
    this.fields[name] = control;
  }

  /** The server's message under the field it names ("pip_packages: ..."), else at the end. */
  showError(error: string): void {
    const named = /^(\w+)[:\s]/.exec(error)?.[1] ?? '';
    const topic = TOPICS.find(([pattern]) => pattern.test(error))?.[1] ?? '';
    const field =
      this.fields[named] ??
      (named === 'mounts' || topic === 'mounts'
        ? this.mountRows
        : this.fields[topic]);
    const message = document.createElement('div');
    message.className = 'jp-spell-error';
    message.dataset.testid = 'spell-new-run-error';
    message.setAttribute('role', 'alert');
    message.textContent = error;
    if (field?.parentElement) {
      field.parentElement.appendChild(message);
      field.setAttribute('aria-invalid', 'true');
    } else {
      this.node.appendChild(message);
    }
  }

  getValue(): IRunForm {
    const value = (name: string) => this.fields[name].value;
    const envvars: Record<string, string> = {};
    for (const pair of words(value('envvars'))) {
      const [name, ...rest] = pair.split('=');
      envvars[name] = rest.join('=');
    }
    const mounts = [...this.mountRows.querySelectorAll('.jp-spell-mount')]
      .map(row => row.querySelectorAll('input'))
      .filter(inputs => inputs[0].value.trim())
      .map(inputs => ({
        resource: inputs[0].value.trim(),
        path: inputs[1].value.trim()
      }));
    const body: IRunForm = {
      ...this.previous, // what the form does not show (code, working folder, image...)
      command: value('command'),
      machine_type: value('machine_type') || 'CPU',
      framework: value('framework') || 'default',
      pip_packages: words(value('pip_packages')),
      apt_packages: words(value('apt_packages')),
      envvars,
      mounts,
      labels: words(value('labels')),
      description: value('description'),
      timeout_minutes: value('timeout_minutes')
        ? Number(value('timeout_minutes'))
        : null
    };
    return body;
  }
}

/** A run's request as the dialog takes it again (Rerun): the same code and environment. */
export function formOf(run: IRun): IRunForm {
  const { spec } = run;
  return { ...spec, labels: run.labels };
}

/** Ask for a run and submit it; the run, or null when cancelled. Asked again, with the
 * server's message, until the server takes it or the user cancels. */
export function askForRun(
  previous: IRunForm = {},
  error = '',
  title = 'New Spell run'
): Promise<IRun | null> {
  return askUntilTaken(form => new NewRunForm(form), newRun, {
    title,
    label: 'Run',
    previous,
    error
  });
}
