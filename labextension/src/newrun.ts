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
    const list = (words?: string[]) => (words ?? []).join(' ');
    this.command = this.input(
      'Command',
      'spell-command',
      previous.command,
      'python train.py'
    );
    this.machineType = document.createElement('select');
    this.labelled('Machine type', this.machineType, 'spell-machine-type');
    this.pip = this.input(
      'pip packages',
      'spell-pip',
      list(previous.pip_packages),
      'six numpy'
    );
    this.labels = this.input(
      'Labels',
      'spell-labels',
      list(previous.labels),
      'demo'
    );
    const minutes = previous.timeout_minutes;
    this.timeout = this.input(
      'Timeout (minutes)',
      'spell-timeout',
      minutes ? `${minutes}` : ''
    );
    this.timeout.type = 'number';
    this.timeout.min = '0';
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

  private input(
    text: string,
    testid: string,
    value = '',
    placeholder = ''
  ): HTMLInputElement {
    const control = document.createElement('input');
    control.value = value;
    control.placeholder = placeholder;
    this.labelled(text, control, testid);
    return control;
  }

  private labelled(text: string, control: HTMLElement, testid: string): void {
    const label = document.createElement('label');
    label.textContent = text;
    control.className = 'jp-mod-styled';
    control.dataset.testid = testid;
    label.appendChild(control);
    this.node.appendChild(label);
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
