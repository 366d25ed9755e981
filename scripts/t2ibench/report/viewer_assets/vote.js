/* t2ibench viewer, Vote view: blind A/B votes between two images of one prompt and seed
 * from two models (same cell) or two cells (same model) of the experiment. Sides are
 * random, labels and metrics are hidden until the vote; the votes are kept in the
 * browser (localStorage, per experiment) and exported as a vote file that the workflow
 * reads from its `votes/` folder (t2ibench.human). Every text is inserted as text.
 *
 * Keys: Left arrow or 1 = left, Right arrow or 2 = right, Down arrow or 0 = tie,
 * S = skip, U or Backspace = undo the last vote.
 */
(function () {
  "use strict";

  var T2I = (window.T2I = window.T2I || {});
  var FORMAT = "t2ibench-votes";
  var VERSION = 1;
  var store = null;
  try { store = window.localStorage; } catch (e) { store = null; }

  var state = { exp: null, book: null, queue: [], current: null, last: null, visible: false };

  function $(id) { return document.getElementById(id); }

  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      var value = props[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else if (key === "checked" || key === "value") node[key] = value;
      else node.setAttribute(key, String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  // A small seeded generator (mulberry32): the same voter sees the same order.
  function random(seed) {
    var a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      var t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function shuffle(list, next) {
    for (var i = list.length - 1; i > 0; i--) {
      var j = Math.floor(next() * (i + 1));
      var t = list[i]; list[i] = list[j]; list[j] = t;
    }
    return list;
  }

  function key(exp) { return "t2ibench-votes:v" + VERSION + ":" + exp.vote_name; }

  function load(exp) {
    var book = null;
    try { book = JSON.parse((store && store.getItem(key(exp))) || "null"); } catch (e) { book = null; }
    if (!book || !Array.isArray(book.votes)) {
      book = { voter: (store && store.getItem("t2ibench-voter")) || "", votes: [], again: false,
        voter_id: "v" + Math.floor(Math.random() * 1e12).toString(36),
        seed: Math.floor(Math.random() * 4294967296) };
    }
    return book;
  }

  function save() {
    if (!store || !state.exp) return;
    try {
      store.setItem(key(state.exp), JSON.stringify(state.book));
      store.setItem("t2ibench-voter", state.book.voter || "");
    } catch (e) { /* storage full or off: the votes live until the page closes */ }
  }

  var HTTP = location.protocol === "http:" || location.protocol === "https:";

  /* An image's pixels under a URL that does not name its model or cell: served, the
   * original file as a blob; from disk, its pixel copy (px/<key>.js, a data: URL). */
  function blind(img, done) {
    if (HTTP) {
      fetch(img.path).then(function (r) { return r.blob(); })
        .then(function (b) { done(URL.createObjectURL(b)); }, function () { done(null); });
      return;
    }
    T2I.pixels = T2I.pixels || {};
    if (T2I.pixels[img.px]) { done(T2I.pixels[img.px]); return; }
    var script = document.createElement("script");
    script.src = "px/" + img.px + ".js";
    script.onload = function () { done(T2I.pixels[img.px] || null); script.remove(); };
    script.onerror = function () { done(null); script.remove(); };
    document.head.appendChild(script);
  }

  function show(node, img, pair) {
    blind(img, function (src) {
      if (state.current !== pair || !src) return;  // another pair by now
      node.src = src;
    });
  }

  function votePath(exp, img) { return exp.vote_name + "/" + img.model + "/" + img.cell + "/" + img.file; }

  function pairKey(a, b) { return [a, b].sort().join("|"); }

  /* Every pair of arms that the findings compare (cells of one model, models of one
   * cell), each with its image pairs (same prompt and seed) in a shuffled order; the
   * queue takes one pair of each arm pair in turn, so every arm pair gets votes. */
  function buildQueue() {
    var exp = state.exp, next = random(state.book.seed);
    var byKey = {};
    exp.images.forEach(function (img) {
      if (img.px && img.sha256) byKey[[img.model, img.cell, img.prompt, img.seed].join("\u0000")] = img;
    });
    var groups = [];
    if (exp.cells.length > 1) {
      exp.models.forEach(function (m) {
        groups.push(exp.cells.map(function (c) { return [m, c]; }));
      });
    }
    if (exp.models.length > 1) {
      exp.cells.forEach(function (c) {
        groups.push(exp.models.map(function (m) { return [m, c]; }));
      });
    }
    var voted = {};
    if (!state.book.again) {
      state.book.votes.forEach(function (v) { voted[pairKey(v.left.path, v.right.path)] = true; });
    }
    var lists = [];
    groups.forEach(function (arms) {
      for (var i = 0; i < arms.length; i++) {
        for (var j = i + 1; j < arms.length; j++) {
          var list = [];
          exp.prompts.forEach(function (p) {
            exp.seeds.forEach(function (s) {
              var a = byKey[[arms[i][0], arms[i][1], p.index, s].join("\u0000")];
              var b = byKey[[arms[j][0], arms[j][1], p.index, s].join("\u0000")];
              if (a && b && !voted[pairKey(votePath(exp, a), votePath(exp, b))]) list.push([a, b]);
            });
          });
          if (list.length) lists.push(shuffle(list, next));
        }
      }
    });
    shuffle(lists, next);
    var queue = [];
    for (var round = 0; lists.some(function (l) { return round < l.length; }); round++) {
      lists.forEach(function (l) { if (round < l.length) queue.push(l[round]); });
    }
    state.queue = queue;
    state.side = next;
  }

  function take() {
    var pair = state.queue.shift();
    if (!pair) { state.current = null; return; }
    var flip = state.side() < 0.5;
    state.current = { left: flip ? pair[1] : pair[0], right: flip ? pair[0] : pair[1] };
  }

  function promptText(exp, index) {
    for (var i = 0; i < exp.prompts.length; i++) {
      if (exp.prompts[i].index === index) return exp.prompts[i].text || "";
    }
    return "";
  }

  function label(img) {
    var exp = state.exp;
    var parts = [];
    if (exp.models.length > 1) parts.push(img.model);
    if (exp.cells.length > 1) parts.push(img.cell);
    return parts.join(" / ") || img.model;
  }

  function render() {
    var box = $("vote");
    if (!box || !state.exp) return;
    box.replaceChildren();
    var exp = state.exp, book = state.book;
    var name = el("input", { type: "text", id: "vote-voter", value: book.voter || "",
      placeholder: "optional", "aria-label": "Your name",
      onchange: function () { book.voter = this.value; save(); } });
    var again = el("input", { type: "checkbox", id: "vote-again", checked: !!book.again,
      onchange: function () { book.again = this.checked; save(); buildQueue(); take(); render(); } });
    box.appendChild(el("div", { class: "controls" }, [
      el("label", null, ["Voter ", name]),
      el("label", null, [again, " show pairs I voted on again"]),
      el("button", { type: "button", id: "vote-export", onclick: exportVotes }, ["Export votes"]),
    ]));
    box.appendChild(el("p", { id: "vote-progress", class: "note",
      text: book.votes.length + " vote(s) on this experiment; " +
        (state.current ? state.queue.length + 1 : 0) + " pair(s) left" }));
    if (state.last) {
      var l = state.last;
      box.appendChild(el("p", { id: "vote-reveal", class: "note",
        text: "Last vote: left was " + l.left + ", right was " + l.right + "; you chose " + l.choice + "." }));
    }
    if (!state.current) {
      var why = exp.models.length < 2 && exp.cells.length < 2
        ? "Nothing to vote on: this experiment has one model and one cell."
        : "No pair left to vote on. Export the votes and put the file in the workflow's votes/ folder.";
      box.appendChild(el("p", { id: "vote-done", text: why }));
      return;
    }
    var cur = state.current;
    var shown = el("div", { id: "vote-current" });
    box.appendChild(shown);
    shown.appendChild(el("p", { class: "vote-prompt" }, [
      el("strong", null, ["Prompt: "]), el("span", { id: "vote-prompt", text: promptText(exp, cur.left.prompt) }),
    ]));
    var left = el("img", { id: "vote-left", alt: "left image" });
    var right = el("img", { id: "vote-right", alt: "right image" });
    shown.appendChild(el("div", { class: "vote-pair" }, [
      el("figure", null, [left]), el("figure", null, [right]),
    ]));
    show(left, cur.left, cur);
    show(right, cur.right, cur);
    shown.appendChild(el("div", { class: "vote-buttons" }, [
      el("button", { type: "button", id: "vote-choose-left", onclick: function () { choose("left"); } }, ["\u2190 Left (1)"]),
      el("button", { type: "button", id: "vote-choose-tie", onclick: function () { choose("tie"); } }, ["Tie (\u2193 / 0)"]),
      el("button", { type: "button", id: "vote-choose-right", onclick: function () { choose("right"); } }, ["Right \u2192 (2)"]),
      el("button", { type: "button", id: "vote-skip", onclick: skip }, ["Skip (S)"]),
      el("button", { type: "button", id: "vote-undo", onclick: undo, disabled: !book.votes.length }, ["Undo (U)"]),
    ]));
  }

  function choose(choice) {
    var cur = state.current;
    if (!cur) return;
    var exp = state.exp;
    state.book.votes.push({
      left: { path: votePath(exp, cur.left), sha256: cur.left.sha256 },
      right: { path: votePath(exp, cur.right), sha256: cur.right.sha256 },
      choice: choice,
      time: new Date().toISOString(),
    });
    save();
    state.last = { left: label(cur.left), right: label(cur.right), choice: choice };
    state.undo = state.undo || [];
    state.undo.push([cur.left, cur.right]);
    take();
    render();
  }

  function skip() {
    if (!state.current) return;
    state.queue.push([state.current.left, state.current.right]);
    take();
    render();
  }

  function undo() {
    if (!state.book.votes.length) return;
    state.book.votes.pop();
    save();
    var pair = (state.undo || []).pop();
    if (state.current) state.queue.unshift([state.current.left, state.current.right]);
    if (pair) state.current = { left: pair[0], right: pair[1] };
    else { buildQueue(); take(); }
    state.last = null;
    render();
  }

  function exportVotes() {
    var exp = state.exp, book = state.book;
    var file = {
      format: FORMAT,
      version: VERSION,
      experiment: exp.vote_name,
      voter: book.voter || "",
      voter_id: book.voter_id,
      exported: new Date().toISOString(),
      votes: book.votes,
    };
    var blob = new Blob([JSON.stringify(file, null, 1)], { type: "application/json" });
    var who = (book.voter || book.voter_id).replace(/[^A-Za-z0-9_-]+/g, "_");
    var a = el("a", { href: URL.createObjectURL(blob), download: "votes-" + exp.vote_name + "-" + who + ".json" });
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function onKey(e) {
    if (!state.visible) return;
    var typing = e.target && (e.target.tagName === "INPUT" && e.target.type === "text" ||
      e.target.tagName === "TEXTAREA" || e.target.tagName === "SELECT");
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    var actions = { ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right",
      ArrowDown: "tie", "0": "tie" };
    if (actions[e.key]) { e.preventDefault(); choose(actions[e.key]); }
    else if (e.key === "s" || e.key === "S") { e.preventDefault(); skip(); }
    else if (e.key === "u" || e.key === "U" || e.key === "Backspace") { e.preventDefault(); undo(); }
  }

  document.addEventListener("keydown", onKey);

  T2I.vote = {
    experiment: function (exp) {
      state.exp = exp;
      state.book = load(exp);
      state.last = null;
      state.undo = [];
      buildQueue();
      take();
      render();
    },
    shown: function (visible) { state.visible = visible; },
    state: state,
  };
})();
