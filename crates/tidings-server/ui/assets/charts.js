// Charts with the vendored Chart.js (window.Chart, from /ui/vendor/chart.umd.js), and the
// time-bucket arithmetic for the insights series, which leave empty buckets out.

export const STEP = { minute: 60, hour: 3600, day: 86400 };

const COLORS = {
  blue: '#3b5bdb', green: '#2b8a3e', red: '#e03131', orange: '#f08c00', grey: '#868e96', violet: '#7048e8',
};

/// The buckets between `from` and `to` for `granularity`, and each bucket's value from a
/// sparse series (`[{t, …}]`), 0 where the series has nothing.
export function fill(series, from, to, granularity, pick) {
  const step = STEP[granularity] || 3600;
  const start = Math.floor(from / step) * step;
  const n = Math.max(1, Math.ceil((to - start) / step));
  const ts = Array.from({ length: n }, (_, i) => start + i * step);
  const values = new Array(n).fill(0);
  for (const p of series || []) {
    const i = Math.floor((p.t - start) / step);
    if (i >= 0 && i < n) values[i] += Number(pick(p)) || 0;
  }
  return { ts, values };
}

export function label(t, granularity) {
  const d = new Date(t * 1000);
  if (granularity === 'day') return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  const hm = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  // Hourly axes name the day only where one starts, so the labels stay short.
  if (granularity === 'hour' && d.getHours() === 0) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return hm;
}

function chartLib() {
  if (!window.Chart) throw new Error('the chart library did not load (/ui/vendor/chart.umd.js)');
  return window.Chart;
}

/// Draws (or redraws) a chart on the canvas with this id.
export function draw(canvas, config) {
  const Chart = chartLib();
  const old = Chart.getChart(canvas);
  if (old) old.destroy();
  return new Chart(canvas, {
    ...config,
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: 'index', intersect: false },
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
      ...config.options,
    },
  });
}

export const color = COLORS;
