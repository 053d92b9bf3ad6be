// A run's metrics as line charts (hardware samples spell/cpu_percent, spell/memory_mib, GPUs,
// and the run's own metrics), fetched once and then topped up when the event stream says a
// run's metrics grew.
import { Widget } from '@lumino/widgets';

import { apiUrl, encodePath, failure, request } from './api';
import { ServerConnection } from '@jupyterlab/services';

const WIDTH = 320;
const HEIGHT = 120;
const PAD = 6;
const MOST_POINTS = 2000; // per chart; more are thinned evenly
const SVG = 'http://www.w3.org/2000/svg';

type Point = [number, number]; // index, value

export class MetricsView extends Widget {
  private series = new Map<string, Point[]>();
  private charts: HTMLElement;
  private state: HTMLElement;
  private loading: Promise<void> | null = null;
  private again = false;

  constructor(private runId: number) {
    super();
    this.addClass('jp-spell-metrics');
    this.node.dataset.testid = 'spell-metrics';
    this.state = document.createElement('div');
    this.state.className = 'jp-spell-state';
    this.charts = document.createElement('div');
    this.charts.className = 'jp-spell-charts';
    this.node.append(this.state, this.charts);
  }

  /** Read what is new (called at first and on each `metrics` event of this run). */
  update(): void {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = this.load().finally(() => {
      this.loading = null;
      if (this.again) {
        this.again = false;
        this.update();
      }
    });
  }

  private async load(): Promise<void> {
    try {
      const summary = await request<{ metrics: { name: string }[] }>(
        `runs/${this.runId}/metrics`
      );
      for (const { name } of summary.metrics) {
        const known = this.series.get(name) ?? [];
        const start = known.length ? known[known.length - 1][0] + 1 : 0;
        this.series.set(
          name,
          known.concat(await readMetric(this.runId, name, start))
        );
      }
      this.state.textContent = this.series.size
        ? ''
        : 'No metrics yet: a run sends them with spell.metrics.send_metric; Docker runs also get CPU and memory samples';
      this.draw();
    } catch (error) {
      this.state.textContent = (error as Error).message;
    }
  }

  private draw(): void {
    const names = [...this.series.keys()].sort();
    this.charts.replaceChildren(
      ...names
        .map(name => chart(name, this.series.get(name) ?? []))
        .filter((node): node is HTMLElement => node !== null)
    );
  }
}

async function readMetric(
  runId: number,
  name: string,
  start: number
): Promise<Point[]> {
  const response = await ServerConnection.makeRequest(
    apiUrl(`runs/${runId}/metrics/${encodePath(name)}?start=${start}`),
    {},
    ServerConnection.makeSettings()
  );
  if (!response.ok) {
    throw await failure(response);
  }
  const points: Point[] = [];
  for (const line of (await response.text()).split('\n')) {
    if (line) {
      const [, index, value] = JSON.parse(line) as [string, number, unknown];
      if (typeof value === 'number') {
        points.push([index, value]);
      }
    }
  }
  return points;
}

function chart(name: string, all: Point[]): HTMLElement | null {
  if (!all.length) {
    return null;
  }
  const step = Math.ceil(all.length / MOST_POINTS);
  const points = all.filter((_, i) => i % step === 0 || i === all.length - 1);
  const xs = points.map(p => p[0]);
  const ys = points.map(p => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const at = ([i, v]: Point) =>
    `${(PAD + ((i - x0) / (x1 - x0 || 1)) * (WIDTH - 2 * PAD)).toFixed(1)},` +
    `${(HEIGHT - PAD - ((v - y0) / (y1 - y0 || 1)) * (HEIGHT - 2 * PAD)).toFixed(1)}`;
  const figure = document.createElement('figure');
  figure.className = 'jp-spell-chart';
  figure.dataset.metric = name;
  const caption = document.createElement('figcaption');
  const last = all[all.length - 1];
  caption.textContent = `${name}: ${last[1].toPrecision(6)} at ${last[0]} (min ${y0.toPrecision(4)}, max ${y1.toPrecision(4)})`;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute('width', String(WIDTH));
  svg.setAttribute('height', String(HEIGHT));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', caption.textContent);
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', points.map(at).join(' '));
  line.setAttribute('class', 'jp-spell-chart-line');
  svg.appendChild(line);
  figure.append(caption, svg);
  return figure;
}
