// Page script of alloctrace reports and dashboards. Reads the embedded JSON
// (#alloctrace-data), draws every section with ECharts, then checks itself: every chart must
// hold data and have painted pixels, and no script error may have happened. The verdict is
// written to #alloctrace-status (data-state="ok" | "fail") and to document.title, so a headless
// browser can read it from the DOM.
(function () {
  'use strict';

  var errors = [];
  var charts = [];
  var building = true;
  var verified = false;
  var statusEl = document.getElementById('alloctrace-status');

  window.addEventListener('error', function (e) { errors.push('error: ' + (e.message || e)); finish(); });
  window.addEventListener('unhandledrejection', function (e) { errors.push('unhandled rejection: ' + e.reason); finish(); });
  var consoleError = console.error;
  console.error = function () {
    errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return consoleError.apply(console, arguments);
  };

  // ---------- formatting ----------
  var UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  function bytes(b) {
    if (b === null || b === undefined) return 'n/a';
    var v = Number(b), u = 0;
    while (Math.abs(v) >= 1024 && u + 1 < UNITS.length) { v /= 1024; u++; }
    return u === 0 ? Math.round(v) + ' B' : v.toFixed(1) + ' ' + UNITS[u];
  }
  function ns(n) {
    if (n === null || n === undefined) return 'n/a';
    n = Number(n);
    if (n < 1e3) return Math.round(n) + ' ns';
    if (n < 1e6) return (n / 1e3).toFixed(1) + ' µs';
    if (n < 1e9) return (n / 1e6).toFixed(1) + ' ms';
    return (n / 1e9).toFixed(2) + ' s';
  }
  function num(n) {
    if (n === null || n === undefined) return 'n/a';
    n = Number(n);
    if (!isFinite(n)) return String(n);
    return Math.abs(n) >= 1e4 || Number.isInteger(n) ? Math.round(n).toLocaleString('en-US') : n.toFixed(2);
  }
  // Names come from the trace (function names like `operator new<T>`): escape them before
  // they reach tooltip HTML.
  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]; });
  }
  function pct(r) { return (r === null || r === undefined) ? 'n/a' : (100 * r).toFixed(1) + '%'; }
    function log2Low(k) { return k === 0 ? 0 : Math.pow(2, k - 1); }
  function log2Label(k, fmt) { return k === 0 ? fmt(0) : k === 1 ? fmt(1) : fmt(log2Low(k)) + '–' + fmt(Math.pow(2, k) - 1); }

  // ---------- DOM ----------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]); });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return node;
  }
  function section(parent, title, id) {
    var s = el('section', { id: id });
    s.appendChild(el('h2', null, title));
    parent.appendChild(s);
    return s;
  }
  function note(parent, text, cls) { parent.appendChild(el('p', { 'class': cls || 'note' }, text)); }
  function kpis(parent, items) {
    var box = el('div', { 'class': 'kpis' });
    items.forEach(function (it) {
      if (!it) return;
      box.appendChild(el('div', { 'class': 'kpi' }, el('div', { 'class': 'label' }, it[0]), el('div', { 'class': 'value' }, it[1]), it[2] ? el('div', { 'class': 'sub' }, it[2]) : null));
    });
    parent.appendChild(box);
  }
  // columns: [header, fn(row) -> text, isText, extra class, fn(row) -> tooltip]
  function table(parent, columns, rows, id) {
    var wrap = el('div', { 'class': 'table-wrap' });
    var t = el('table', { id: id });
    var head = el('tr');
    columns.forEach(function (c) { head.appendChild(el('th', { 'class': c[2] ? 'text' + (c[3] ? ' ' + c[3] : '') : null }, c[0])); });
    t.appendChild(el('thead', null, head));
    var body = el('tbody');
    rows.forEach(function (r) {
      var tr = el('tr');
      columns.forEach(function (c) { tr.appendChild(el('td', { 'class': c[2] ? 'text' + (c[3] ? ' ' + c[3] : '') : null, title: c[4] ? c[4](r) : null }, String(c[1](r)))); });
      body.appendChild(tr);
    });
    t.appendChild(body);
    wrap.appendChild(t);
    parent.appendChild(wrap);
  }

  // ---------- charts ----------
  var PALETTE = ['#0969da', '#cf222e', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#1b7c83', '#953800', '#57606a', '#6639ba'];
  function baseOption(extra) {
    var o = {
      animation: false,
      color: PALETTE,
      textStyle: { fontFamily: 'system-ui, sans-serif' },
      tooltip: { trigger: 'axis', confine: true },
      legend: { top: 0, type: 'scroll' },
      grid: { left: 80, right: 80, top: 36, bottom: 60 },
      toolbox: { right: 8, top: 0, feature: { dataZoom: { yAxisIndex: 'none' }, restore: {}, saveAsImage: { title: 'save PNG' } } }
    };
    Object.keys(extra).forEach(function (k) { o[k] = extra[k]; });
    return o;
  }
  // Horizontal bars of bytes, one per label, largest first as given (`left`: the label margin).
  function bytesByLabel(parent, id, title, name, left, labels, values, opts) {
    chart(parent, id, title, {
      tooltip: { trigger: 'axis', confine: true, formatter: bytesTooltip },
      grid: { left: left, right: 30, top: 30, bottom: 30 },
      xAxis: bytesAxis,
      yAxis: { type: 'category', inverse: true, data: labels },
      series: [{ name: name, type: 'bar', data: values }]
    }, opts);
  }
  // Bars of bytes allocated and still live per row (threads, processes), labelled by `label`.
  function allocatedAndLive(parent, id, title, rows, label, noteText) {
    chart(parent, id, title, {
      tooltip: { trigger: 'axis', confine: true, formatter: bytesTooltip },
      xAxis: { type: 'category', data: rows.map(label), axisLabel: { rotate: 45 } },
      yAxis: bytesAxis,
      series: [{ name: 'allocated', type: 'bar', data: rows.map(function (x) { return x.alloc_bytes; }) }, { name: 'still live', type: 'bar', data: rows.map(function (x) { return x.live_bytes; }) }]
    }, { note: noteText });
  }
  function chart(parent, id, title, option, opts) {
    opts = opts || {};
    if (Array.isArray(option.series)) option.series = option.series.filter(Boolean);
    var box = el('div', { 'class': 'chart-box' });
    box.appendChild(el('h3', null, title));
    if (opts.note) box.appendChild(el('p', { 'class': 'note' }, opts.note));
    var div = el('div', { 'class': 'chart' + (opts.tall ? ' tall' : ''), id: 'chart-' + id, style: opts.height ? 'height: ' + opts.height + 'px' : null });
    box.appendChild(div);
    parent.appendChild(box);
    var entry = { id: id, el: div, finished: false, chart: null };
    charts.push(entry);
    var c = echarts.init(div, null, { renderer: 'canvas' });
    entry.chart = c;
    c.on('finished', function () {
      if (!entry.finished) { entry.finished = true; finish(); }
    });
    c.setOption(baseOption(option));
    return c;
  }
  var bytesAxis = { type: 'value', axisLabel: { formatter: function (v) { return bytes(v); } } };
  function valueAxis(name, fmt) { return { type: 'value', name: name, axisLabel: { formatter: fmt || function (v) { return num(v); } } }; }
  // x values are seconds since the trace start; labels pick the unit that fits.
  var timeAxis = { type: 'value', axisLabel: { formatter: function (v) { return ns(v * 1e9); } }, min: 'dataMin', max: 'dataMax' };

  // ---------- over-time x axis: wall time or allocation progress ----------
  // Tracing slows each runtime by its own factor, so wall time compares tracer speed as much as
  // runtime behaviour; allocation progress puts the same work at the same x. Progress is the
  // allocations so far, or work units when the workload reports them (estimated as allocations
  // so far × work units ÷ all allocations: the suite's workloads allocate evenly per unit).
  // Over-time charts are built by a function that reads the current axis `X`, so switching the
  // axis rebuilds them. X.at(seconds) maps a time to the axis, X.b(bucket) a timeline bucket's
  // end; the dashboard's X.run(run) gives one such mapping per run.
  var X = null, xModes = null, timeCharts = [];
  function progressMap(allocCounts, widthS, units) {
    var cum = [], total = 0;
    allocCounts.forEach(function (c) { total += c; cum.push(total); });
    var scale = units && total ? units / total : 1, n = cum.length;
    return {
      total: total,
      b: function (b) { return cum[Math.min(Math.max(b, 0), n - 1)] * scale; },
      at: function (t) {
        var b = Math.min(Math.max(Math.floor(t / widthS), 0), n - 1);
        var prev = b > 0 ? cum[b - 1] : 0, frac = Math.min(Math.max(t / widthS - b, 0), 1);
        return (prev + frac * (cum[b] - prev)) * scale;
      }
    };
  }
  function progressAxis(units) {
    return { type: 'value', name: units ? 'work units' : 'allocations', nameLocation: 'end', nameGap: 6, min: 0, max: 'dataMax', axisLabel: { formatter: function (v) { return num(v); } } };
  }
  function timeChart(parent, id, title, build, opts) {
    var c = chart(parent, id, title, build(), opts);
    var entry = charts[charts.length - 1];
    entry.build = build;
    timeCharts.push(entry);
    return c;
  }
  function setXMode(mode) {
    X = xModes[mode];
    var box = document.getElementById('xswitch');
    if (box) box.setAttribute('data-x', mode);
    timeCharts.forEach(function (e) {
      var o = e.build();
      if (Array.isArray(o.series)) o.series = o.series.filter(Boolean);
      e.chart.setOption(baseOption(o), true);
    });
  }
  // The switch above the over-time charts; `modes` maps 'time' / 'progress' to an axis (no
  // progress for a trace without allocations). `#x=time` or `#x=progress` in the URL picks the
  // starting axis.
  function xSwitch(parent, modes, fallback, what) {
    xModes = modes;
    var wanted = (/[#&]x=(time|progress)/.exec(location.hash) || [])[1];
    var mode = modes[wanted] ? wanted : fallback;
    X = modes[mode];
    if (!modes.progress) return;
    var box = el('div', { 'class': 'xswitch', id: 'xswitch', 'data-x': mode }, 'x axis of the over-time charts: ');
    [['time', 'wall time'], ['progress', what]].forEach(function (m) {
      var input = el('input', { type: 'radio', name: 'xmode', value: m[0], id: 'xmode-' + m[0] });
      input.checked = m[0] === mode;
      input.addEventListener('change', function () { if (input.checked) setXMode(m[0]); });
      box.appendChild(el('label', { 'for': 'xmode-' + m[0] }, input, ' ' + m[1]));
    });
    parent.appendChild(box);
  }
  function zoomX() { return [{ type: 'inside', xAxisIndex: 0 }, { type: 'slider', xAxisIndex: 0, height: 16, bottom: 8 }]; }
  function line(name, data, extra) {
    var s = { name: name, type: 'line', showSymbol: false, data: data, sampling: 'lttb' };
    if (extra) Object.keys(extra).forEach(function (k) { s[k] = extra[k]; });
    return s;
  }
  function bytesTooltip(params) {
    return params.map(function (p) { return p.marker + esc(p.seriesName) + ': ' + bytes(Array.isArray(p.value) ? p.value[1] : p.value); }).join('<br>');
  }
  function nonZero(series) { return series.some(function (v) { return Number(v) !== 0; }); }
  // Trim a log2 histogram to its non-empty range.
  function histRange(counts) {
    var first = counts.findIndex(function (c) { return c > 0; });
    if (first < 0) return null;
    var last = counts.length - 1;
    while (last > first && counts[last] === 0) last--;
    return [first, last];
  }

  // ---------- flame graphs ----------
  // An icicle flame graph drawn with a custom series: the root (every stack) on top, callees
  // below their callers, widths proportional to bytes. Click a frame to zoom into it, click
  // the root (or "restore") to zoom out.
  function flameColor(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return 'hsl(' + (10 + h % 40) + ', ' + (70 + h % 20) + '%, ' + (55 + (h >> 8) % 15) + '%)';
  }
  function flameRows(root) {
    var rows = [], depth = 0;
    (function walk(node, level, start) {
      rows.push({ name: node.n, value: [level, start, start + node.v, node.n, node.v], itemStyle: { color: level === 0 ? '#8c959f' : flameColor(node.n) } });
      if (level > depth) depth = level;
      var x = start;
      (node.c || []).forEach(function (c) { walk(c, level + 1, x); x += c.v; });
    })(root, 0, 0);
    return { rows: rows, depth: depth + 1, total: root.v };
  }
  function flameChart(parent, id, title, root) {
    var f = flameRows(root);
    var height = Math.min(Math.max(f.depth * 18 + 50, 160), 1400);
    var renderItem = function (params, api) {
      var level = api.value(0);
      var a = api.coord([api.value(1), level]), b = api.coord([api.value(2), level + 1]);
      var x = Math.max(a[0], params.coordSys.x), x2 = Math.min(b[0], params.coordSys.x + params.coordSys.width);
      var width = x2 - x;
      if (width <= 0) return null;
      return {
        type: 'rect',
        shape: { x: x, y: Math.min(a[1], b[1]), width: Math.max(width - 0.5, 0.5), height: Math.abs(b[1] - a[1]) - 1 },
        style: { fill: api.visual('color') },
        textConfig: { position: 'insideLeft' },
        textContent: { style: { text: api.value(3), fontSize: 11, fill: '#1f2328', width: Math.max(width - 6, 0), overflow: 'truncate' }, ignore: width < 24 }
      };
    };
    var c = chart(parent, id, title, {
      tooltip: { trigger: 'item', confine: true, formatter: function (p) { return esc(p.value[3]) + '<br>' + bytes(p.value[4]) + ' (' + pct(p.value[4] / (f.total || 1)) + ' of all)'; } },
      legend: { show: false },
      grid: { left: 8, right: 8, top: 32, bottom: 8 },
      toolbox: { right: 8, top: 0, feature: { restore: {}, saveAsImage: { title: 'save PNG' } } },
      xAxis: { type: 'value', show: false, min: 0, max: f.total },
      yAxis: { type: 'value', show: false, min: 0, max: f.depth, inverse: true },
      series: [{ type: 'custom', name: title, renderItem: renderItem, encode: { x: [1, 2], y: 0, tooltip: 4 }, data: f.rows }]
    }, { height: height, note: 'Callers above callees, width = bytes; click a frame to zoom into it.' });
    c.on('click', function (p) {
      if (!p.value) return;
      var zoomOut = p.value[0] === 0;
      c.setOption({ xAxis: { min: zoomOut ? 0 : p.value[1], max: zoomOut ? f.total : p.value[2] } });
    });
    return c;
  }

  // ---------- report ----------
  function renderReport(app, data) {
    var r = data.report, s = data.summary, t = r.trace, tl = r.timeline, axis = tl.axis || { start_ns: 0, width_ns: 1, count: tl.live_bytes.length };
    var widthS = Math.max(axis.width_ns / 1e9, 1e-9);
    var bucketEnd = function (b) { return (b + 1) * widthS; };
    var progress = progressMap(tl.alloc_count, widthS, t.work_units);
    var modes = { time: { mode: 'time', axis: timeAxis, at: function (sec) { return sec; }, b: bucketEnd } };
    if (progress.total > 0) modes.progress = { mode: 'progress', axis: progressAxis(t.work_units), at: progress.at, b: progress.b };
    var xy = function (series) { return series.map(function (v, b) { return [X.b(b), v]; }); };

    app.appendChild(el('h1', null, 'alloctrace report: ' + t.label));
    note(app, (t.command && t.command.length ? t.command.join(' ') : t.exe) + ' · ' + t.mode + ' · ' + t.status + ' · pids ' + t.pids.join(', ') + ' · ' + num(t.rows) + ' rows in ' + t.segments + ' segments over ' + ns(t.duration_ns), 'meta');
    if (t.lost_total > 0) note(app, 'The tracer lost ' + num(t.lost_total) + ' rows: live bytes and leaks may be off by the lost frees and allocations.', 'warn');
    (t.warnings || []).forEach(function (w) { note(app, w, 'warn'); });
    var resident = t.footprint_resident;
    if (!resident) note(app, 'No resident-memory samples in this trace (recorded before rss sampling existed, or without the rss category): footprint is mapped address space only, which counts reserved pages that were never touched.', 'warn');
    var fpName = resident ? 'footprint (resident heap)' : 'footprint (mapped only)';
    kpis(app, [
      ['peak live', bytes(s.peak_live_bytes), num(s.peak_live_blocks) + ' blocks at ' + ns(s.peak_live_t_ns)],
      resident ? ['peak resident (RSS)', bytes(s.peak_resident_bytes), 'at ' + ns(s.peak_resident_ns)] : null,
      ['peak ' + fpName, bytes(s.peak_footprint_bytes), 'at ' + ns(s.peak_footprint_t_ns)],
      [fpName + ' / live at peak', s.footprint_over_live_at_peak ? s.footprint_over_live_at_peak.toFixed(2) + '×' : 'n/a'],
      resident && s.peak_mapped_footprint_bytes ? ['peak mapped footprint', bytes(s.peak_mapped_footprint_bytes), 'virtual: brk + anon RW maps, touched or not'] : null,
      ['allocations', num(s.allocations), bytes(s.bytes_allocated) + ' requested'],
      ['frees · reallocs', num(s.frees) + ' · ' + num(s.reallocs), num(s.failed_allocations) + ' failed'],
      ['still live at end', bytes(s.leaked_bytes), num(s.leaked_blocks) + ' blocks'],
      ['temporary allocations', pct(s.temporary_ratio), num(s.temporary_allocations) + ' freed before any other allocation'],
      ['external fragmentation (end)', s.frag_index_end.toFixed(2), bytes(s.free_gap_bytes_end) + ' in ' + num(s.gaps_end) + ' gaps'],
      ['internal waste', pct(s.internal_waste_ratio), bytes(s.internal_waste_bytes) + ' of rounding'],
      (s.gc_cycles || s.stw_pauses) ? ['GC', num(s.gc_cycles) + ' cycles', ns(s.stw_total_ns) + ' stopped in ' + num(s.stw_pauses) + ' pauses'] : null,
      (s.gc_cpu_share !== null && s.gc_cpu_share !== undefined) ? ['GC CPU share', pct(s.gc_cpu_share), s.gc_cpu_share_source] : null,
      s.per_work_unit ? ['per work unit', num(s.per_work_unit.allocations) + ' allocs', bytes(s.per_work_unit.bytes_allocated) + ' requested · ' + num(s.work_units) + ' units'] : null
    ]);

    xSwitch(app, modes, 'time', t.work_units ? 'work units (estimated from allocations so far)' : 'allocations so far');

    // Timeline
    var sec = section(app, 'Timeline', 'timeline');
    var gcCount = r.gc.cycles.length;
    timeChart(sec, 'memory', 'Memory over time', function () {
      var gcAreas = r.gc.cycles.map(function (c) { return [{ xAxis: X.at(c.start_ns / 1e9), name: c.label }, { xAxis: X.at(Math.max(c.end_ns, c.start_ns + 1) / 1e9) }]; });
      var stwLines = r.gc.stw.map(function (p) { return { xAxis: X.at(p.start_ns / 1e9), name: p.label }; });
      var memSeries = [
        line('live bytes', xy(tl.live_bytes), {
          markArea: gcAreas.length ? { silent: true, itemStyle: { color: 'rgba(154,103,0,0.12)' }, label: { show: false }, data: gcAreas } : undefined,
          markLine: stwLines.length ? { silent: true, symbol: 'none', label: { show: false }, lineStyle: { color: '#cf222e', width: 1, type: 'solid', opacity: 0.5 }, data: stwLines } : undefined
        }),
        line(resident ? 'footprint: resident heap (brk + anon RW)' : 'footprint: mapped (brk + anon RW maps)', xy(tl.footprint))
      ];
      if (resident && nonZero(tl.mapped_footprint)) memSeries.push(line('mapped footprint (virtual)', xy(tl.mapped_footprint), { lineStyle: { type: 'dotted' } }));
      if (resident && nonZero(tl.resident)) memSeries.push(line('resident set (RSS)', xy(tl.resident)));
      if (nonZero(tl.arena_bytes)) memSeries.push(line('pymalloc arenas', xy(tl.arena_bytes)));
      if (nonZero(tl.go_live)) memSeries.push(line('Go heap (live)', xy(tl.go_live)));
      if (nonZero(tl.go_heap_goal)) memSeries.push(line('Go heap goal', xy(tl.go_heap_goal), { lineStyle: { type: 'dashed' } }));
      return {
        tooltip: { trigger: 'axis', confine: true, formatter: bytesTooltip },
        xAxis: X.axis, yAxis: bytesAxis, dataZoom: zoomX(), series: memSeries
      };
    }, { tall: true, note: gcCount ? 'Shaded: GC cycles (the ' + gcCount + ' longest); red lines: stop-the-world pauses.' : null });
    var grid = el('div', { 'class': 'grid2' });
    sec.appendChild(grid);
    if (nonZero(tl.live_blocks)) timeChart(grid, 'blocks', 'Live blocks', function () { return { xAxis: X.axis, yAxis: valueAxis('blocks'), dataZoom: zoomX(), series: [line('live blocks', xy(tl.live_blocks))] }; });
    else note(grid, 'No native or Python block was ever live (Go objects are not tracked one by one).');
    timeChart(grid, 'rates', 'Allocation and free rates', function () {
      return {
        xAxis: X.axis, yAxis: valueAxis('per s'), dataZoom: zoomX(),
        series: [line('allocations/s', tl.alloc_count.map(function (c, b) { return [X.b(b), c / widthS]; })), line('frees/s', tl.free_count.map(function (c, b) { return [X.b(b), c / widthS]; }))]
      };
    });
    var hasGcTime = nonZero(tl.gc_ns) || nonZero(tl.stw_ns);
    if (hasGcTime) {
      timeChart(sec, 'gc-time', 'Time in GC per bucket', function () {
        return {
          tooltip: { trigger: 'axis', confine: true, valueFormatter: function (v) { return ns(v); } },
          xAxis: X.axis, yAxis: valueAxis('ns', function (v) { return ns(v); }), dataZoom: zoomX(),
          series: [{ name: 'GC cycles', type: 'bar', data: xy(tl.gc_ns), barMaxWidth: 6 }, { name: 'stop-the-world', type: 'bar', data: xy(tl.stw_ns), barMaxWidth: 6 }]
        };
      });
    }

    // Fragmentation
    var goGc = r.gc.runtimes.filter(function (g) { return g.runtime === 'go'; })[0];
    var goHeap = goGc ? goGc.heap_series : [];
    sec = section(app, 'Fragmentation', 'fragmentation');
    var liveFloor = Math.max.apply(null, tl.live_bytes.concat([0])) / 100;
    timeChart(sec, 'footprint-vs-live', '(a) Footprint versus live bytes', function () { return {
      tooltip: { trigger: 'axis', confine: true },
      xAxis: X.axis,
      yAxis: [bytesAxis, valueAxis('footprint / live', function (v) { return Number(v).toFixed(1) + '×'; })],
      dataZoom: zoomX(),
      series: [
        line(fpName, xy(tl.footprint), { areaStyle: { opacity: 0.08 } }),
        line('live bytes', xy(tl.live_bytes)),
        resident && nonZero(tl.mapped_footprint) ? line('mapped footprint (virtual)', xy(tl.mapped_footprint), { lineStyle: { type: 'dotted' } }) : null,
        // The ratio is left out while live bytes are under 1% of their peak: at start-up a few
        // bytes live in a fresh heap make it huge and flatten the rest of the curve.
        line('footprint / live', tl.footprint.map(function (f, b) { var l = tl.live_bytes[b]; return [X.b(b), l > 0 && l >= liveFloor ? f / l : null]; }), { yAxisIndex: 1, lineStyle: { type: 'dashed' }, connectNulls: false })
      ]
    }; }, { note: (resident ? 'Footprint: resident bytes of the brk heap and anonymous writable mappings' + (t.rss_interval_ns ? ' (sampled every ' + ns(t.rss_interval_ns) + ')' : '') + '; the mapped footprint, address space reserved whether touched or not, is the dotted line.' : 'Footprint: mapped bytes of the brk heap and anonymous writable mappings (no resident samples in this trace).') + ' The gap between footprint and live bytes is allocator overhead, free space and unused memory.' });
    var occ = r.occupancy.samples.filter(function (x) { return x.regions > 0; });
    if (occ.length) {
      var ox = function (f) { return occ.map(function (x) { return [X.at(x.t_ns / 1e9), f(x)]; }); };
      grid = el('div', { 'class': 'grid2' });
      sec.appendChild(grid);
      timeChart(grid, 'gaps', '(b) Free gaps between live blocks', function () { return {
        tooltip: { trigger: 'axis', confine: true, formatter: bytesTooltip },
        xAxis: X.axis, yAxis: bytesAxis, dataZoom: zoomX(),
        series: [line('free bytes in gaps', ox(function (x) { return x.free_bytes; }), { showSymbol: occ.length < 40 }), line('largest gap', ox(function (x) { return x.largest_gap; }), { showSymbol: occ.length < 40 }), line('headers/alignment (< 32 B gaps)', ox(function (x) { return x.overhead_bytes; }), { showSymbol: occ.length < 40 })]
      }; }, { note: 'Inside each heap region (brk heap, anonymous writable mappings holding a live block), sampled ' + occ.length + ' times.' });
      timeChart(grid, 'frag-index', '(b) External fragmentation index and empty pages', function () { return {
        xAxis: X.axis,
        yAxis: [{ type: 'value', name: 'index', min: 0, max: 1 }, valueAxis('pages')],
        dataZoom: zoomX(),
        series: [line('1 − largest gap / free', ox(function (x) { return x.frag_index; }), { showSymbol: occ.length < 40 }), line('empty 4 KiB pages', ox(function (x) { return x.empty_pages; }), { yAxisIndex: 1, showSymbol: occ.length < 40 })]
      }; });
      var last = r.occupancy.last;
      if (last) note(sec, 'At the end: ' + num(last.regions) + ' regions, ' + bytes(last.region_bytes) + ' mapped, ' + bytes(last.used_bytes) + ' in live blocks, ' + bytes(last.free_bytes) + ' free in ' + num(last.gaps) + ' gaps (largest ' + bytes(last.largest_gap) + '), ' + num(last.empty_pages) + ' empty pages' + (last.outside_bytes ? ', ' + bytes(last.outside_bytes) + ' live outside any known region' : '') + '.');
    } else {
      note(sec, '(b) No heap region with live blocks was seen (no brk/mmap rows, or no native/Python blocks): address-space occupancy is not available' + (goHeap.length ? '. Go objects are freed in bulk by the sweeper, unseen one by one: Go\'s own account of its heap is in (d) below.' : '.'));
    }
    var inr = r.internal;
    grid = el('div', { 'class': 'grid2' });
    sec.appendChild(grid);
    if (nonZero(inr.live_waste)) {
      timeChart(grid, 'internal-live', '(c) Internal waste in live blocks', function () { return {
        tooltip: { trigger: 'axis', confine: true, formatter: bytesTooltip },
        xAxis: X.axis, yAxis: bytesAxis, dataZoom: zoomX(), series: [line('usable − requested', xy(inr.live_waste), { areaStyle: { opacity: 0.1 } })]
      }; });
    }
    if (inr.classes.length) {
      var cls = inr.classes.slice(0, 20);
      bytesByLabel(grid, 'internal-classes', '(c) Waste by size class', 'waste', 120, cls.map(function (c) { return c.allocator + ' ' + bytes(c.class_bytes); }), cls.map(function (c) { return c.waste_bytes; }), { note: 'Estimated: glibc chunk rounding, pymalloc 16-byte classes, Go size classes (see docs/metrics.md). Total waste ' + bytes(inr.waste_bytes) + ' (' + pct(inr.waste_ratio) + ' of usable bytes).' });
      table(sec, [['allocator', function (c) { return c.allocator; }, true], ['class', function (c) { return bytes(c.class_bytes); }], ['allocations', function (c) { return num(c.count); }], ['requested', function (c) { return bytes(c.requested_bytes); }], ['usable', function (c) { return bytes(c.usable_bytes); }], ['waste', function (c) { return bytes(c.waste_bytes); }], ['waste %', function (c) { return pct(c.usable_bytes ? c.waste_bytes / c.usable_bytes : 0); }]], inr.classes, 'table-classes');
    }
    if (goHeap.length) {
      var gx = function (f) { return goHeap.map(function (p) { return [X.at(p.t_ns / 1e9), f(p)]; }); };
      var sym = goHeap.length < 40;
      grid = el('div', { 'class': 'grid2' });
      sec.appendChild(grid);
      timeChart(grid, 'go-heap', "(d) Go heap at each cycle end (the runtime's own span accounting)", function () { return {
        tooltip: { trigger: 'axis', confine: true, formatter: bytesTooltip },
        xAxis: X.axis, yAxis: bytesAxis, dataZoom: zoomX(),
        series: [
          line('in-use spans (heap_inuse)', gx(function (p) { return p.inuse; }), { showSymbol: sym }),
          line('marked live (heap_live)', gx(function (p) { return p.heap_live; }), { showSymbol: sym }),
          line('free spans (heap_idle)', gx(function (p) { return p.idle; }), { showSymbol: sym }),
          line('returned to the OS (heap_released)', gx(function (p) { return p.released; }), { showSymbol: sym, lineStyle: { type: 'dashed' } }),
          line('stack spans (stack_inuse)', gx(function (p) { return p.stacks; }), { showSymbol: sym })
        ]
      }; }, { note: 'Read from the Go runtime at the end of each GC cycle (gcController.heapInUse/heapFree/heapReleased, memstats.heapStats): runtime.MemStats HeapInuse, HeapIdle, HeapReleased, StackInuse.' });
      timeChart(grid, 'go-frag', '(d) Go span fragmentation and retained free memory', function () { return {
        tooltip: { trigger: 'axis', confine: true, formatter: bytesTooltip },
        xAxis: X.axis, yAxis: bytesAxis, dataZoom: zoomX(),
        series: [
          line('span fragmentation (heap_inuse − heap_live)', gx(function (p) { return p.heap_live === null ? null : Math.max(p.inuse - p.heap_live, 0); }), { showSymbol: sym, areaStyle: { opacity: 0.08 } }),
          line('retained free (heap_idle − heap_released)', gx(function (p) { return Math.max(p.idle - p.released, 0); }), { showSymbol: sym })
        ]
      }; }, { note: "Go's counterpart of the gap view: bytes of in-use spans not holding marked objects (free slots in partly used spans, and objects allocated since the mark), and free spans the runtime keeps mapped instead of returning them." });
      if (s.go_span_frag_bytes_end !== null && s.go_heap_inuse_end) note(sec, 'Go at its last cycle end: ' + bytes(s.go_heap_inuse_end) + ' in in-use spans, ' + bytes(s.go_span_frag_bytes_end) + ' of them not marked live (' + pct(s.go_span_frag_bytes_end / s.go_heap_inuse_end) + '); ' + bytes(s.go_retained_free_bytes_end) + ' of free spans retained, ' + bytes(s.go_heap_released_end) + ' returned to the OS; ' + bytes(s.go_stack_inuse_end) + ' of stacks.');
    }
    // Patterns
    sec = section(app, 'Allocation patterns', 'patterns');
    var sz = r.sizes, hr = histRange(sz.histogram.counts);
    grid = el('div', { 'class': 'grid2' });
    sec.appendChild(grid);
    if (hr) {
      var ks = []; for (var k = hr[0]; k <= hr[1]; k++) ks.push(k);
      chart(grid, 'sizes', 'Request sizes (log2 buckets)', {
        xAxis: { type: 'category', data: ks.map(function (k) { return log2Label(k, bytes); }), axisLabel: { rotate: 45 } },
        yAxis: [valueAxis('allocations'), bytesAxis],
        series: [{ name: 'allocations', type: 'bar', data: ks.map(function (k) { return sz.histogram.counts[k]; }) }, { name: 'bytes', type: 'bar', yAxisIndex: 1, data: ks.map(function (k) { return sz.histogram.sums[k]; }) }]
      }, { note: num(sz.allocations) + ' allocations, mean ' + bytes(sz.mean) + ', largest ' + bytes(sz.largest) + '.' });
    }
    if (sz.top.length) {
      chart(grid, 'top-sizes', 'Most frequent sizes' + (sz.top_exact ? '' : ' (approximate)'), {
        grid: { left: 90, right: 30, top: 30, bottom: 30 },
        xAxis: valueAxis('allocations'),
        yAxis: { type: 'category', inverse: true, data: sz.top.slice(0, 20).map(function (x) { return bytes(x.size); }) },
        series: [{ name: 'allocations', type: 'bar', data: sz.top.slice(0, 20).map(function (x) { return x.count; }) }]
      });
    }
    var lf = r.lifetimes;
    grid = el('div', { 'class': 'grid2' });
    sec.appendChild(grid);
    var lr = histRange(lf.wall_ns.counts);
    if (lr) {
      var lk = []; for (k = lr[0]; k <= lr[1]; k++) lk.push(k);
      chart(grid, 'lifetimes', 'Lifetimes (wall time)', {
        xAxis: { type: 'category', data: lk.map(function (k) { return '≥ ' + ns(log2Low(k)); }), axisLabel: { rotate: 45 } },
        yAxis: valueAxis('allocations'),
        series: [{ name: 'freed allocations', type: 'bar', data: lk.map(function (k) { return lf.wall_ns.counts[k]; }) }]
      }, { note: 'Median ≥ ' + ns(lf.p50_ns) + ', p90 ≥ ' + ns(lf.p90_ns) + ', p99 ≥ ' + ns(lf.p99_ns) + ' (log2 bucket lower bounds).' });
    }
    var br = histRange(lf.allocs_between.counts);
    if (br) {
      var bk = []; for (k = br[0]; k <= br[1]; k++) bk.push(k);
      chart(grid, 'between', 'Lifetimes (allocations in between)', {
        xAxis: { type: 'category', data: bk.map(function (k) { return log2Label(k, num); }), axisLabel: { rotate: 45 } },
        yAxis: valueAxis('allocations'),
        series: [{ name: 'freed allocations', type: 'bar', data: bk.map(function (k) { return lf.allocs_between.counts[k]; }) }]
      });
    }
    if (!lr) note(sec, 'No allocation was freed during the trace: no lifetimes.');
    note(sec, 'Temporary allocations (freed before the process made any other allocation): ' + num(lf.temporary.count) + ' (' + pct(lf.temporary_ratio) + ' of allocations, ' + bytes(lf.temporary.bytes) + '). Short-lived (under ' + ns(lf.short_lived_ns) + '): ' + num(lf.short_lived.count) + '.');
    if (lf.temporary_funcs.length) table(sec, [['function', function (f) { return f.func; }, true], ['temporary allocations', function (f) { return num(f.count); }], ['bytes', function (f) { return bytes(f.bytes); }]], lf.temporary_funcs, 'table-temporary');

    // Reallocs
    var ra = r.reallocs;
    if (ra.count > 0) {
      var sub = el('div');
      sec.appendChild(sub);
      sub.appendChild(el('h3', null, 'realloc'));
      note(sub, num(ra.count) + ' reallocs: ' + num(ra.in_place) + ' in place, ' + num(ra.moved) + ' moved (' + bytes(ra.bytes_copied) + ' copied); ' + num(ra.grew) + ' grew, ' + num(ra.shrank) + ' shrank; ' + num(ra.chains) + ' chains.');
      if (ra.chain_lengths.some(function (c) { return c > 0; })) {
        var cl = ra.chain_lengths.map(function (c, n) { return [n, c]; }).filter(function (x) { return x[0] > 0; });
        chart(sub, 'chains', 'realloc chain lengths', {
          xAxis: { type: 'category', data: cl.map(function (x) { return x[0] === 64 ? '≥ 64' : String(x[0]); }), name: 'reallocs' },
          yAxis: valueAxis('chains'),
          series: [{ name: 'chains', type: 'bar', data: cl.map(function (x) { return x[1]; }) }]
        });
      }
      if (ra.longest.length) table(sub, [['pid', function (c) { return c.pid; }], ['reallocs', function (c) { return c.reallocs; }], ['first size', function (c) { return bytes(c.first_size); }], ['last size', function (c) { return bytes(c.last_size); }], ['function', function (c) { return c.func; }, true], ['stack', function (c) { return c.stack_id === null ? '' : c.stack_id; }], ['from', function (c) { return ns(c.start_ns); }], ['to', function (c) { return c.end_ns === null ? 'still live' : ns(c.end_ns); }]], ra.longest, 'table-chains');
    }

    // Processes: the tree's breakdown (processes.parquet), shown when there is more than one.
    var procs = (r.processes || []).slice().sort(function (a, b) { return b.alloc_bytes - a.alloc_bytes || a.pid - b.pid; });
    if (procs.length > 1) {
      var psub = el('div');
      sec.appendChild(psub);
      psub.appendChild(el('h3', null, 'Processes'));
      var program = function (p) {
        var exe = p.exe ? p.exe.split('/').pop() : '?';
        return p.argv.length > 1 ? exe + ' ' + p.argv.slice(1).join(' ') : exe;
      };
      var ended = function (p) {
        if (p.exit_code !== null) return 'exit ' + p.exit_code;
        if (p.exit_signal !== null) return 'signal ' + p.exit_signal;
        return p.end_ns !== null ? 'ended' : 'running';
      };
      var since = function (t) { return t === null ? 'n/a' : ns(Math.max(0, t - r.trace.start_ns)); };
      allocatedAndLive(psub, 'processes', 'Bytes allocated and still live per process', procs.slice(0, 30), function (p) { return p.pid + ' ' + (p.exe ? p.exe.split('/').pop() : '?'); },
        num(procs.length) + ' processes (processes.parquet); `alloctrace report --pid PID` focuses on one.');
      table(psub, [['pid', function (p) { return p.pid; }], ['parent', function (p) { return p.ppid === null ? '' : p.ppid; }], ['program', program, true, null, function (p) { return p.argv.join(' ') || p.exe || ''; }], ['runtime', function (p) { return p.runtime || ''; }], ['started', function (p) { return since(p.start_ns); }], ['ran', function (p) { return p.start_ns === null || p.end_ns === null ? 'n/a' : ns(p.end_ns - p.start_ns); }], ['end', ended, true], ['rows', function (p) { return num(p.events); }], ['blocks made', function (p) { return num(p.allocs); }], ['bytes', function (p) { return bytes(p.alloc_bytes); }], ['blocks ended', function (p) { return num(p.frees); }], ['still live', function (p) { return bytes(p.live_bytes); }]], procs, 'table-processes');
    }

    // Threads
    var th = r.threads;
    if (th.rows.length) {
      var tsub = el('div');
      sec.appendChild(tsub);
      tsub.appendChild(el('h3', null, 'Threads'));
      var trows = th.rows.slice(0, 30);
      allocatedAndLive(tsub, 'threads', 'Bytes allocated and still live per thread', trows, function (x) { return x.pid + '/' + x.tid; },
        num(th.threads) + ' threads; ' + num(th.cross_thread_frees) + ' frees of blocks allocated by another thread.');
      table(tsub, [['pid', function (x) { return x.pid; }], ['tid', function (x) { return x.tid; }], ['blocks made', function (x) { return num(x.allocs); }], ['bytes', function (x) { return bytes(x.alloc_bytes); }], ['blocks ended', function (x) { return num(x.frees); }], ['bytes', function (x) { return bytes(x.freed_bytes); }], ['still live', function (x) { return bytes(x.live_bytes); }], ['cross-thread frees', function (x) { return num(x.cross_thread_frees); }]], th.rows, 'table-threads');
    }

    // Call sites
    var cs = r.callsites;
    var csub = el('div');
    sec.appendChild(csub);
    csub.appendChild(el('h3', null, 'Call sites'));
    if (cs.note) note(csub, cs.note, 'warn');
    if (cs.available && cs.symbolized) {
      note(csub, 'Where the program allocated: the first frame outside the allocator and the standard library, with its callers. Frames that could not be resolved show as module+offset with their status (see frames.parquet).');
      // The callers of the site, a few deep; the whole stack is the cell's tooltip.
      var callers = function (x) {
        var from = x.site_frame === null || x.site_frame === undefined ? 0 : x.site_frame + 1;
        var shown = x.frames.slice(from, from + 5);
        return shown.join(' ← ') + (x.frames.length > from + 5 ? ' ← …' : '');
      };
      var whole = function (x) { return x.frames.join('\n'); };
      table(csub, [['call site', function (x) { return x.site || ('stack ' + x.stack_id); }, true, 'site', whole], ['allocations', function (x) { return num(x.allocs); }], ['bytes', function (x) { return bytes(x.bytes); }], ['still live', function (x) { return bytes(x.live_bytes); }], ['at peak', function (x) { return bytes(x.peak_bytes); }], ['temporary', function (x) { return num(x.temporary); }], ['called from', callers, true, 'callers', whole]], cs.sites, 'table-sites');
      var fgrid = el('div');
      csub.appendChild(fgrid);
      if (cs.flame_alloc) flameChart(fgrid, 'flame-alloc', 'Flame graph: bytes allocated', cs.flame_alloc);
      if (cs.flame_peak) flameChart(fgrid, 'flame-peak', 'Flame graph: bytes live at the peak', cs.flame_peak);
      else note(fgrid, 'No block with a stack was live at the peak.');
    } else if (cs.available) {
      note(csub, 'Stacks are shown by id: run `alloctrace symbolize` on the trace for function names, source lines and flame graphs.');
      table(csub, [['stack', function (x) { return x.stack_id; }], ['allocations', function (x) { return num(x.allocs); }], ['bytes', function (x) { return bytes(x.bytes); }], ['still live', function (x) { return bytes(x.live_bytes); }], ['at peak', function (x) { return bytes(x.peak_bytes); }], ['temporary', function (x) { return num(x.temporary); }]], cs.sites, 'table-sites');
    } else {
      note(csub, 'No stack ids in this trace (record with stacks to see call sites).');
    }

    // Leaks
    sec = section(app, 'Still live at the end (leaks)', 'leaks');
    var lk2 = r.leaks;
    note(sec, num(lk2.blocks) + ' native/Python blocks (' + bytes(lk2.bytes) + ') were never freed. Go objects are freed by the GC and never listed.');
    if (lk2.sites.length) {
      var ls = lk2.sites.slice(0, 15);
      bytesByLabel(sec, 'leak-sites', 'Live bytes at the end by site', 'bytes', 200, ls.map(function (x) { return x.func + (x.stack_id === null ? '' : ' #' + x.stack_id); }), ls.map(function (x) { return x.bytes; }));
      table(sec, [['pid', function (x) { return x.pid; }], ['address', function (x) { return '0x' + x.addr.toString(16); }], ['size', function (x) { return bytes(x.size); }], ['allocated at', function (x) { return ns(x.t_ns); }], ['tid', function (x) { return x.tid; }], ['function', function (x) { return x.func; }, true], ['kind', function (x) { return x.kind; }, true], ['stack', function (x) { return x.stack_id === null ? '' : x.stack_id; }], ['reallocs', function (x) { return x.reallocs; }]], lk2.largest, 'table-leaks');
    }

    // Peak
    sec = section(app, 'Peak', 'peak');
    var pk = r.peak;
    kpis(sec, [
      ['peak live', bytes(pk.live_bytes), 'at ' + ns(pk.t_ns)],
      ['blocks at peak', num(pk.live_blocks)],
      [fpName + ' at peak', bytes(pk.footprint)],
      resident ? ['mapped footprint at peak', bytes(pk.mapped_footprint)] : null,
      pk.go_live ? ['Go heap at peak', bytes(pk.go_live)] : null,
      ['peak ' + fpName, bytes(pk.footprint_peak), 'at ' + ns(pk.footprint_peak_t_ns)],
      resident ? ['peak resident (RSS)', bytes(pk.resident_peak), 'at ' + ns(pk.resident_peak_t_ns)] : null
    ]);
    grid = el('div', { 'class': 'grid2' });
    sec.appendChild(grid);
    if (pk.by_size.length) {
      chart(grid, 'peak-sizes', 'Live at the peak by block size', {
        tooltip: { trigger: 'axis', confine: true, formatter: bytesTooltip },
        xAxis: { type: 'category', data: pk.by_size.map(function (p) { return '≥ ' + bytes(Number(p.label)); }), axisLabel: { rotate: 45 } },
        yAxis: bytesAxis,
        series: [{ name: 'bytes', type: 'bar', data: pk.by_size.map(function (p) { return p.bytes; }) }]
      });
    }
    if (pk.by_func.length) {
      chart(grid, 'peak-funcs', 'Live at the peak by function and layer', {
        tooltip: { trigger: 'item', confine: true, formatter: function (p) { return esc(p.name) + ': ' + bytes(p.value); } },
        legend: { show: false },
        series: [
          { name: 'function', type: 'pie', radius: ['0%', '45%'], label: { show: true, formatter: '{b}' }, data: pk.by_func.map(function (p) { return { name: p.label, value: p.bytes }; }) },
          { name: 'layer', type: 'pie', radius: ['55%', '70%'], label: { show: true, formatter: '{b}' }, data: pk.by_kind.map(function (p) { return { name: p.label, value: p.bytes }; }) }
        ]
      });
    }
    if (!pk.by_size.length && !pk.by_func.length) note(sec, 'No native or Python block was live at the peak.');

    // GC
    var gcShare = function (g) {
      if (g.gc_cpu_ns !== null && g.cpu_capacity_ns) return pct(g.gc_cpu_ns / g.cpu_capacity_ns);
      if (g.runtime === 'python' && t.duration_ns > 0) return pct(g.total_ns / t.duration_ns);
      return '';
    };
    var gcShareSource = function (g) {
      if (g.gc_cpu_ns !== null && g.cpu_capacity_ns) return "the Go runtime's own accounting: " + ns(g.gc_cpu_ns) + ' of GC CPU in ' + ns(g.cpu_capacity_ns) + ' of elapsed × GOMAXPROCS';
      if (g.runtime === 'python') return 'collection time / elapsed';
      return null;
    };
    if (r.gc.runtimes.length || r.gc.pauses.count) {
      sec = section(app, 'Garbage collection', 'gc');
      table(sec, [['runtime', function (g) { return g.runtime; }, true], ['cycles', function (g) { return num(g.cycles); }], ['total', function (g) { return ns(g.total_ns); }], ['max', function (g) { return ns(g.max_ns); }], ['collected', function (g) { return num(g.collected); }], ['uncollectable', function (g) { return num(g.uncollectable); }], ['last heap live', function (g) { return g.last_heap_live === null ? '' : bytes(g.last_heap_live); }], ['last heap goal', function (g) { return g.last_heap_goal === null ? '' : bytes(g.last_heap_goal); }], ['GC CPU share', gcShare, false, null, gcShareSource]], r.gc.runtimes, 'table-gc');
      note(sec, "GC CPU share — Go: the runtime's own accounting, GC CPU time ÷ (elapsed × GOMAXPROCS) from the process's start to its last cycle end, as GODEBUG=gctrace=1 prints it (N%). Python: summed collection time (gc_start to gc_end, wall time) ÷ the trace's duration.");
      grid = el('div', { 'class': 'grid2' });
      sec.appendChild(grid);
      r.gc.runtimes.forEach(function (g) {
        var gr = histRange(g.duration_ns.counts);
        if (!gr) return;
        var gk = []; for (var k = gr[0]; k <= gr[1]; k++) gk.push(k);
        chart(grid, 'gc-' + g.runtime, g.runtime + ' GC cycle durations', {
          xAxis: { type: 'category', data: gk.map(function (k) { return '≥ ' + ns(log2Low(k)); }), axisLabel: { rotate: 45 } },
          yAxis: valueAxis('cycles'),
          series: [{ name: 'cycles', type: 'bar', data: gk.map(function (k) { return g.duration_ns.counts[k]; }) }]
        }, { note: g.generations.length ? g.generations.map(function (x) { return 'gen' + x.generation + ': ' + num(x.cycles) + ' cycles, ' + ns(x.total_ns); }).join(' · ') : null });
      });
      var pr = histRange(r.gc.pauses.duration_ns.counts);
      if (pr) {
        var pk2 = []; for (k = pr[0]; k <= pr[1]; k++) pk2.push(k);
        chart(grid, 'stw', 'Stop-the-world pauses', {
          xAxis: { type: 'category', data: pk2.map(function (k) { return '≥ ' + ns(log2Low(k)); }), axisLabel: { rotate: 45 } },
          yAxis: valueAxis('pauses'),
          series: [{ name: 'pauses', type: 'bar', data: pk2.map(function (k) { return r.gc.pauses.duration_ns.counts[k]; }) }]
        }, { note: num(r.gc.pauses.count) + ' pauses, ' + ns(r.gc.pauses.total_ns) + ' in total, longest ' + ns(r.gc.pauses.max_ns) + '. ' + r.gc.pauses.reasons.map(function (x) { return x.reason + ': ' + num(x.count); }).join(' · ') });
      }
    }

    // Counters
    sec = section(app, 'Rows and anomalies', 'counters');
    var ctr = r.counters;
    table(sec, [['counter', function (k) { return k; }, true], ['value', function (k) { return num(ctr[k]); }]], Object.keys(ctr), 'table-counters');
  }

  // ---------- dashboard ----------
  function renderDashboard(app, data) {
    var d = data.dashboard, runs = d.runs, labels = runs.map(function (r) { return r.label; });
    var unit = d.per_work_unit;
    app.appendChild(el('h1', null, 'alloctrace compare: ' + runs.length + ' runs'));
    note(app, unit ? 'Every run reports work_units: counts and bytes are per unit of work.' : 'Not every run reports work_units in run.json: numbers are totals, not per unit of work.', 'meta');
    var per = function (r, key) { return unit ? r.summary.per_work_unit[key] : null; };
    // Time and GC figures come from the run's cheap `--events gc,rss` recording when it has one
    // (`light`); taken from the fully traced run instead, they are marked traced (†).
    var anyLight = runs.some(function (r) { return r.light; });
    var timing = function (r) { return r.light ? r.light.summary : r.summary; };
    // Peak resident from the cheap recording when it sampled resident memory, else the full
    // trace's (marked traced).
    var lightResident = function (r) { return r.light && r.light.summary.peak_resident_bytes !== null && r.light.summary.peak_resident_bytes !== undefined; };
    var peakResident = function (r) { return lightResident(r) ? r.light.summary.peak_resident_bytes : r.summary.peak_resident_bytes; };
    var traced = function (r) { return !r.light; };
    if (anyLight) note(app, "Duration and GC figures come from each run's `--events gc,rss` recording (GC cycles, pauses and resident memory only, a few percent of overhead); † marks those taken from the fully traced run, which tracing slows by its own factor per runtime. Everything else comes from the full trace.", 'meta');
    else note(app, 'Duration and GC figures come from the fully traced run (†): tracing slows each runtime by its own factor. Record each run also with `alloctrace record --events gc,rss` into <trace>/gc-rss/ for untraced-speed figures.', 'meta');
    var metrics = [
      ['allocations', function (r) { return unit ? per(r, 'allocations') : r.summary.allocations; }, num],
      ['bytes allocated', function (r) { return unit ? per(r, 'bytes_allocated') : r.summary.bytes_allocated; }, bytes],
      ['peak live', function (r) { return unit ? per(r, 'peak_live_bytes') : r.summary.peak_live_bytes; }, bytes],
      ['peak footprint (resident heap; mapped where no rss samples)', function (r) { return unit ? per(r, 'peak_footprint_bytes') : r.summary.peak_footprint_bytes; }, bytes],
      ['peak resident (RSS)', function (r) { var v = peakResident(r); return unit && v !== null && v !== undefined ? v / r.summary.work_units : v; }, bytes, function (r) { return !lightResident(r); }],
      ['footprint / live at peak', function (r) { return r.summary.footprint_over_live_at_peak; }, function (v) { return Number(v).toFixed(2) + '×'; }],
      ['peak mapped footprint (virtual)', function (r) { return r.summary.peak_mapped_footprint_bytes; }, bytes],
      ['temporary allocations', function (r) { return r.summary.temporary_ratio; }, pct],
      ['internal waste', function (r) { return r.summary.internal_waste_ratio; }, pct],
      ['external fragmentation (end)', function (r) { return r.summary.frag_index_end; }, function (v) { return Number(v).toFixed(2); }],
      ['GC CPU share', function (r) { return timing(r).gc_cpu_share; }, pct, traced],
      ['time in GC + pauses (wall)', function (r) { return timing(r).gc_total_ns + timing(r).stw_total_ns; }, ns, traced],
      ['duration' + (unit ? ' per work unit' : ''), function (r) { var d = timing(r).duration_ns; return unit ? d / r.summary.work_units : d; }, ns, traced]
    ];
    var sec = section(app, 'Side by side', 'side-by-side');
    var cols = [['metric' + (unit ? ' (per work unit where it applies)' : ''), function (m) { return m[0]; }, true]];
    runs.forEach(function (run) {
      cols.push([run.label, function (m) {
        var v = m[1](run);
        if (v === null || v === undefined) return '–';
        return m[2](v) + (m[3] && m[3](run) ? ' †' : '');
      }]);
    });
    table(sec, cols, metrics, 'table-compare');
    var grid = el('div', { 'class': 'grid2' });
    sec.appendChild(grid);
    metrics.forEach(function (m, i) {
      chart(grid, 'metric-' + i, m[0] + (unit && i < 5 ? ' per work unit' : '') + (m[3] && runs.some(m[3]) ? ' († traced)' : ''), {
        tooltip: { trigger: 'axis', confine: true, valueFormatter: function (v) { return m[2](v); } },
        grid: { left: 90, right: 30, top: 30, bottom: 60 },
        xAxis: { type: 'category', data: labels, axisLabel: { interval: 0, rotate: labels.length > 3 ? 20 : 0 } },
        yAxis: { type: 'value', axisLabel: { formatter: function (v) { return m[2](v); } } },
        series: [{ name: m[0], type: 'bar', colorBy: 'data', data: runs.map(function (r) { return m[1](r) || 0; }) }]
      });
    });
    // Resident memory at near-untraced speed: each cheap recording's own samples, on its own
    // wall time (it has no allocations, hence no progress axis).
    var residentRuns = runs.filter(function (r) { return r.light && r.light.resident && nonZero(r.light.resident); });
    if (residentRuns.length) {
      sec = section(app, 'Resident memory (gc,rss recordings)', 'resident');
      chart(sec, 'resident', 'Resident set (RSS) over wall time', {
        tooltip: { trigger: 'axis', confine: true, valueFormatter: bytes },
        xAxis: timeAxis, yAxis: bytesAxis, dataZoom: zoomX(),
        series: residentRuns.map(function (r) { return line(r.label, r.light.resident.map(function (v, b) { return [r.light.t_s[b], v]; })); })
      }, { note: "From each run's `--events gc,rss` recording, which runs at close to untraced speed: wall time here is comparable across runs." });
    }
    sec = section(app, 'Over time', 'over-time');
    // Cross-run overlays start on allocation progress: every run traced at its own slowed pace
    // on one wall-time axis would overlay tracer speed, not runtime behaviour.
    var maps = runs.map(function (r) { return progressMap(r.alloc_count, r.bucket_s, unit ? r.summary.work_units : null); });
    var modes = { time: { mode: 'time', axis: timeAxis, run: function (i) { return { at: function (sec) { return sec; }, b: function (b) { return runs[i].t_s[b]; } }; } } };
    if (maps.every(function (m) { return m.total > 0; })) modes.progress = { mode: 'progress', axis: progressAxis(unit), run: function (i) { return maps[i]; } };
    xSwitch(sec, modes, 'progress', unit ? 'work units (estimated from allocations so far)' : 'allocations so far');
    if (modes.progress) note(sec, 'Allocation progress: ' + (unit ? "each run's work units, estimated as allocations so far × work units ÷ all its allocations" : 'allocations so far') + ', so the same work lines up whatever each runtime\'s speed under tracing. Wall time is traced time.');
    function overlay(id, title, pick, fmt) {
      timeChart(sec, id, title, function () {
        return {
          tooltip: { trigger: 'axis', confine: true, valueFormatter: fmt },
          xAxis: X.axis,
          yAxis: { type: 'value', axisLabel: { formatter: fmt } },
          dataZoom: zoomX(),
          series: runs.map(function (r, i) { var m = X.run(i); return line(r.label, pick(r).map(function (v, b) { return [m.b(b), v]; })); })
        };
      });
    }
    overlay('live', 'Live bytes', function (r) { return r.live_bytes; }, bytes);
    overlay('footprint', 'Footprint (resident heap; mapped for runs without rss samples)', function (r) { return r.footprint; }, bytes);
    overlay('mapped-footprint', 'Mapped footprint (virtual)', function (r) { return r.mapped_footprint; }, bytes);
    overlay('alloc-rate', 'Allocations per second', function (r) { return r.alloc_rate; }, num);
    if (runs.some(function (r) { return r.fragmentation.length; })) {
      timeChart(sec, 'frag', 'External fragmentation index', function () {
        return {
          xAxis: X.axis, yAxis: { type: 'value', min: 0, max: 1 }, dataZoom: zoomX(),
          series: runs.map(function (r, i) { var m = X.run(i); return line(r.label, r.fragmentation.map(function (x) { return [m.at(x[0]), x[1]]; }), { showSymbol: r.fragmentation.length < 40 }); })
        };
      });
    }
    sec = section(app, 'Distributions', 'distributions');
    grid = el('div', { 'class': 'grid2' });
    sec.appendChild(grid);
    function distribution(id, title, pick, fmt) {
      var len = Math.max.apply(null, runs.map(function (r) { return pick(r).length; }).concat([1]));
      var ks = []; for (var k = 0; k < len; k++) ks.push(k);
      chart(grid, id, title, {
        tooltip: { trigger: 'axis', confine: true, valueFormatter: function (v) { return Number(v).toFixed(1) + '%'; } },
        xAxis: { type: 'category', data: ks.map(function (k) { return log2Label(k, fmt); }), axisLabel: { rotate: 45 } },
        yAxis: { type: 'value', name: '%', axisLabel: { formatter: '{value}%' } },
        series: runs.map(function (r) {
          var h = pick(r), total = h.reduce(function (a, b) { return a + b; }, 0) || 1;
          return { name: r.label, type: 'line', data: ks.map(function (k) { return 100 * (h[k] || 0) / total; }) };
        })
      });
    }
    distribution('dist-sizes', 'Request sizes (% of allocations)', function (r) { return r.sizes; }, bytes);
    distribution('dist-lifetimes', 'Lifetimes (% of freed allocations)', function (r) { return r.lifetimes; }, ns);
  }

  // ---------- self-check ----------
  function painted(canvas) {
    var ctx = canvas.getContext('2d');
    var px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    var count = 0;
    for (var i = 3; i < px.length; i += 64) if (px[i] !== 0) count++;
    return count;
  }
  function verify(deadline) {
    if (verified) return;
    var problems = errors.slice();
    charts.forEach(function (c) {
      if (!c.chart) { problems.push(c.id + ': not created'); return; }
      if (!c.finished && deadline) problems.push(c.id + ': did not finish rendering');
      var opt = c.chart.getOption();
      var points = (opt.series || []).reduce(function (n, s) { return n + (Array.isArray(s.data) ? s.data.length : 0); }, 0);
      if (points === 0) problems.push(c.id + ': no data');
      var canvas = c.el.querySelector('canvas');
      if (!canvas || !canvas.width || !canvas.height) problems.push(c.id + ': no canvas');
      else if (painted(canvas) < 20) problems.push(c.id + ': blank');
    });
    if (!charts.length) problems.push('no chart rendered');
    // The other x axis is not drawn until the user picks it: build its options now and check
    // that each over-time chart would hold data there too.
    if (xModes) {
      Object.keys(xModes).forEach(function (mode) {
        if (xModes[mode] === X) return;
        var shown = X;
        X = xModes[mode];
        timeCharts.forEach(function (c) {
          try {
            var points = (c.build().series || []).filter(Boolean).reduce(function (n, s) { return n + (s.data || []).filter(function (d) { return Array.isArray(d) && isFinite(d[0]); }).length; }, 0);
            if (points === 0) problems.push(c.id + ': no data on the ' + mode + ' axis');
          } catch (e) { problems.push(c.id + ' on the ' + mode + ' axis: ' + e); }
        });
        X = shown;
      });
    }
    verified = true;
    var ok = problems.length === 0;
    statusEl.setAttribute('data-state', ok ? 'ok' : 'fail');
    statusEl.setAttribute('data-charts', String(charts.length));
    statusEl.textContent = ok ? 'OK: ' + charts.length + ' charts rendered' : 'FAIL: ' + problems.join('; ');
    document.title = (ok ? '[ok] ' : '[fail] ') + document.title;
  }
  function finish() {
    if (verified) return;
    if (errors.length && !building) { verify(false); return; }
    if (building) return;
    if (charts.every(function (c) { return c.finished; })) verify(false);
  }

  try {
    var data = JSON.parse(document.getElementById('alloctrace-data').textContent);
    var app = document.getElementById('app');
    app.innerHTML = '';
    if (typeof echarts === 'undefined') throw new Error('the chart library did not load');
    if (data.kind === 'report') renderReport(app, data);
    else if (data.kind === 'dashboard') renderDashboard(app, data);
    else throw new Error('unknown page kind ' + data.kind);
    window.addEventListener('resize', function () { charts.forEach(function (c) { if (c.chart) c.chart.resize(); }); });
  } catch (e) {
    errors.push('render: ' + (e && e.stack ? e.stack.split('\n')[0] : e));
  }
  building = false;
  finish();
  // A chart that never reports 'finished' fails the check instead of leaving it pending.
  setTimeout(function () { verify(true); }, 5000);
})();
