/* t2ibench viewer: plain JavaScript, no dependencies, no network.
 *
 * data.js sets window.T2I.data (experiments, images, metrics, tables). Every piece of
 * text from the data goes into the page as text (textContent, text nodes, new Option),
 * never as HTML. The comparison pane diffs pixels on a canvas: from the original files
 * when the page is served over http (same origin), else from px/<key>.js scripts that
 * register data: URLs (a file:// image would taint the canvas; a data: URL does not).
 */
(function () {
  "use strict";

  var T2I = (window.T2I = window.T2I || {});
  T2I.pixels = T2I.pixels || {};

  var DATA = T2I.data;
  var PAGE_IMAGES = 150;
  var AXES = ["prompt", "model", "cell", "seed"];
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var INFERNO = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
  var HTTP = location.protocol === "http:" || location.protocol === "https:";

  var state = {
    exp: null,
    tab: "grid",
    grid: { rows: "prompt", cols: "model", filters: {}, metric: "", verdict: "", page: 0 },
    A: null,
    B: null,
    mode: "slider",
    slider: 50,
    showing: "A",
    // A heatmap shows where and how much two images differ (a highlight at threshold 0
    // marks every pixel of two noisy images alike); the highlight starts at 16 levels.
    diff: { mode: "heatmap", threshold: 16, gain: 4 },
    diffToken: 0,
    compareDirty: true,
  };
  var byName = {};
  var pendingPixels = {};

  // ------------------------------------------------------------------ DOM helpers

  function $(id) {
    return document.getElementById(id);
  }

  /* An element with properties and children; strings become text nodes. */
  function el(tag, props, children) {
    var node = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        var value = props[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = String(value);
        else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
        else if (key === "value" || key === "checked" || key === "selected") node[key] = value;
        else node.setAttribute(key, value === true ? "" : String(value));
      });
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    if (children === null || children === undefined) return node;
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      if (Array.isArray(child)) append(node, child);
      else if (typeof child === "object") node.appendChild(child);
      else node.appendChild(document.createTextNode(String(child)));
    });
    return node;
  }

  /* Replace a select's options by [value, label] pairs (labels are set as text). */
  function setOptions(select, options, value) {
    select.replaceChildren();
    options.forEach(function (pair) {
      select.appendChild(new Option(pair[1], pair[0]));
    });
    var values = options.map(function (pair) {
      return pair[0];
    });
    select.value = values.indexOf(value) >= 0 ? value : values.length ? values[0] : "";
    return select.value;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    var a = Math.abs(value);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return value.toExponential(2);
    return String(Number(value.toPrecision(4)));
  }

  function showMessages(lines, kind) {
    var box = $("messages");
    box.replaceChildren();
    lines.forEach(function (line) {
      box.appendChild(el("p", { class: kind || "warn" }, line));
    });
  }

  function colour(stops, t) {
    t = Math.min(1, Math.max(0, t));
    var x = t * (stops.length - 1);
    var i = Math.min(stops.length - 2, Math.floor(x));
    var f = x - i;
    return [0, 1, 2].map(function (c) {
      return Math.round(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f);
    });
  }

  function rgb(c) {
    return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")";
  }

  function gradient(stops) {
    return "linear-gradient(to right, " + stops.map(rgb).join(", ") + ")";
  }

  // ------------------------------------------------------------------ data

  function prepare() {
    DATA.experiments.forEach(function (exp) {
      byName[exp.name] = exp;
      exp.promptByIndex = {};
      exp.prompts.forEach(function (p) {
        exp.promptByIndex[String(p.index)] = p;
      });
      exp.images.forEach(function (img, i) {
        img.exp = exp.name;
        img.id = exp.name + "#" + i;
      });
    });
  }

  function axisValue(img, axis) {
    return String(axis === "prompt" ? img.prompt : img[axis]);
  }

  function axisDomain(exp, axis) {
    var list = { prompt: exp.prompts.map(function (p) { return p.index; }),
                 model: exp.models, cell: exp.cells, seed: exp.seeds }[axis];
    return (list || []).map(String);
  }

  function cellText(exp, cell) {
    var values = exp.cell_values[cell];
    if (!values) return cell;
    var parts = Object.keys(values).map(function (k) {
      return k + "=" + values[k];
    });
    return parts.length ? parts.join(", ") : cell;
  }

  function axisLabel(exp, axis, value) {
    if (axis === "prompt") {
      var p = exp.promptByIndex[value];
      return p ? p.id : "prompt " + value;
    }
    if (axis === "seed") return "seed " + value;
    if (axis === "cell") return cellText(exp, value);
    return value;
  }

  function axisName(exp, axis) {
    if (axis === "cell") {
      var vars = Object.keys(exp.variables || {});
      return vars.length ? "cell (" + vars.join(" × ") + ")" : "cell";
    }
    return axis;
  }

  function describe(img) {
    var exp = byName[img.exp];
    var p = exp.promptByIndex[String(img.prompt)];
    return [img.exp, img.model, img.cell, p ? p.id : "prompt " + img.prompt, "seed " + img.seed]
      .join(" · ");
  }

  function findImage(exp, model, cell, prompt, seed) {
    for (var i = 0; i < exp.images.length; i++) {
      var img = exp.images[i];
      if (img.model === model && img.cell === cell && String(img.prompt) === prompt &&
          String(img.seed) === seed) return img;
    }
    return null;
  }

  // ------------------------------------------------------------------ experiment

  function selectExperiment(name) {
    var exp = byName[name];
    state.exp = exp;
    $("experiment").value = name;
    $("description").textContent = exp.description || "";
    showMessages((DATA.warnings || []).concat(exp.warnings || []));
    renderOverview(exp);
    setupGridControls(exp);
    renderTables(exp);
    defaultPair(exp);
    renderGrid();
    if (state.tab === "compare") renderCompare();
    if (T2I.vote) T2I.vote.experiment(exp);
  }

  // The findings first: sentences by verdict, every text inserted as text.
  function renderFindings(found) {
    var box = $("findings");
    box.replaceChildren();
    if (!found) return;
    box.appendChild(el("h2", null, "Findings"));
    if (found.warning) box.appendChild(el("p", { class: "warn" }, found.warning));
    box.appendChild(el("p", null, found.headline + "."));
    if (found.note) box.appendChild(el("p", { class: "note" }, found.note));
    function list(items) {
      return el("ul", null, items.map(function (text) { return el("li", null, text); }));
    }
    if (found.decided.length) box.appendChild(list(found.decided));
    [["Equivalent within the margin", found.equivalent],
     ["People's votes", found.human || []],
     ["Early stopping", found.stopping || []],
     ["Metrics that disagree", found.disagreements]].forEach(function (part) {
      if (part[1].length) {
        box.appendChild(el("h3", null, part[0]));
        box.appendChild(list(part[1]));
      }
    });
    [["No difference detected", found.undetected],
     ["Not tested", found.untested || []]].forEach(function (part) {
      if (part[1].length) {
        box.appendChild(el("details", null, [
          el("summary", null, part[0] + " (" + part[1].length + ")"),
          list(part[1]),
        ]));
      }
    });
  }

  function renderOverview(exp) {
    renderFindings(exp.findings);
    var files = $("files");
    files.replaceChildren();
    Object.keys(exp.files || {}).forEach(function (name) {
      files.appendChild(el("a", { href: exp.files[name], target: "_blank", rel: "noopener" }, name));
    });
    var meta = $("metadata");
    meta.replaceChildren();
    var table = el("table", { class: "meta" });
    Object.keys(exp.metadata || {}).forEach(function (key) {
      var value = exp.metadata[key];
      var cell = typeof value === "object" && value !== null
        ? el("pre", null, JSON.stringify(value, null, 2))
        : String(value);
      table.appendChild(el("tr", null, [el("th", { scope: "row" }, key), el("td", null, cell)]));
    });
    meta.appendChild(table);

    var plots = $("plots");
    plots.replaceChildren();
    $("plots-box").hidden = !exp.plots.length;
    exp.plots.forEach(function (plot) {
      plots.appendChild(el("figure", { class: "plot" }, [
        el("a", { href: plot.src, target: "_blank", rel: "noopener" },
          el("img", { src: plot.src, alt: plot.name, loading: "lazy" })),
        el("figcaption", null, plot.name),
      ]));
    });
    // One box per per-set metric (FID/KID), its summary from the data.
    var sets = $("sets");
    sets.replaceChildren();
    exp.sets.forEach(function (set) {
      sets.appendChild(el("details", { class: "set-box", open: true }, [
        el("summary", null, set.name),
        el("p", { class: "note" }, set.summary),
        sortableTable(set.table.columns, set.table.rows, set.name + "-table"),
      ]));
    });
  }

  // ------------------------------------------------------------------ grid

  function setupGridControls(exp) {
    var g = state.grid;
    var axes = AXES.map(function (a) { return [a, axisName(exp, a)]; });
    g.rows = setOptions($("rows"), axes, "prompt");
    g.cols = setOptions($("cols"), axes, exp.cells.length > 1 ? "cell" : "model");
    g.filters = {};
    AXES.forEach(function (axis) {
      var values = axisDomain(exp, axis);
      var options = [["", "all (" + values.length + ")"]].concat(values.map(function (v) {
        var label = axisLabel(exp, axis, v);
        if (axis === "prompt") {
          var text = exp.promptByIndex[v].text;
          label += ": " + (text.length > 60 ? text.slice(0, 57) + "…" : text);
        }
        return [v, label];
      }));
      g.filters[axis] = setOptions($("filter-" + axis), options, "");
      $("filter-" + axis).disabled = values.length < 2;
    });
    var metrics = [["", "none"]].concat(exp.metrics.map(function (m) { return [m, m]; }));
    g.metric = setOptions($("metric"), metrics, g.metric);
    // Pass/fail metrics (the data says which, e.g. GenEval): show only failures or passes.
    var verdicts = exp.metrics.filter(function (m) {
      return exp.facts && exp.facts[m] && exp.facts[m].verdict;
    });
    var choices = [["", "all"]];
    verdicts.forEach(function (m) {
      choices.push([m + ":0", m + ": failed"], [m + ":1", m + ": passed"]);
    });
    g.verdict = setOptions($("filter-verdict"), choices, "");
    $("filter-verdict").disabled = !verdicts.length;
    g.page = 0;
  }

  function onAxisChange(which) {
    var g = state.grid;
    var other = which === "rows" ? "cols" : "rows";
    var value = $(which).value;
    if (value === g[other]) {
      g[other] = g[which];
      $(other).value = g[other];
    }
    g[which] = value;
    g.page = 0;
    renderGrid();
  }

  function filtered(exp) {
    var f = state.grid.filters;
    var verdict = state.grid.verdict ? state.grid.verdict.split(":") : null;
    return exp.images.filter(function (img) {
      if (verdict && img.metrics[verdict[0]] !== Number(verdict[1])) return false;
      return AXES.every(function (axis) {
        return !f[axis] || axisValue(img, axis) === f[axis];
      });
    });
  }

  function paginate(rowKeys, counts) {
    var pages = [];
    var start = 0;
    var n = 0;
    rowKeys.forEach(function (key, i) {
      n += counts[key];
      if (n >= PAGE_IMAGES || i === rowKeys.length - 1) {
        pages.push([start, i + 1]);
        start = i + 1;
        n = 0;
      }
    });
    return pages.length ? pages : [[0, 0]];
  }

  function metricScale(images, metric) {
    if (!metric) return null;
    var values = images.map(function (img) { return img.metrics[metric]; })
      .filter(function (v) { return typeof v === "number" && isFinite(v); });
    if (!values.length) return { metric: metric, min: null, max: null };
    return { metric: metric, min: Math.min.apply(null, values), max: Math.max.apply(null, values) };
  }

  function renderGrid() {
    var exp = state.exp;
    var g = state.grid;
    var images = filtered(exp);
    var table = {};
    var counts = {};
    images.forEach(function (img) {
      var r = axisValue(img, g.rows);
      var c = axisValue(img, g.cols);
      table[r] = table[r] || {};
      (table[r][c] = table[r][c] || []).push(img);
      counts[r] = (counts[r] || 0) + 1;
    });
    var rowKeys = axisDomain(exp, g.rows).filter(function (v) { return table[v]; });
    var present = {};
    images.forEach(function (img) { present[axisValue(img, g.cols)] = true; });
    var colKeys = axisDomain(exp, g.cols).filter(function (v) { return present[v]; });
    var pages = paginate(rowKeys, counts);
    g.page = Math.min(g.page, pages.length - 1);
    var scale = metricScale(images, g.metric);
    var free = AXES.filter(function (axis) {
      if (axis === g.rows || axis === g.cols) return false;
      return new Set(images.map(function (img) { return axisValue(img, axis); })).size > 1;
    });

    var grid = $("grid");
    grid.replaceChildren();
    if (!images.length) {
      grid.appendChild(el("p", { class: "empty" },
        exp.images.length ? "No image matches the filters." : "No images in this experiment yet."));
    } else {
      var head = el("tr", null, el("th", { class: "corner" },
        axisName(exp, g.rows) + " \\ " + axisName(exp, g.cols)));
      colKeys.forEach(function (c) {
        head.appendChild(el("th", { scope: "col" }, axisLabel(exp, g.cols, c)));
      });
      var body = el("tbody");
      var span = pages[g.page];
      rowKeys.slice(span[0], span[1]).forEach(function (r) {
        var tr = el("tr", null, rowHeader(exp, g.rows, r));
        colKeys.forEach(function (c) {
          var td = el("td");
          (table[r][c] || []).forEach(function (img) { td.appendChild(tile(img, scale, free)); });
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
      grid.appendChild(el("table", { class: "grid", id: "grid-table" }, [el("thead", null, head), body]));
    }
    renderPager(pages, images.length, rowKeys.length);
    renderLegend(scale);
    renderSelection();
  }

  function rowHeader(exp, axis, value) {
    if (axis !== "prompt") return el("th", { scope: "row" }, axisLabel(exp, axis, value));
    var p = exp.promptByIndex[value];
    return el("th", { scope: "row", class: "prompt" }, [
      el("b", null, p ? p.id : value), el("span", { class: "ptext" }, p ? p.text : ""),
    ]);
  }

  function tile(img, scale, free) {
    var exp = byName[img.exp];
    var fig = el("figure", { class: "tile", "data-id": img.id });
    if (state.A === img) fig.classList.add("is-a");
    if (state.B === img) fig.classList.add("is-b");
    var title = describe(img);
    if (img.thumb) {
      fig.appendChild(el("img", {
        class: img.size && Math.max(img.size[0], img.size[1]) < DATA.thumb_size ? "thumb pixel" : "thumb",
        src: img.thumb, loading: "lazy", decoding: "async", alt: title,
        title: title, width: img.size ? thumbW(img) : null, height: img.size ? thumbH(img) : null,
        onclick: function () { openLightbox(img); },
      }));
    } else {
      fig.appendChild(el("div", { class: "missing", title: title }, "image missing"));
    }
    var label = free.map(function (axis) { return axisLabel(exp, axis, axisValue(img, axis)); });
    var caption = el("figcaption", null, label.join(" · "));
    if (scale) {
      var value = img.metrics[scale.metric];
      var badge = el("span", { class: "value" }, fmt(value));
      if (typeof value === "number" && scale.max !== null) {
        var t = scale.max > scale.min ? (value - scale.min) / (scale.max - scale.min) : 0.5;
        var c = colour(VIRIDIS, t);
        fig.style.setProperty("--mc", rgb(c));
        fig.classList.add("scored");
        badge.style.background = rgb(c);
        badge.style.color = t > 0.55 ? "#000" : "#fff";
      }
      caption.appendChild(badge);
    }
    if (img.flag) caption.appendChild(el("span", { class: "flag" }, img.flag));
    fig.appendChild(caption);
    fig.appendChild(el("div", { class: "ab" }, [
      el("button", { type: "button", class: "set-a", title: "Compare this image as A",
        onclick: function () { setSide("A", img); } }, "A"),
      el("button", { type: "button", class: "set-b", title: "Compare this image as B",
        onclick: function () { setSide("B", img); } }, "B"),
    ]));
    return fig;
  }

  function thumbW(img) {
    var s = Math.max(img.size[0], img.size[1]);
    return Math.max(1, Math.round((img.size[0] / s) * Math.min(s, DATA.thumb_size)));
  }

  function thumbH(img) {
    var s = Math.max(img.size[0], img.size[1]);
    return Math.max(1, Math.round((img.size[1] / s) * Math.min(s, DATA.thumb_size)));
  }

  function renderPager(pages, nImages, nRows) {
    ["pager-top", "pager-bottom"].forEach(function (id) {
      var box = $(id);
      box.replaceChildren();
      var g = state.grid;
      var info = nImages + " images, " + nRows + " rows";
      if (pages.length > 1) {
        box.appendChild(el("button", { type: "button", class: "prev", disabled: g.page === 0,
          onclick: function () { g.page -= 1; renderGrid(); } }, "‹ Previous"));
        box.appendChild(el("span", { class: "page" }, " page " + (g.page + 1) + " of " +
          pages.length + " · " + info + " "));
        box.appendChild(el("button", { type: "button", class: "next",
          disabled: g.page >= pages.length - 1,
          onclick: function () { g.page += 1; renderGrid(); } }, "Next ›"));
      } else {
        box.appendChild(el("span", { class: "page" }, info));
      }
    });
  }

  // Which way is better comes with the data (the metric's registry entry, recorded in
  // metadata.json); a column without facts reads as higher-is-better.
  function lowerIsBetter(exp, metric) {
    var facts = exp && exp.facts && exp.facts[metric];
    return Boolean(facts && facts.higher_is_better === false);
  }

  function renderLegend(scale) {
    var legend = $("legend");
    legend.replaceChildren();
    legend.hidden = !scale;
    if (!scale) return;
    if (scale.min === null) {
      legend.appendChild(el("span", null, scale.metric + ": no values for these images"));
      return;
    }
    var bar = el("span", { class: "bar" });
    bar.style.background = gradient(VIRIDIS);
    legend.appendChild(el("span", { class: "name" }, scale.metric));
    legend.appendChild(el("span", { class: "min", id: "legend-min" }, fmt(scale.min)));
    legend.appendChild(bar);
    legend.appendChild(el("span", { class: "max", id: "legend-max" }, fmt(scale.max)));
    legend.appendChild(el("span", { class: "note" },
      lowerIsBetter(state.exp, scale.metric) ? "(lower is better)" : "(higher is better)"));
  }

  function renderSelection() {
    var box = $("selection");
    box.replaceChildren();
    ["A", "B"].forEach(function (side) {
      var img = state[side];
      box.appendChild(el("span", { class: "side side-" + side.toLowerCase() }, [
        el("b", null, side + ": "), img ? describe(img) : "none (click " + side + " on a tile)",
      ]));
    });
    box.appendChild(el("button", { type: "button", id: "open-compare", disabled: !(state.A && state.B),
      onclick: function () { showTab("compare"); } }, "Compare A and B"));
  }

  // ------------------------------------------------------------------ lightbox

  function openLightbox(img) {
    var exp = byName[img.exp];
    var p = exp.promptByIndex[String(img.prompt)];
    var box = $("lightbox-img");
    if (img.path || img.thumb) box.src = img.path || img.thumb;
    box.alt = describe(img);
    var rows = [
      ["experiment", img.exp], ["model", img.model], ["cell", cellText(exp, img.cell)],
      ["prompt", p ? p.id : String(img.prompt)], ["prompt text", p ? p.text : ""],
      ["seed", String(img.seed)], ["file", img.file || ""],
      ["size", img.size ? img.size[0] + " × " + img.size[1] + " px" : "missing"],
    ];
    if (img.flag) rows.push(["flag", img.flag]);
    exp.metrics.forEach(function (m) { rows.push([m, fmt(img.metrics[m])]); });
    Object.keys(img.notes || {}).forEach(function (n) { rows.push([n, img.notes[n]]); });
    var table = el("table", { class: "meta" }, rows.map(function (r) {
      return el("tr", null, [el("th", { scope: "row" }, r[0]), el("td", null, r[1])]);
    }));
    var info = $("lightbox-info");
    info.replaceChildren(table, el("p", null, [
      img.path ? el("a", { href: img.path, target: "_blank", rel: "noopener" }, "Open the file") : null,
      " ",
      el("button", { type: "button", onclick: function () { setSide("A", img); } }, "Set as A"),
      " ",
      el("button", { type: "button", onclick: function () { setSide("B", img); } }, "Set as B"),
    ]));
    $("lightbox").hidden = false;
    $("lightbox-close").focus();
  }

  function closeLightbox() {
    $("lightbox").hidden = true;
    $("lightbox-img").removeAttribute("src");
  }

  // ------------------------------------------------------------------ compare: choosing

  function defaultPair(exp) {
    var a = exp.images[0] || null;
    var b = null;
    if (a) {
      var axis = exp.cells.length > 1 ? "cell" : exp.models.length > 1 ? "model" : "seed";
      b = exp.images.find(function (img) {
        return img !== a && AXES.every(function (x) {
          return x === axis ? img[x] !== a[x] : axisValue(img, x) === axisValue(a, x);
        });
      }) || exp.images[1] || a;
    }
    state.A = a;
    state.B = b;
    syncPicker("A");
    syncPicker("B");
    state.compareDirty = true;
  }

  function setSide(side, img) {
    state[side] = img;
    syncPicker(side);
    state.compareDirty = true;
    document.querySelectorAll(".tile.is-" + side.toLowerCase()).forEach(function (n) {
      n.classList.remove("is-" + side.toLowerCase());
    });
    var node = document.querySelector('.tile[data-id="' + CSS.escape(img.id) + '"]');
    if (node) node.classList.add("is-" + side.toLowerCase());
    renderSelection();
    if (state.tab === "compare") renderCompare();
  }

  function buildPicker(side) {
    var box = $("pick-" + side);
    var fields = ["experiment", "model", "cell", "prompt", "seed"];
    fields.forEach(function (field) {
      box.appendChild(el("label", null, [field + " ",
        el("select", { id: "pick-" + side + "-" + field,
          onchange: function () { onPickerChange(side, field); } })]));
    });
    box.appendChild(el("div", { class: "picked", id: "picked-" + side }));
  }

  function pickerOptions(side, exp, keep) {
    setOptions($("pick-" + side + "-experiment"),
      DATA.experiments.map(function (e) { return [e.name, e.name]; }), exp.name);
    ["model", "cell", "prompt", "seed"].forEach(function (axis) {
      var options = axisDomain(exp, axis).map(function (v) {
        return [v, axisLabel(exp, axis, v)];
      });
      setOptions($("pick-" + side + "-" + axis), options, keep[axis]);
    });
  }

  function syncPicker(side) {
    var img = state[side];
    var exp = img ? byName[img.exp] : state.exp;
    var keep = {};
    if (img) AXES.forEach(function (axis) { keep[axis] = axisValue(img, axis); });
    pickerOptions(side, exp, keep);
    showPicked(side);
  }

  function onPickerChange(side, field) {
    var exp = byName[$("pick-" + side + "-experiment").value];
    var keep = {};
    AXES.forEach(function (axis) { keep[axis] = $("pick-" + side + "-" + axis).value; });
    if (field === "experiment") pickerOptions(side, exp, keep);
    state[side] = findImage(exp, $("pick-" + side + "-model").value,
      $("pick-" + side + "-cell").value, $("pick-" + side + "-prompt").value,
      $("pick-" + side + "-seed").value);
    showPicked(side);
    state.compareDirty = true;
    renderSelection();
    renderCompare();
  }

  function showPicked(side) {
    var img = state[side];
    var box = $("picked-" + side);
    box.replaceChildren();
    if (!img) {
      box.appendChild(el("span", { class: "warn-text" }, "No image for this combination."));
      return;
    }
    var p = byName[img.exp].promptByIndex[String(img.prompt)];
    box.appendChild(el("div", { class: "ptext" }, p ? p.text : ""));
    box.appendChild(el("div", { class: "note" }, [
      (img.file || "") + (img.size ? " · " + img.size[0] + "×" + img.size[1] + " px" : ""), " ",
      img.path ? el("a", { href: img.path, target: "_blank", rel: "noopener" }, "open") : null,
    ]));
  }

  // ------------------------------------------------------------------ compare: showing

  function srcOf(img) {
    return img.path || img.thumb;
  }

  function displaySize(img) {
    var w = img.size ? img.size[0] : 256;
    var h = img.size ? img.size[1] : 256;
    var longest = Math.max(w, h);
    var target = longest < 384 ? Math.floor(512 / longest) * longest : Math.min(longest, 768);
    var s = target / longest;
    return { w: Math.round(w * s), h: Math.round(h * s), upscaled: s > 1 };
  }

  function renderCompare() {
    state.compareDirty = false;
    state.diffToken += 1;
    var a = state.A;
    var b = state.B;
    var stage = $("stage");
    stage.replaceChildren();
    stage.onpointerdown = stage.onpointermove = stage.onpointerup = null;
    stage.toggleShow = null;
    $("mode-controls").replaceChildren();
    $("diff-stats").textContent = "";
    var note = $("compare-note");
    if (!a || !b || !srcOf(a) || !srcOf(b)) {
      note.textContent = "Choose two existing images: A and B (pickers above, or the A/B buttons on the grid's tiles).";
      stage.hidden = true;
      return;
    }
    stage.hidden = false;
    var sizeA = a.size ? a.size[0] + "×" + a.size[1] : "?";
    var sizeB = b.size ? b.size[0] + "×" + b.size[1] : "?";
    var text = "A: " + describe(a) + " (" + sizeA + ")  ·  B: " + describe(b) + " (" + sizeB + ")";
    if (sizeA !== sizeB) text += ". Different sizes: B is scaled to A's size.";
    note.textContent = text;
    var d = displaySize(a);
    stage.style.width = d.w + "px";
    stage.style.height = d.h + "px";
    stage.classList.toggle("pixelated", d.upscaled);
    stage.dataset.mode = state.mode;
    if (state.mode === "slider") renderSlider(a, b);
    else if (state.mode === "toggle") renderToggle(a, b);
    else renderDiff(a, b);
  }

  function renderSlider(a, b) {
    var stage = $("stage");
    var imgB = el("img", { class: "layer b", src: srcOf(b), alt: "B", draggable: "false" });
    var imgA = el("img", { class: "layer a", src: srcOf(a), alt: "A", draggable: "false" });
    var divider = el("div", { class: "divider" });
    append(stage, [imgB, imgA, divider, el("span", { class: "tag tag-a" }, "A"),
      el("span", { class: "tag tag-b" }, "B")]);
    var range = el("input", { type: "range", id: "slider", min: "0", max: "100", step: "0.5",
      "aria-label": "Divider position (% of the width showing A)" });
    range.value = String(state.slider);
    function set(v) {
      state.slider = Math.min(100, Math.max(0, v));
      imgA.style.clipPath = "inset(0 " + (100 - state.slider) + "% 0 0)";
      divider.style.left = state.slider + "%";
      range.value = String(state.slider);
    }
    range.addEventListener("input", function () { set(Number(range.value)); });
    var dragging = false;
    function fromPointer(e) {
      var rect = stage.getBoundingClientRect();
      set(((e.clientX - rect.left) / rect.width) * 100);
    }
    stage.onpointerdown = function (e) {
      dragging = true;
      stage.setPointerCapture(e.pointerId);
      fromPointer(e);
    };
    stage.onpointermove = function (e) { if (dragging) fromPointer(e); };
    stage.onpointerup = function () { dragging = false; };
    $("mode-controls").appendChild(el("label", null, ["A ◂ ", range, " ▸ B"]));
    set(state.slider);
  }

  function renderToggle(a, b) {
    var stage = $("stage");
    var img = el("img", { class: "layer single", id: "toggle-img", alt: "", draggable: "false" });
    var tag = el("span", { class: "tag tag-a", id: "toggle-tag" });
    append(stage, [img, tag]);
    var button = el("button", { type: "button", id: "toggle-button", onclick: toggleAB });
    function show() {
      var side = state.showing;
      img.src = srcOf(side === "A" ? a : b);
      img.alt = side;
      img.dataset.showing = side;
      tag.textContent = side;
      tag.className = "tag tag-" + side.toLowerCase();
      button.textContent = "Show " + (side === "A" ? "B" : "A") + " (key T)";
    }
    stage.toggleShow = show;
    $("mode-controls").appendChild(button);
    show();
  }

  function toggleAB() {
    state.showing = state.showing === "A" ? "B" : "A";
    var stage = $("stage");
    if (stage.toggleShow) stage.toggleShow();
  }

  function renderDiff(a, b) {
    var stage = $("stage");
    var canvas = el("canvas", { id: "diff-canvas", class: "layer" });
    stage.appendChild(canvas);
    var mode = el("select", { id: "diff-mode", onchange: function () {
      state.diff.mode = mode.value;
      renderCompare();
    } });
    setOptions(mode, [["highlight", "highlight"], ["absolute", "absolute |A−B|"],
      ["heatmap", "heatmap"]], state.diff.mode);
    var controls = $("mode-controls");
    append(controls, el("label", null, ["Diff ", mode]));
    if (state.diff.mode === "highlight") {
      var threshold = el("input", { type: "range", id: "diff-threshold", min: "0", max: "64",
        step: "1", "aria-label": "Threshold" });
      threshold.value = String(state.diff.threshold);
      var shown = el("span", null, String(state.diff.threshold));
      threshold.addEventListener("change", function () {
        state.diff.threshold = Number(threshold.value);
        renderCompare();
      });
      threshold.addEventListener("input", function () { shown.textContent = threshold.value; });
      append(controls, el("label", null, [" differs by more than ", threshold, " ", shown]));
    } else if (state.diff.mode === "absolute") {
      var gain = el("select", { id: "diff-gain", onchange: function () {
        state.diff.gain = Number(gain.value);
        renderCompare();
      } });
      setOptions(gain, [1, 2, 4, 8, 16].map(function (g) { return [String(g), "×" + g]; }),
        String(state.diff.gain));
      append(controls, el("label", null, [" gain ", gain]));
    }
    var token = state.diffToken;
    $("diff-stats").textContent = "Computing the difference…";
    loadPair(a, b).then(function (pair) {
      if (token !== state.diffToken) return;
      var result = diffPixels(pair.a, pair.b, state.diff);
      canvas.width = pair.w;
      canvas.height = pair.h;
      canvas.getContext("2d").putImageData(result.out, 0, 0);
      canvas.dataset.mad = String(result.mad);
      canvas.dataset.differing = String(result.differing);
      canvas.dataset.pixels = String(pair.w * pair.h);
      canvas.dataset.source = pair.kind;
      showDiffStats(result, pair);
    }).catch(function (err) {
      if (token !== state.diffToken) return;
      $("diff-stats").textContent = "Could not read the pixels: " + err.message;
    });
  }

  function showDiffStats(r, pair) {
    var box = $("diff-stats");
    box.replaceChildren();
    var pct = (100 * r.differing) / (pair.w * pair.h);
    var lines = [
      el("b", { id: "mad" }, "Mean absolute difference: " + r.mad.toFixed(3)),
      " (0–255, over the RGB channels of " + pair.w + "×" + pair.h + " pixels); max " + r.max +
        "; " + pct.toFixed(2) + "% of the pixels differ",
    ];
    if (state.diff.mode === "highlight") {
      lines.push("; " + ((100 * r.above) / (pair.w * pair.h)).toFixed(2) +
        "% by more than " + state.diff.threshold + " (shown in red)");
    }
    if (state.diff.mode === "heatmap") {
      var bar = el("span", { class: "bar" });
      bar.style.background = gradient(INFERNO);
      lines.push(el("span", { class: "legend inline" },
        ["; heatmap: 0 ", bar, " " + r.maxMean.toFixed(1) + " (mean over RGB)"]));
    }
    lines.push(el("br"), el("span", { class: "note" }, "Computed from " + pair.source +
      (pair.scaled ? "; B scaled to A's size" : "") + "."));
    append(box, lines);
  }

  // ------------------------------------------------------------------ compare: pixels

  function loadImage(src) {
    return new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = function () { reject(new Error("cannot load " + src)); };
      img.src = src;
    });
  }

  /* The data: URL of an image's pixel copy, loaded by adding px/<key>.js. */
  function loadCopyUrl(img) {
    var key = img.px;
    if (!key) return Promise.reject(new Error("no pixel copy of " + describe(img)));
    if (T2I.pixels[key]) return Promise.resolve(T2I.pixels[key]);
    if (!pendingPixels[key]) {
      pendingPixels[key] = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = "px/" + key + ".js";
        script.onload = function () {
          script.remove();
          if (T2I.pixels[key]) resolve(T2I.pixels[key]);
          else reject(new Error("px/" + key + ".js did not register its pixels"));
        };
        script.onerror = function () {
          script.remove();
          delete pendingPixels[key];
          reject(new Error("cannot load px/" + key + ".js"));
        };
        document.head.appendChild(script);
      });
    }
    return pendingPixels[key];
  }

  function readPixels(img, w, h) {
    var canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    var ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0, w, h);
    return ctx.getImageData(0, 0, w, h);
  }

  function toPair(ia, ib, kind, source) {
    var w = ia.naturalWidth;
    var h = ia.naturalHeight;
    return { w: w, h: h, a: readPixels(ia, w, h), b: readPixels(ib, w, h), kind: kind,
      source: source, scaled: ib.naturalWidth !== w || ib.naturalHeight !== h };
  }

  function copySource(a, b) {
    var exact = [a, b].every(function (img) {
      return img.copy && img.copy[2] && img.copy[0] === img.size[0] && img.copy[1] === img.size[1];
    });
    if (exact) return "lossless copies of the files (exact pixels)";
    return "copies of at most " + DATA.compare_size + " px (WebP quality 90 above " +
      Math.round(Math.sqrt(DATA.lossless_max_pixels)) + "² px: differences of a few levels " +
      "can be compression noise); serve the results folder over http " +
      "(python -m http.server) for exact diffs of the original files";
  }

  /* A's and B's pixels at A's size: originals when served over http, else the copies. */
  function loadPair(a, b) {
    function copies() {
      return Promise.all([loadCopyUrl(a), loadCopyUrl(b)]).then(function (urls) {
        return Promise.all(urls.map(loadImage));
      }).then(function (imgs) {
        return toPair(imgs[0], imgs[1], "copy", copySource(a, b));
      });
    }
    if (!HTTP || !a.path || !b.path) return copies();
    return Promise.all([loadImage(a.path), loadImage(b.path)]).then(function (imgs) {
      return toPair(imgs[0], imgs[1], "original", "the original files (full resolution)");
    }).catch(copies);
  }

  function diffPixels(A, B, opts) {
    var a = A.data;
    var b = B.data;
    var n = A.width * A.height;
    var out = new ImageData(A.width, A.height);
    var o = out.data;
    var sum = 0;
    var max = 0;
    var differing = 0;
    var above = 0;
    var maxMean = 0;
    var means = new Float32Array(n);
    for (var i = 0; i < n; i++) {
      var k = i * 4;
      var dr = Math.abs(a[k] - b[k]);
      var dg = Math.abs(a[k + 1] - b[k + 1]);
      var db = Math.abs(a[k + 2] - b[k + 2]);
      var m = Math.max(dr, dg, db);
      var mean = (dr + dg + db) / 3;
      means[i] = mean;
      sum += dr + dg + db;
      if (m > max) max = m;
      if (mean > maxMean) maxMean = mean;
      if (m > 0) differing += 1;
      if (m > opts.threshold) above += 1;
      o[k + 3] = 255;
      if (opts.mode === "absolute") {
        o[k] = Math.min(255, dr * opts.gain);
        o[k + 1] = Math.min(255, dg * opts.gain);
        o[k + 2] = Math.min(255, db * opts.gain);
      } else if (opts.mode === "highlight") {
        if (m > opts.threshold) {
          o[k] = 230; o[k + 1] = 20; o[k + 2] = 60;
        } else {
          var grey = 150 + 0.4 * (0.299 * a[k] + 0.587 * a[k + 1] + 0.114 * a[k + 2]);
          o[k] = o[k + 1] = o[k + 2] = grey;
        }
      }
    }
    if (opts.mode === "heatmap") {
      for (var j = 0; j < n; j++) {
        var c = colour(INFERNO, maxMean > 0 ? means[j] / maxMean : 0);
        o[j * 4] = c[0]; o[j * 4 + 1] = c[1]; o[j * 4 + 2] = c[2];
      }
    }
    return { out: out, mad: sum / (3 * n), max: max, differing: differing, above: above,
      maxMean: maxMean };
  }

  // ------------------------------------------------------------------ tables

  function compareValues(x, y) {
    var xn = x === null || x === undefined;
    var yn = y === null || y === undefined;
    if (xn || yn) return xn && yn ? 0 : xn ? 1 : -1;
    if (typeof x === "number" && typeof y === "number") return x - y;
    if (typeof x === "number") return -1;
    if (typeof y === "number") return 1;
    return String(x).localeCompare(String(y), undefined, { numeric: true });
  }

  /* A table whose rows sort on a header click (numbers numerically, empty cells last). */
  function sortableTable(columns, rows, id) {
    var tbody = el("tbody");
    var ths = [];
    var sorted = { col: -1, dir: 1 };
    function fill(list) {
      tbody.replaceChildren();
      list.forEach(function (row) {
        tbody.appendChild(el("tr", null, row.map(function (v) {
          var numeric = typeof v === "number";
          return el("td", { class: numeric ? "num" : "text", title: numeric ? String(v) : null },
            fmt(v));
        })));
      });
    }
    function sortBy(i) {
      sorted.dir = sorted.col === i ? -sorted.dir : 1;
      sorted.col = i;
      var list = rows.slice().sort(function (r1, r2) {
        var x = r1[i];
        var y = r2[i];
        if (x === null || x === undefined || y === null || y === undefined) return compareValues(x, y);
        return sorted.dir * compareValues(x, y);
      });
      ths.forEach(function (th, j) {
        th.setAttribute("aria-sort", j === i ? (sorted.dir > 0 ? "ascending" : "descending") : "none");
      });
      fill(list);
    }
    var head = el("tr", null, columns.map(function (name, i) {
      var th = el("th", { scope: "col", tabindex: "0", "aria-sort": "none", "data-col": name,
        title: "Sort by " + name,
        onclick: function () { sortBy(i); },
        onkeydown: function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(i); } },
      }, name);
      ths.push(th);
      return th;
    }));
    fill(rows);
    return el("table", { class: "data", id: id }, [el("thead", null, head), tbody]);
  }

  function summaryMetrics(table) {
    return table.columns.filter(function (c) { return /_mean$/.test(c); })
      .map(function (c) { return c.replace(/_mean$/, ""); });
  }

  function renderTables(exp) {
    var box = $("summary");
    var select = $("summary-metric");
    box.replaceChildren();
    if (!exp.summary) {
      box.appendChild(el("p", { class: "empty" }, "No summary.csv."));
      setOptions(select, [["", "all"]], "");
    } else {
      var metrics = summaryMetrics(exp.summary);
      setOptions(select, [["", "all"]].concat(metrics.map(function (m) { return [m, m]; })), "");
      select.onchange = function () { drawSummary(exp, select.value); };
      drawSummary(exp, "");
    }
    var cbox = $("comparisons");
    var cselect = $("comparisons-metric");
    cbox.replaceChildren();
    $("comparisons-method").textContent = "";
    if (!exp.comparisons || !exp.comparisons.rows.length) {
      cbox.appendChild(el("p", { class: "empty" }, "No comparisons (one model and one cell, or no comparisons.csv)."));
      setOptions(cselect, [["", "all"]], "");
      return;
    }
    var mcol = exp.comparisons.columns.indexOf("metric");
    var names = [];
    exp.comparisons.rows.forEach(function (r) { if (names.indexOf(r[mcol]) < 0) names.push(r[mcol]); });
    setOptions(cselect, [["", "all"]].concat(names.map(function (m) { return [m, m]; })), "");
    cselect.onchange = function () { drawComparisons(exp, cselect.value); };
    drawComparisons(exp, "");
  }

  function drawSummary(exp, metric) {
    var t = exp.summary;
    var metrics = summaryMetrics(t);
    var keep = t.columns.map(function (c, i) {
      var owner = metrics.find(function (m) { return c.indexOf(m + "_") === 0; });
      return owner === undefined || !metric || owner === metric ? i : -1;
    }).filter(function (i) { return i >= 0; });
    var box = $("summary");
    box.replaceChildren(sortableTable(keep.map(function (i) { return t.columns[i]; }),
      t.rows.map(function (r) { return keep.map(function (i) { return r[i]; }); }), "summary-table"));
  }

  function drawComparisons(exp, metric) {
    var t = exp.comparisons;
    var mcol = t.columns.indexOf("metric");
    var rows = t.rows.filter(function (r) { return !metric || r[mcol] === metric; });
    // A long text column with one value in every row (the method) becomes a note.
    var notes = [];
    var keep = t.columns.map(function (c, i) {
      var first = t.rows[0][i];
      var constant = typeof first === "string" && first.length > 40 &&
        t.rows.every(function (r) { return r[i] === first; });
      if (constant) notes.push(c + ": " + first);
      return constant ? -1 : i;
    }).filter(function (i) { return i >= 0; });
    $("comparisons-method").textContent = notes.join(" · ");
    $("comparisons").replaceChildren(sortableTable(keep.map(function (i) { return t.columns[i]; }),
      rows.map(function (r) { return keep.map(function (i) { return r[i]; }); }), "comparisons-table"));
  }

  // ------------------------------------------------------------------ tabs, events, start

  function showTab(name) {
    state.tab = name;
    document.querySelectorAll(".tabs [data-tab]").forEach(function (button) {
      button.setAttribute("aria-selected", button.dataset.tab === name ? "true" : "false");
    });
    document.querySelectorAll(".view").forEach(function (view) {
      view.hidden = view.id !== "view-" + name;
    });
    if (name === "compare" && state.compareDirty) renderCompare();
    if (T2I.vote) T2I.vote.shown(name === "vote");
  }

  function bind() {
    $("experiment").addEventListener("change", function () { selectExperiment(this.value); });
    document.querySelectorAll(".tabs [data-tab]").forEach(function (button) {
      button.addEventListener("click", function () { showTab(button.dataset.tab); });
    });
    $("rows").addEventListener("change", function () { onAxisChange("rows"); });
    $("cols").addEventListener("change", function () { onAxisChange("cols"); });
    AXES.forEach(function (axis) {
      $("filter-" + axis).addEventListener("change", function () {
        state.grid.filters[axis] = this.value;
        state.grid.page = 0;
        renderGrid();
      });
    });
    $("filter-verdict").addEventListener("change", function () {
      state.grid.verdict = this.value;
      state.grid.page = 0;
      renderGrid();
    });
    $("metric").addEventListener("change", function () {
      state.grid.metric = this.value;
      renderGrid();
    });
    $("tile-size").addEventListener("change", function () {
      document.documentElement.style.setProperty("--tile", this.value + "px");
    });
    $("grid-controls").addEventListener("submit", function (e) { e.preventDefault(); });
    document.querySelectorAll('input[name="mode"]').forEach(function (radio) {
      radio.addEventListener("change", function () {
        state.mode = radio.value;
        renderCompare();
      });
    });
    buildPicker("A");
    buildPicker("B");
    $("lightbox-close").addEventListener("click", closeLightbox);
    $("lightbox").addEventListener("click", function (e) {
      if (e.target === this) closeLightbox();
    });
    document.addEventListener("keydown", onKey);
  }

  function onKey(e) {
    if (e.key === "Escape" && !$("lightbox").hidden) {
      closeLightbox();
      return;
    }
    var typing = e.target && (e.target.tagName === "INPUT" && e.target.type === "text" ||
      e.target.tagName === "TEXTAREA");
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if ((e.key === "t" || e.key === "T") && state.tab === "compare" && state.mode === "toggle") {
      e.preventDefault();
      toggleAB();
    }
  }

  /* Mark the page ready (data-ready), then mark when the visible thumbnails have loaded
   * (data-thumbs-ready): both hold performance.now() in ms. */
  function markReady() {
    var root = document.documentElement;
    var visible = Array.prototype.filter.call(document.querySelectorAll("#grid img.thumb"), function (img) {
      var r = img.getBoundingClientRect();  // lays the page out, so data-ready counts layout
      return r.top < window.innerHeight && r.bottom > 0 && r.left < window.innerWidth && r.right > 0;
    });
    root.setAttribute("data-ready", performance.now().toFixed(1));
    Promise.all(visible.map(function (img) {
      if (img.complete) return Promise.resolve();
      return new Promise(function (resolve) {
        img.addEventListener("load", resolve, { once: true });
        img.addEventListener("error", resolve, { once: true });
      });
    })).then(function () {
      root.setAttribute("data-thumbs-ready", performance.now().toFixed(1));
    });
  }

  function start() {
    if (!DATA || !Array.isArray(DATA.experiments) || !DATA.experiments.length) {
      showMessages(["No data: data.js is missing or holds no experiment. Rebuild the viewer."], "error");
      return;
    }
    prepare();
    setOptions($("experiment"), DATA.experiments.map(function (e) {
      return [e.name, e.name + " (" + e.images.length + " images)"];
    }), DATA.experiments[0].name);
    bind();
    showTab("grid");
    selectExperiment(DATA.experiments[0].name);
    markReady();
  }

  T2I.viewer = { state: state, selectExperiment: selectExperiment, setSide: setSide,
    showTab: showTab, renderGrid: renderGrid };
  start();
})();
