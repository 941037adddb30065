/* poolbench HTML report: draws the charts from the embedded data with uPlot.
 *
 * The page marks itself when done, for tests and for anyone scripting a browser:
 * body[data-charts] is the number of charts drawn, body[data-charts-error] a failure,
 * body[data-csp-violations] how many times the page tried something its policy forbids.
 */
(function () {
  "use strict";

  const body = document.body;
  let violations = 0;
  document.addEventListener("securitypolicyviolation", function () {
    violations += 1;
    body.dataset.cspViolations = String(violations);
  });

  const DATA = JSON.parse(document.getElementById("poolbench-data").textContent);
  const HEIGHT = 250;
  const COUNT_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000,
    20000, 50000, 100000, 200000, 500000, 1000000];
  const C = {
    out: "#0969da", outFill: "rgba(9,105,218,0.10)", idle: "#2da44e", overflow: "#d4a72c",
    waiting: "#cf222e", size: "#8c959f", cap: "#1f2328", p99: "#e16f24", p50: "#0969da",
    timeout: "#cf222e", ops: "#8c959f", ok: "#2da44e", okFill: "rgba(45,164,78,0.10)",
    errors: "rgba(207,34,46,0.35)", timeouts: "#a40e26", disconnects: "#8250df", stale: "#8250df",
    phase: "#8c959f", grid: "#eaeef2", axis: "#59636e",
  };
  const STATES = {
    "active": ["#0969da", "#b6d7ff"],
    "idle in transaction": ["#bf8700", "#ffe58f"],
    "idle": ["#2da44e", "#b7ebc4"],
  };
  const MORE_STATES = [["#8250df", "#e0d4fb"], ["#bf3989", "#ffd3eb"], ["#57606a", "#d0d7de"]];

  const fmtCount = (v) => (v == null ? "–" : String(Math.round(v * 100) / 100));
  function fmtMs(v) {
    if (v == null) return "–";
    if (v >= 1000) return (v / 1000).toPrecision(3).replace(/\.?0+$/, "") + " s";
    return (v >= 10 ? v.toFixed(v >= 100 ? 0 : 1) : v.toPrecision(2)) + " ms";
  }
  function fmtSeconds(t, i) {
    const v = t[i == null ? t.length - 1 : i];
    return v == null ? "–" : (i == null ? "end, " : "") + v.toFixed(1) + " s";
  }
  const fmtTick = (v) => (v >= 1000 ? v / 1000 + " s" : v + " ms");
  const constant = (t, v) => t.map(() => v);
  const maxOf = (values) => values.reduce((m, v) => (v != null && v > m ? v : m), 0);
  const minPositive = (values) => values.reduce((m, v) => (v != null && v > 0 && v < m ? v : m),
    Infinity);

  // Each kind returns series ({label, values, raw?, scale, ...style}) and its axes.
  const KINDS = {
    occupancy(run) {
      const s = run.series;
      const list = [
        { label: "checked out", values: s.checked_out, stroke: C.out, fill: C.outFill, width: 2 },
        { label: "idle", values: s.checked_in, stroke: C.idle },
        { label: "overflow", values: s.overflow, stroke: C.overflow },
        { label: "waiting", values: s.waiting, stroke: C.waiting, width: 2 },
      ];
      // The interval's exact peaks (kept at every pool event): a burst between two
      // samples shows here while the instant values above read 0.
      if (s.peak_checked_out) {
        list.push({ label: "checked out, peak", values: s.peak_checked_out, stroke: C.out,
          dash: [2, 3] });
      }
      if (s.peak_waiting) {
        list.push({ label: "waiting, peak", values: s.peak_waiting, stroke: C.waiting,
          dash: [2, 3] });
      }
      // Connections the pool still counts (idle, mostly) that the server already closed.
      if (s.stale) {
        list.push({ label: "stale", values: s.stale, stroke: C.stale, width: 2, dash: [4, 2] });
      }
      if (run.pool_size != null) {
        list.push({ label: "pool_size", values: constant(run.t, run.pool_size),
          stroke: C.size, dash: [6, 4], ref: true });
      }
      if (run.capacity != null) {
        list.push({ label: "pool_size + max_overflow",
          values: constant(run.t, run.capacity), stroke: C.cap, dash: [3, 3], ref: true });
      }
      return { series: list, left: { label: "connections · callers", count: true } };
    },

    wait(run) {
      const s = run.series;
      const positive = (values) => values.map((v) => (v != null && v > 0 ? v : null));
      const list = [];
      if (s.checkout_wait_p50_ms) {
        list.push({ label: "p50", values: positive(s.checkout_wait_p50_ms),
          raw: s.checkout_wait_p50_ms, stroke: C.p50, ms: true });
      }
      list.push({ label: "p99", values: positive(s.checkout_wait_p99_ms),
        raw: s.checkout_wait_p99_ms, stroke: C.p99, width: 2, ms: true });
      if (run.pool_timeout_ms) {
        list.push({ label: "pool_timeout",
          values: constant(run.t, run.pool_timeout_ms), stroke: C.timeout, dash: [6, 4],
          ref: true, ms: true });
      }
      return { series: list, left: { label: "checkout wait (log scale)", log: true } };
    },

    requests(run) {
      const s = run.series;
      const dots = (values) => values.map((v) => (v ? v : null));
      const list = [
        { label: "operations", values: s.operations, stroke: C.ops },
        { label: "ok", values: s.ok, stroke: C.ok, fill: C.okFill, width: 2 },
        { label: "errors", values: dots(s.errors), raw: s.errors, stroke: C.errors, fill: C.errors, scale: "err",
          bars: true },
        { label: "timeouts", values: dots(s.timeouts), raw: s.timeouts, stroke: C.timeouts,
          scale: "err", dots: true },
      ];
      if (s.disconnects) {
        list.push({ label: "disconnects", values: dots(s.disconnects), raw: s.disconnects,
          stroke: C.disconnects, scale: "err", dots: true });
      }
      return { series: list, left: { label: "requests", count: true },
        right: { label: "errors", count: true } };
    },

    server(run) {
      // Stacked areas: each state is drawn as the sum of itself and the states below it,
      // top of the stack first so the lower ones paint over it; the legend shows raw counts.
      const states = run.server_states;
      const sums = [];
      states.forEach((state, k) => {
        sums.push(run.server[state].map((v, i) => (v == null ? null : v + (k ? sums[k - 1][i] : 0))));
      });
      const list = [];
      for (let k = states.length - 1; k >= 0; k--) {
        const [stroke, fill] = STATES[states[k]] || MORE_STATES[k % MORE_STATES.length];
        list.push({ label: states[k], values: sums[k], raw: run.server[states[k]], stroke,
          fill, width: 1 });
      }
      list.push({ label: "total", values: run.server_total, stroke: C.cap, width: 1 });
      // Not in the server's count: the pool holds them, the server has closed them.
      if (run.series.stale) {
        list.push({ label: "stale (pool only)", values: run.series.stale, stroke: C.stale,
          width: 2, dash: [4, 2] });
      }
      if (run.capacity != null) {
        list.push({ label: "pool_size + max_overflow",
          values: constant(run.t, run.capacity), stroke: C.cap, dash: [3, 3], ref: true });
      }
      return { series: list, left: { label: "server connections", count: true } };
    },
  };

  function toSeries(spec) {
    const raw = spec.raw || spec.values;
    const series = {
      label: spec.label,
      scale: spec.scale || "y",
      stroke: spec.stroke,
      width: spec.width || 1.5,
      // Away from the cursor the legend shows the last sample, not a row of dashes.
      value: (u, v, si, i) => (spec.ms ? fmtMs : fmtCount)(raw[i == null ? raw.length - 1 : i]),
    };
    if (spec.fill) series.fill = spec.fill;
    if (spec.dash) series.dash = spec.dash;
    if (spec.ref) {
      series.points = { show: false };
      series.alpha = 0.7;
      series.width = 1.25;
    }
    if (spec.bars) series.paths = uPlot.paths.bars({ size: [0.6, 18] });
    if (spec.bars) series.points = { show: false };
    if (spec.dots) {
      series.paths = () => null;
      series.points = { show: true, size: 9, stroke: spec.stroke, fill: spec.stroke, space: 0 };
    }
    return series;
  }

  function axis(side, opts, scale) {
    const ax = {
      scale, side, label: opts.label, labelSize: 18, labelFont: "12px system-ui, sans-serif",
      font: "11px system-ui, sans-serif", stroke: C.axis, size: 46,
      grid: { stroke: C.grid, width: 1, show: side === 3 }, ticks: { stroke: C.grid, width: 1 },
    };
    if (opts.count) ax.incrs = COUNT_STEPS;
    if (opts.log) {
      ax.size = 58;
      const decade = (v) => Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-6;
      const decades = (u, splits) => splits.map((v) => (decade(v) ? v : null));
      ax.filter = decades;
      ax.grid.filter = decades;
      ax.ticks.filter = decades;
      ax.values = (u, splits) => splits.map((v) => (v == null ? "" : fmtTick(v)));
    }
    return ax;
  }

  function range(specs, scale, log) {
    const values = [];
    specs.forEach((spec) => spec.series.forEach((s) => {
      if ((s.scale || "y") === scale) values.push(...s.values);
    }));
    if (log) {
      // Whole decades, with room above the highest line and at least two decades shown.
      const min = minPositive(values);
      const hi = 10 ** Math.ceil(Math.log10(Math.max(maxOf(values) * 1.5, 1)));
      const lo = Math.min(10 ** Math.floor(Math.log10(min === Infinity ? 1 : min)), hi / 100);
      return [lo, hi];
    }
    const hi = maxOf(values);
    return [0, hi > 0 ? hi * 1.08 : 1];
  }

  // Vertical lines where a phase starts, where a fault struck (solid) and where the first
  // failure of each kind came (dashed), named in a band above the plot (one row per name, so
  // names never cover data or each other).
  const labelRows = (run) => (run.phases.length ? 1 : 0) + run.markers.length;
  const ROWS = Math.max(0, ...DATA.runs.map(labelRows));

  function annotations(run) {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          const px = uPlot.pxRatio;
          const { top, height } = u.bbox;
          const rowY = (row) => top - (ROWS - row) * 15 * px;
          ctx.save();
          ctx.font = `${11 * px}px system-ui, sans-serif`;
          ctx.textBaseline = "top";
          ctx.textAlign = "left";
          let after = -Infinity;  // a short phase's name moves right rather than overlap
          run.phases.forEach((p, i) => {
            const x = u.valToPos(p.t, "x", true);
            if (i > 0) line(ctx, x, top, height, C.phase, [2 * px, 3 * px], px);
            after = label(u, p.name, x, rowY(0), C.phase, px, after + 8 * px);
          });
          run.markers.forEach((m, i) => {
            const x = u.valToPos(m.t, "x", true);
            const dash = m.line === "solid" ? [] : [5 * px, 3 * px];
            line(ctx, x, top, height, m.color, dash, 1.5 * px);
            label(u, m.label, x, rowY(i + (run.phases.length ? 1 : 0)), m.color, px);
          });
          ctx.restore();
        }],
      },
    };
  }

  // Draws text right of the line (left of it when it would run off the plot, and never left
  // of ``from``); returns where the text ends.
  function label(u, text, x, y, color, px, from = -Infinity) {
    const ctx = u.ctx;
    const w = ctx.measureText(text).width;
    let left = x + 4 * px + w > u.bbox.left + u.bbox.width ? x - 4 * px - w : x + 4 * px;
    left = Math.max(left, from);
    ctx.fillStyle = "rgba(255,255,255,0.85)";
    ctx.fillRect(left - 2 * px, y - 1 * px, w + 4 * px, 14 * px);
    ctx.fillStyle = color;
    ctx.fillText(text, left, y);
    return left + w;
  }

  function line(ctx, x, top, height, color, dash, width) {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.setLineDash(dash);
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
  }

  function draw() {
    const charts = [];
    const nodes = Array.from(document.querySelectorAll(".chart[data-kind]"));
    const xmax = Math.max(1e-9, ...DATA.runs.map((r) => maxOf(r.t)));
    // One y range per chart kind across every run, so variants side by side compare by eye.
    const specsByKind = {};
    nodes.forEach((el) => {
      const run = DATA.runs[Number(el.dataset.run)];
      const kind = el.dataset.kind;
      (specsByKind[kind] = specsByKind[kind] || []).push(KINDS[kind](run));
    });
    nodes.forEach((el) => {
      const run = DATA.runs[Number(el.dataset.run)];
      const kind = el.dataset.kind;
      const spec = KINDS[kind](run);
      const all = specsByKind[kind];
      const scales = { x: { time: false, range: () => [0, xmax] } };
      scales.y = spec.left.log
        ? { distr: 3, log: 10, range: () => range(all, "y", true) }
        : { range: () => range(all, "y", false) };
      const axes = [
        { label: "seconds", labelSize: 18, labelFont: "12px system-ui, sans-serif",
          font: "11px system-ui, sans-serif", stroke: C.axis, size: 36,
          grid: { stroke: C.grid, width: 1 }, ticks: { stroke: C.grid, width: 1 } },
        axis(3, spec.left, "y"),
      ];
      if (spec.right) {
        scales.err = { range: () => range(all, "err", false) };
        axes.push(axis(1, spec.right, "err"));
      }
      const opts = {
        width: Math.max(280, el.clientWidth),
        height: HEIGHT,
        scales,
        axes,
        series: [{ label: "t", value: (u, v, si, i) => fmtSeconds(run.t, i) },
          ...spec.series.map(toSeries)],
        legend: { live: true },
        padding: [ROWS ? 6 + 15 * ROWS : null, null, null, null],
        cursor: { points: { size: 7 } },
        plugins: [annotations(run)],
      };
      const data = [run.t, ...spec.series.map((s) => s.values)];
      charts.push({ el, plot: new uPlot(opts, data, el) });
    });
    let pending = 0;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => charts.forEach(({ el, plot }) => {
        plot.setSize({ width: Math.max(280, el.clientWidth), height: HEIGHT });
      }), 100);
    });
    return charts.length;
  }

  try {
    body.dataset.charts = String(draw());
  } catch (err) {
    body.dataset.chartsError = String(err && err.stack ? err.stack : err);
    body.dataset.charts = "0";
  }
})();
