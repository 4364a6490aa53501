// Loaded into every page of the browser test before the dashboard's own script (playwright's
// addInitScript). It records, with the browser's clock, every live event the page receives over
// Server-Sent Events and every change of a watched job's row on the jobs page, so that the test
// measures in the page how long a change takes from its NOTIFY to the DOM. It changes nothing
// the dashboard does: the page's own EventSource is this subclass, with one more listener per
// event type, registered before the page's.
(() => {
  const probe = { sse: [], rows: [], watched: new Set(), observer: null, marker: null };
  window.__probe = probe;

  const Native = window.EventSource;
  if (Native) {
    window.EventSource = class extends Native {
      constructor(url, init) {
        super(url, init);
        for (const type of ['job', 'variant', 'reset']) {
          this.addEventListener(type, (e) => probe.sse.push({ type, at: Date.now(), data: e.data }));
        }
      }
    };
  }

  // A watched row's progress ("planner · running · 1 variant") and status badge, each time they change.
  const last = new Map();
  const look = () => {
    const at = Date.now();
    for (const id of probe.watched) {
      const row = document.getElementById(`job-${id}`);
      if (!row) continue;
      const text = row.querySelector('td.progress .step')?.textContent ?? '';
      const m = /^\s*(\S+)\s*·\s*(\S+)/.exec(text);
      const badge = row.querySelector('td.status .badge')?.textContent.trim() ?? '';
      const key = `${m?.[1]}|${m?.[2]}|${badge}`;
      if (last.get(id) === key) continue;
      last.set(id, key);
      probe.rows.push({ jobId: id, at, step: m?.[1] ?? null, status: m?.[2] ?? null, badge });
    }
  };
  probe.watch = (id) => {
    probe.watched.add(id);
    if (!probe.observer) {
      probe.observer = new MutationObserver(look);
      probe.observer.observe(document.documentElement, { subtree: true, childList: true, characterData: true });
    }
    look();
  };
})();
