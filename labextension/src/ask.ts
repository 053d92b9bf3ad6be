// A form in a dialog, asked again with the server's message until the server takes what it
// holds or the user cancels (the new-run and new-workspace dialogs).
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { SpellError } from './api';

export interface IForm<V> extends Widget {
  showError(text: string): void;
  getValue(): V;
}

export async function askUntilTaken<V, R>(
  makeForm: (previous: V) => IForm<V>,
  submit: (value: V) => Promise<R>,
  options: { title: string; label: string; previous: V; error?: string }
): Promise<R | null> {
  const form = makeForm(options.previous);
  if (options.error) {
    form.showError(options.error);
  }
  const result = await showDialog({
    title: options.title,
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: options.label })]
  });
  if (!result.button.accept) {
    return null;
  }
  const value = form.getValue();
  try {
    return await submit(value);
  } catch (failure) {
    const error =
      failure instanceof SpellError ? failure.message : String(failure);
    return askUntilTaken(makeForm, submit, {
      ...options,
      previous: value,
      error
    });
  }
}
