// Charts drawn as inline SVG, no library: a time-series line chart with a left (°C) and a right
// (W) axis for a device's day, and horizontal bar charts (plain, stacked, percent) for reports.

import { s, hourMinute } from './ui.js';

/** Round tick values covering [min, max], about `count` of them. */
function ticks(min, max, count) {
  if (!(max > min)) {
    const pad = Math.abs(min) > 1 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((m) => m >= raw) || raw;
  const start = Math.floor(min / step) * step;
  const end = Math.ceil(max / step) * step;
  const values = [];
  for (let v = start; v <= end + step / 2; v += step) values.push(Number(v.toFixed(6)));
  return values;
}

function label(value) {
  return Math.abs(value) >= 1000 ? `${(value / 1000).toFixed(value % 1000 === 0 ? 0 : 1)}k` : String(value);
}

/**
 * A line chart of time series.
 * `series`: [{key, label, color, axis: 'left'|'right', dash?, points: [[ts_ms, value|null]...]}].
 * Lines break at missing values and at gaps longer than `gapMs`. Returns an `<svg>` whose
 * `data-points` counts the drawn values.
 */
export function lineChart({ width, height, from, to, series, leftLabel, rightLabel, title, gapMs }) {
  const margin = { top: 26, right: rightLabel ? 56 : 16, bottom: 34, left: 52 };
  const plotW = Math.max(50, width - margin.left - margin.right);
  const plotH = Math.max(50, height - margin.top - margin.bottom);
  const x = (ts) => margin.left + ((ts - from) / (to - from)) * plotW;
  const domain = (axis) => {
    const values = series.filter((se) => se.axis === axis).flatMap((se) => se.points.map((p) => p[1])).filter((v) => v !== null && v !== undefined);
    return values.length ? [Math.min(...values), Math.max(...values)] : [0, 1];
  };
  const leftTicks = ticks(...domain('left'), 5);
  const rightTicks = ticks(Math.min(0, domain('right')[0]), domain('right')[1], 5);
  const scale = (tickValues) => {
    const lo = tickValues[0];
    const hi = tickValues[tickValues.length - 1];
    return (v) => margin.top + plotH - ((v - lo) / (hi - lo || 1)) * plotH;
  };
  const yLeft = scale(leftTicks);
  const yRight = scale(rightTicks);
  let drawn = 0;

  const svg = s('svg', {
    class: 'chart line-chart',
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': title,
  });
  svg.appendChild(s('title', null, title));
  const grid = s('g', { class: 'grid-lines' });
  for (const v of leftTicks) {
    const y = yLeft(v);
    grid.appendChild(s('line', { x1: margin.left, x2: margin.left + plotW, y1: y, y2: y }));
    grid.appendChild(s('text', { x: margin.left - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, label(v)));
  }
  if (rightLabel) {
    for (const v of rightTicks) {
      grid.appendChild(s('text', { x: margin.left + plotW + 6, y: yRight(v) + 4, 'text-anchor': 'start', class: 'tick tick-right' }, label(v)));
    }
  }
  // Time ticks: every 10 min, hour or 3 h depending on the range.
  const span = to - from;
  const step = span <= 2 * 3600e3 ? 10 * 60e3 : span <= 8 * 3600e3 ? 3600e3 : 3 * 3600e3;
  const offset = 8 * 3600e3; // Beijing time: ticks on round local hours.
  for (let ts = Math.ceil((from + offset) / step) * step - offset; ts <= to; ts += step) {
    const px = x(ts);
    grid.appendChild(s('line', { x1: px, x2: px, y1: margin.top, y2: margin.top + plotH, class: 'vertical' }));
    grid.appendChild(s('text', { x: px, y: margin.top + plotH + 16, 'text-anchor': 'middle', class: 'tick' }, hourMinute(ts)));
  }
  svg.appendChild(grid);
  svg.appendChild(s('text', { x: 4, y: 12, class: 'axis-label' }, leftLabel));
  if (rightLabel) svg.appendChild(s('text', { x: width - 4, y: 12, 'text-anchor': 'end', class: 'axis-label' }, rightLabel));
  svg.appendChild(s('rect', { x: margin.left, y: margin.top, width: plotW, height: plotH, class: 'frame' }));

  for (const se of series) {
    const y = se.axis === 'right' ? yRight : yLeft;
    const points = se.points.filter((p) => p[0] >= from && p[0] <= to);
    let d = '';
    let previous = null;
    const group = s('g', { class: `series series-${se.key}`, 'data-series': se.key });
    for (const [ts, value] of points) {
      if (value === null || value === undefined) {
        previous = null;
        continue;
      }
      const px = x(ts).toFixed(1);
      const py = y(value).toFixed(1);
      d += previous !== null && ts - previous <= gapMs ? ` L${px} ${py}` : ` M${px} ${py}`;
      previous = ts;
      drawn += 1;
      if (points.length <= 40) group.appendChild(s('circle', { cx: px, cy: py, r: 3, fill: se.color }));
    }
    if (d) group.insertBefore(s('path', { d: d.trim(), stroke: se.color, 'stroke-dasharray': se.dash || null, class: 'line' }), group.firstChild);
    svg.appendChild(group);
  }
  svg.dataset.points = String(drawn);
  return svg;
}

/**
 * A horizontal bar chart. `rows`: [{label, values: [number...]}] (one value per stack);
 * `stacks`: [{label, color}]; `percent`: values are shares 0..1; `target`: a share drawn as a line.
 */
export function barChart({ width, rows, stacks, percent, target, title, labelWidth }) {
  const rowH = 26;
  const margin = { top: 8, right: 64, bottom: target !== undefined ? 22 : 8, left: labelWidth || 120 };
  const height = margin.top + margin.bottom + rows.length * rowH;
  const plotW = Math.max(40, width - margin.left - margin.right);
  const total = (row) => row.values.reduce((a, b) => a + (b || 0), 0);
  const max = percent ? 1 : Math.max(1, ...rows.map(total));
  const svg = s('svg', { class: 'chart bar-chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': title });
  svg.appendChild(s('title', null, title));
  rows.forEach((row, index) => {
    const y = margin.top + index * rowH;
    const g = s('g', { class: 'bar-row' });
    g.appendChild(s('text', { x: margin.left - 8, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'bar-label' }, row.label));
    g.appendChild(s('rect', { x: margin.left, y: y + 4, width: plotW, height: rowH - 8, class: 'bar-track' }));
    let at = margin.left;
    row.values.forEach((value, stack) => {
      if (!value) return;
      const w = (value / max) * plotW;
      g.appendChild(s('rect', { x: at, y: y + 4, width: Math.max(1, w), height: rowH - 8, fill: stacks[stack].color, class: 'bar' }, s('title', null, `${row.label} · ${stacks[stack].label}: ${percent ? `${(value * 100).toFixed(1)} %` : value}`)));
      at += w;
    });
    const shown = row.display ?? (percent ? (row.values[0] === null || row.values[0] === undefined ? '–' : `${(row.values[0] * 100).toFixed(1)} %`) : String(total(row)));
    g.appendChild(s('text', { x: at + 6, y: y + rowH / 2 + 4, class: 'bar-value' }, shown));
    svg.appendChild(g);
  });
  if (target !== undefined) {
    const tx = margin.left + target * plotW;
    svg.appendChild(s('line', { x1: tx, x2: tx, y1: margin.top, y2: height - margin.bottom + 4, class: 'target' }));
    svg.appendChild(s('text', { x: tx, y: height - 4, 'text-anchor': 'middle', class: 'tick' }, `${Math.round(target * 100)} %`));
  }
  return svg;
}
