// What a run was made of: its status history, machine type, environment, variables, mounts,
// code (commit and the uncommitted changes as a diff) and labels.
import { Widget } from '@lumino/widgets';

import { IRun, request } from './api';

export class RunDetails extends Widget {
  private patchShown = false;

  constructor() {
    super();
    this.addClass('jp-spell-details');
    this.node.dataset.testid = 'spell-run-details';
  }

  render(run: IRun): void {
    const spec = run.spec;
    const sections: [string, Node][] = [
      [
        'Status history',
        table(
          ['Status', 'At', 'Message'],
          run.status_history.map(change => [
            change.status.replace(/_/g, ' '),
            new Date(change.at).toLocaleString(),
            change.message
          ])
        )
      ],
      [
        'Machine',
        facts([
          ['Machine type', run.machine_type],
          ['Kind', run.kind],
          ['Working folder', spec.cwd || "(the code's root)"],
          [
            'Timeout',
            spec.timeout_minutes ? `${spec.timeout_minutes} min` : 'none'
          ],
          [
            'Exit code',
            run.user_exit_code === null ? '' : String(run.user_exit_code)
          ],
          ['Labels', run.labels.join(', ')],
          ['Description', spec.description]
        ])
      ],
      [
        'Environment',
        facts([
          ['Framework', spec.docker_image ? '' : spec.framework],
          ['Docker image', spec.docker_image ?? ''],
          ['pip', spec.pip_packages.join(' ')],
          ['apt', spec.apt_packages.join(' ')],
          ['requirements file', spec.requirements ? 'yes' : ''],
          ['conda file', spec.conda_env ? 'yes' : '']
        ])
      ],
      [
        'Variables',
        table(
          ['Name', 'Value'],
          Object.entries(spec.envvars).map(([name, value]) => [name, value])
        )
      ],
      [
        'Mounts',
        table(
          ['Resource', 'At'],
          spec.mounts.map(mount => [mount.resource, mount.path || '(its name)'])
        )
      ],
      ['Code', facts(codeFacts(run))]
    ];
    this.node.replaceChildren();
    for (const [title, body] of sections) {
      const heading = document.createElement('h3');
      heading.textContent = title;
      this.node.append(heading, body);
    }
    if (spec.code?.patch) {
      const heading = document.createElement('h3');
      heading.textContent = 'Uncommitted changes';
      const diff = document.createElement('div');
      diff.className = 'jp-spell-diff';
      diff.dataset.testid = 'spell-run-patch';
      this.node.append(heading, diff);
      void showPatch(run.id, diff);
    }
    this.patchShown = !!spec.code?.patch;
  }

  get hasPatch(): boolean {
    return this.patchShown;
  }
}

function codeFacts(run: IRun): [string, string][] {
  const code = run.spec.code;
  if (!code) {
    return [['Code', 'none (the command alone)']];
  }
  return [
    ['Repository', code.repository],
    ['Commit', code.commit ?? ''],
    [
      'Git URL',
      code.github_url ? `${code.github_url} ${code.github_ref ?? ''}` : ''
    ],
    ['Uncommitted changes', code.patch ? 'yes (below)' : 'none']
  ];
}

async function showPatch(runId: number, into: HTMLElement): Promise<void> {
  try {
    const text = await request<string>(`runs/${runId}/patch`, {}, 'text');
    into.replaceChildren(
      ...text.split('\n').map(line => {
        const row = document.createElement('div');
        row.textContent = line;
        row.className =
          line.startsWith('+++') || line.startsWith('---')
            ? 'jp-spell-diff-file'
            : line.startsWith('+')
              ? 'jp-spell-diff-add'
              : line.startsWith('-')
                ? 'jp-spell-diff-del'
                : line.startsWith('@@')
                  ? 'jp-spell-diff-hunk'
                  : '';
        return row;
      })
    );
  } catch (error) {
    into.textContent = (error as Error).message;
  }
}

function facts(pairs: [string, string][]): HTMLElement {
  const list = document.createElement('dl');
  list.className = 'jp-spell-facts';
  for (const [name, value] of pairs) {
    if (!value) {
      continue;
    }
    const term = document.createElement('dt');
    term.textContent = name;
    const detail = document.createElement('dd');
    detail.textContent = value;
    list.append(term, detail);
  }
  return list;
}

function table(head: string[], rows: string[][]): HTMLElement {
  if (!rows.length) {
    const none = document.createElement('p');
    none.textContent = 'none';
    return none;
  }
  const element = document.createElement('table');
  element.className = 'jp-spell-runs';
  const headRow = element.createTHead().insertRow();
  head.forEach(text => {
    const cell = document.createElement('th');
    cell.textContent = text;
    headRow.appendChild(cell);
  });
  const body = element.createTBody();
  rows.forEach(values => {
    const row = body.insertRow();
    values.forEach(value => (row.insertCell().textContent = value));
  });
  return element;
}
