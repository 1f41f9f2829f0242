/**
 * The bench results as an SVG chart: one bar per checked figure, drawn as a multiple of its target
 * (≥ 1 meets it, whether more or less is better), so a throughput ratio and a latency in ms fit on
 * one axis. Drawn with the simulator's chart code (chart.js on @napi-rs/canvas, bundled font).
 */
import type { ChartConfiguration } from 'chart.js';
import { renderSvg } from 'kentik-simulator';
import { score, type Row } from './report.ts';

/** Bars are cut here; their label keeps the real figure. */
const AXIS_MAX = 2;
const WIDTH = 1100;
const ROW_HEIGHT = 34;
const PASS = '#59a14f';
const MISS = '#e15759';

/** Undefined when no row carries a measure (e.g. only info rows ran). */
export function resultsChart(rows: readonly Row[], subtitle: string): Buffer | undefined {
  const bars = rows.flatMap((r) =>
    r.measure && r.status !== 'skipped' && r.status !== 'info'
      ? [{ label: `${r.scenario}: ${cut(r.figure, 70)}`, row: r, score: score(r.measure) }]
      : [],
  );
  if (bars.length === 0) return undefined;
  const config: ChartConfiguration = {
    type: 'bar',
    data: {
      // Two lines: what was measured, then the figure against its target.
      labels: bars.map((b) => [b.label, `${b.row.value}   (target ${b.row.target})`]),
      datasets: [
        {
          label: 'measured ÷ target',
          data: bars.map((b) => Math.min(AXIS_MAX, b.score)),
          backgroundColor: bars.map((b) => (b.row.status === 'pass' ? PASS : MISS)),
          barThickness: ROW_HEIGHT * 0.6,
        },
      ],
    },
    options: {
      indexAxis: 'y',
      animation: false,
      responsive: false,
      plugins: {
        legend: { display: false },
        title: {
          display: true,
          text: ['npm run bench: each figure as a multiple of its target (≥ 1 meets it)', subtitle],
          font: { size: 14 },
        },
      },
      scales: {
        x: {
          min: 0,
          max: AXIS_MAX,
          title: {
            display: true,
            text: `measured ÷ target, where more is better (cut at ${AXIS_MAX}×)`,
          },
          grid: { color: (c) => (c.tick.value === 1 ? '#2d3138' : '#e5e7eb') },
        },
        y: { ticks: { autoSkip: false, font: { size: 11 } } },
      },
    },
  };
  return renderSvg(config, WIDTH, 90 + ROW_HEIGHT * bars.length);
}

const cut = (s: string, n: number): string => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);
