// The new-run dialog: command, machine type (with how many fit now), pip packages, labels,
// timeout. The server validates; its 400 is shown next to the form, not as a stack trace.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IRun, SpellError, machineTypes, newRun } from './api';

interface IRunForm {
  command?: string;
  machine_type?: string;
  pip_packages?: string[];
  labels?: string[];
  timeout_minutes?: number;
}

class NewRunForm extends Widget {
  readonly command: HTMLInputElement;
  readonly machineType: HTMLSelectElement;
  readonly pip: HTMLInputElement;
  readonly labels: HTMLInputElement;
  readonly timeout: HTMLInputElement;

  constructor(previous: IRunForm = {}) {
    super();
    this.addClass('jp-spell-new-run');
    this.command = this.field(
      'Command',
      'input',
      'spell-command'
    ) as HTMLInputElement;
    this.command.value = previous.command ?? '';
    this.command.placeholder = 'python train.py';
    this.machineType = this.field(
      'Machine type',
      'select',
      'spell-machine-type'
    ) as HTMLSelectElement;
    this.pip = this.field(
      'pip packages',
      'input',
      'spell-pip'
    ) as HTMLInputElement;
    this.pip.placeholder = 'six==1.17.0 numpy';
    this.pip.value = (previous.pip_packages ?? []).join(' ');
    this.labels = this.field(
      'Labels',
      'input',
      'spell-labels'
    ) as HTMLInputElement;
    this.timeout = this.field(
      'Timeout (minutes)',
      'input',
      'spell-timeout'
    ) as HTMLInputElement;
    this.timeout.type = 'number';
    this.timeout.min = '0';
    this.timeout.value = previous.timeout_minutes
      ? String(previous.timeout_minutes)
      : '';
    void machineTypes().then(types => {
      for (const type of types) {
        const note = type.unavailable_reason
          ? 'none free'
          : `${type.available} free`;
        this.machineType.appendChild(
          new Option(`${type.name} (${note})`, type.name)
        );
      }
    });
  }

  private field(
    text: string,
    tag: 'input' | 'select',
    testid: string
  ): HTMLElement {
    const label = document.createElement('label');
    label.textContent = text;
    const control = document.createElement(tag);
    control.className = 'jp-mod-styled';
    control.dataset.testid = testid;
    label.appendChild(control);
    this.node.appendChild(label);
    return control;
  }

  /** The server's message under the field it names ("pip_packages: ..."), else at the end. */
  showError(error: string): void {
    const fields: Record<string, HTMLElement> = {
      command: this.command,
      machine_type: this.machineType,
      pip_packages: this.pip,
      labels: this.labels,
      timeout_minutes: this.timeout
    };
    const named = /^(\w+)[:\s]/.exec(error);
    const field = named ? fields[named[1]] : undefined;
    const message = document.createElement('div');
    message.className = 'jp-spell-error';
    message.dataset.testid = 'spell-new-run-error';
    message.textContent = error;
    if (field?.parentElement) {
      field.parentElement.appendChild(message);
      field.setAttribute('aria-invalid', 'true');
    } else {
      this.node.appendChild(message);
    }
  }

  getValue(): IRunForm {
    const words = (text: string) => text.split(/[\s,]+/).filter(word => word);
    const body: IRunForm = {
      command: this.command.value,
      machine_type: this.machineType.value || 'CPU',
      pip_packages: words(this.pip.value),
      labels: words(this.labels.value)
    };
    if (this.timeout.value) {
      body.timeout_minutes = Number(this.timeout.value);
    }
    return body;
  }
}

/** Ask for a run and submit it; the run, or null when cancelled. Asked again, with the
 * server's message, until the server takes it or the user cancels. */
export async function askForRun(
  previous: IRunForm = {},
  error = ''
): Promise<IRun | null> {
  const form = new NewRunForm(previous);
  if (error) {
    form.showError(error);
  }
  const result = await showDialog({
    title: 'New Spell run',
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
  });
  if (!result.button.accept) {
    return null;
  }
  const body = form.getValue();
  try {
    return await newRun(body);
  } catch (failure) {
    const text =
      failure instanceof SpellError ? failure.message : String(failure);
    return askForRun(body, text);
  }
}
