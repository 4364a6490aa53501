// @feedlyai/dashboard: the few lines of script the pages need (docs/dashboard.md, "Live updates").
// Live updates over Server-Sent Events redraw the rows or the job they concern through htmx;
// a `reset` reloads the list. Every time on the pages is UTC, 24-hour, the chart's too (docs/dashboard.md,
// "Times"). The throughput chart is uPlot.
(() => {
  const body = document.body;
  const base = body.dataset.base || '';
  const page = body.dataset.page;

  // A datetime field given an ISO time with a zone (a link's filters): shown in UTC, as the page's times are.
  for (const input of document.querySelectorAll('input[type="datetime-local"][data-value]')) {
    const v = input.dataset.value;
    if (!v || !/(Z|[+-]\d\d:\d\d)$/.test(v)) continue;
    const d = new Date(v);
    if (!Number.isNaN(d.getTime())) input.value = d.toISOString().slice(0, 16);
  }

  // ---- live updates
  const liveEl = document.getElementById('live');
  const setLive = (state, text) => {
    if (!liveEl) return;
    liveEl.dataset.state = state;
    const span = liveEl.querySelector('span');
    if (span) span.textContent = text;
  };

  /** Runs `fn` at most once per `ms`, the last call winning (a burst of events is one redraw). */
  const coalesce = (fn, ms) => {
    let timer = null;
    let again = false;
    let running = false;
    const run = async () => {
      timer = null;
      running = true;
      try {
        await fn();
      } finally {
        running = false;
        if (again) {
          again = false;
          timer = setTimeout(run, ms);
        }
      }
    };
    return () => {
      if (running) again = true;
      else if (!timer) timer = setTimeout(run, ms);
    };
  };

  const swap = (url, target, how) =>
    window.htmx ? window.htmx.ajax('GET', url, { target, swap: how }) : Promise.resolve();

  const rowUpdaters = new Map();
  const refreshRow = (jobId) => {
    const row = document.getElementById(`job-${jobId}`);
    if (!row) return false;
    let update = rowUpdaters.get(jobId);
    if (!update) {
      update = coalesce(() => {
        const current = document.getElementById(`job-${jobId}`);
        return current ? swap(`${base}/jobs/${jobId}/row`, current, 'outerHTML') : Promise.resolve();
      }, 80);
      rowUpdaters.set(jobId, update);
    }
    update();
    return true;
  };
  const reloadList = coalesce(() => {
    const list = document.getElementById('jobs-list');
    return list ? swap(list.dataset.fragment, list, 'outerHTML') : Promise.resolve();
  }, 250);
  const reloadJob = coalesce(() => {
    const live = document.getElementById('job-live');
    return live ? swap(live.dataset.fragment, live, 'innerHTML') : Promise.resolve();
  }, 120);

  const onChange = (e) => {
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      return;
    }
    if (page === 'jobs') {
      if (refreshRow(data.job_id)) return;
      // A job not on this page: on the first page it may be a new one for the list.
      const list = document.getElementById('jobs-list');
      if (list && list.dataset.firstPage === 'yes') reloadList();
    } else if (page === 'job') reloadJob();
  };

  if (body.dataset.events && window.EventSource) {
    const source = new EventSource(body.dataset.events);
    source.addEventListener('open', () => setLive('live', 'live'));
    source.addEventListener('error', () => setLive('reconnecting', 'reconnecting'));
    source.addEventListener('job', onChange);
    source.addEventListener('variant', onChange);
    source.addEventListener('reset', () => {
      if (page === 'jobs') reloadList();
      else if (page === 'job') reloadJob();
    });
    window.addEventListener('pagehide', () => source.close());
  }

  // ---- throughput chart
  const chartEl = document.getElementById('throughput');
  if (chartEl && window.uPlot) {
    let plot = null;
    const totals = document.getElementById('throughput-totals');
    const css = getComputedStyle(document.documentElement);
    const width = () => Math.max(200, chartEl.clientWidth);
    const draw = async () => {
      const res = await fetch(chartEl.dataset.url, { headers: { accept: 'application/json' } });
      if (!res.ok) return;
      const t = await res.json();
      const data = [t.minutes, t.steps, t.failures];
      const sum = (a) => a.reduce((n, x) => n + x, 0);
      if (totals) totals.textContent = ` · last hour: ${sum(t.steps)} steps, ${sum(t.failures)} failures`;
      if (plot) {
        plot.setData(data);
        return;
      }
      plot = new window.uPlot(
        {
          width: width(),
          height: 140,
          legend: { show: false },
          cursor: { y: false },
          scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(4, max)] } },
          // UTC, 24-hour, as the server writes times: ticks on UTC minutes, labelled HH:MM.
          tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
          axes: [
            { size: 28, values: (_u, splits) => splits.map((s) => new Date(s * 1e3).toISOString().slice(11, 16)) },
            { size: 36 },
          ],
          series: [
            {},
            { label: 'steps', stroke: css.getPropertyValue('--done').trim() || '#16a34a', width: 2, fill: '#16a34a14' },
            { label: 'failures', stroke: css.getPropertyValue('--failed').trim() || '#dc2626', width: 2 },
          ],
        },
        data,
        chartEl,
      );
      new ResizeObserver(() => plot.setSize({ width: width(), height: 140 })).observe(chartEl);
    };
    draw().catch(() => {});
    setInterval(() => draw().catch(() => {}), 30000);
  }
})();
