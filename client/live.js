/* fresco live.js — keeps the images of a page current: when an image served by this edge is
 * purged, the new bytes replace it in place, without a reload. Served by every edge at
 * /_fresco/live.js; the wire contract is docs/feed.md, the behaviour docs/live.md.
 * Opt out an image (or a whole section) with data-fresco-live="off". */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.EventSource || !window.fetch || window.frescoLive) return;
  var edge = new URL(script.src, location.href).origin;
  // A feed URL stays under this length (proxies and servers cap request lines near 8 KB), and
  // follows at most this many URLs (the edge's default feed.max_subscriptions is 256).
  var MAX_URL = 6000, MAX_PER_FEED = 200;

  var tracked = new Map(); // path -> Set of <img>/<source> showing it
  var original = new WeakMap(); // element -> {src, srcset}: the attributes the page wrote
  var shown = new WeakMap(); // element -> {src, srcset}: the attributes live.js wrote
  var current = new Map(); // path -> object URL of its newest bytes
  var refreshing = new Map(); // path -> {busy, again: seq or null}
  var feeds = [];
  var live = (window.frescoLive = {
    edge: edge,
    tracked: tracked,
    feeds: feeds,
    lastEventId: null, // the lowest position of the feeds: everything up to it was seen
    hellos: 0,
    swaps: 0,
    refresh: refreshAll,
  });

  // The same-edge paths of a src or srcset value.
  function pathOf(u) {
    try {
      var url = new URL(u, document.baseURI);
      return url.origin === edge ? url.pathname + url.search : null;
    } catch (e) {
      return null;
    }
  }
  function candidates(srcset) {
    // "a.jpg 1x, b.jpg 2x": URLs do not contain ", " in practice (commas in URLs are rare
    // and srcset itself forbids a URL ending with one).
    return (srcset || "").split(/,\s+/).map(function (c) {
      var m = /^\s*(\S+)(.*)$/.exec(c);
      return m ? { url: m[1], rest: m[2] } : null;
    }).filter(Boolean);
  }

  // What the page meant an element to show: its attributes, unless they are the ones we wrote.
  function pageAttributes(el) {
    var now = { src: el.getAttribute("src"), srcset: el.getAttribute("srcset") };
    var mine = shown.get(el);
    if (!mine || mine.src !== now.src || mine.srcset !== now.srcset) {
      original.set(el, now);
      shown.delete(el);
    }
    return original.get(el);
  }
  function pathsOf(el) {
    var a = pageAttributes(el), out = [];
    if (el.tagName === "IMG" && a.src) out.push(pathOf(a.src));
    candidates(a.srcset).forEach(function (c) { out.push(pathOf(c.url)); });
    return out.filter(Boolean);
  }

  function scan() {
    var before = Array.from(tracked.keys()).sort().join("\n");
    tracked.clear();
    document.querySelectorAll("img, picture > source").forEach(function (el) {
      if (el.closest('[data-fresco-live="off"]')) return;
      pathsOf(el).forEach(function (p) {
        if (!tracked.has(p)) tracked.set(p, new Set());
        tracked.get(p).add(el);
      });
    });
    if (Array.from(tracked.keys()).sort().join("\n") !== before) subscribe();
  }

  // Rewrites an element's attributes with the newest bytes of each path it shows.
  function render(el) {
    var a = original.get(el);
    if (!a) return;
    var swap = function (u) { var p = pathOf(u); return (p && current.get(p)) || u; };
    var next = {
      src: a.src && el.tagName === "IMG" ? swap(a.src) : a.src,
      srcset: a.srcset && candidates(a.srcset).map(function (c) { return swap(c.url) + c.rest; }).join(", "),
    };
    shown.set(el, next);
    if (next.src !== null && el.getAttribute("src") !== next.src) el.setAttribute("src", next.src);
    if (next.srcset && el.getAttribute("srcset") !== next.srcset) el.setAttribute("srcset", next.srcset);
  }

  // A URL of the new bytes of `path`. Same-origin (or CORS-enabled) images are fetched past
  // the browser's HTTP cache, from the same URL (the same cache key on the edge), into an
  // object URL. A cross-origin image whose edge sends no Access-Control-Allow-Origin cannot be
  // read: it is loaded from a variant URL, ?fresco=<seq>, a new key unless the site's
  // ignore_query lists `fresco`.
  var readable = true;
  function newBytes(path, seq) {
    var variant = function () {
      return edge + path + (path.indexOf("?") < 0 ? "?" : "&") + "fresco=" + (seq === null ? Date.now() : seq);
    };
    if (!readable) return Promise.resolve(variant());
    return fetch(edge + path, { cache: "reload" }).then(function (r) {
      if (!r.ok) throw new Error(path + ": " + r.status);
      return r.blob().then(function (blob) { return URL.createObjectURL(blob); });
    }, function (e) {
      if (edge === location.origin) throw e;
      readable = false; // most likely CORS: the browser does not tell
      return variant();
    });
  }
  function revoke(url) {
    if (url && url.lastIndexOf("blob:", 0) === 0) URL.revokeObjectURL(url);
  }

  // Fetches the new bytes of `path` past the browser's HTTP cache, decodes them, then swaps
  // every element showing it. A change that arrives meanwhile is fetched once this one is done.
  function refresh(path, seq) {
    var state = refreshing.get(path);
    if (state) { state.again = seq; return; }
    state = { again: null };
    refreshing.set(path, state);
    newBytes(path, seq)
      .then(function (url) {
        var probe = new Image();
        probe.src = url;
        // Decode before swapping: the element goes from the old picture to the new one
        // with no blank frame. Elements keep their width/height (only URLs change).
        return probe.decode().then(function () { return url; }, function (e) {
          revoke(url);
          throw e;
        });
      })
      .then(function (url) {
        var old = current.get(path);
        current.set(path, url);
        var els = Array.from(tracked.get(path) || []);
        var imgs = new Set();
        els.forEach(function (el) {
          render(el);
          imgs.add(el.tagName === "IMG" ? el : el.parentNode && el.parentNode.querySelector("img"));
        });
        return Promise.all(Array.from(imgs).filter(Boolean).map(function (img) {
          return img.decode().catch(function () {}).then(function () {
            live.swaps++;
            img.dispatchEvent(new CustomEvent("fresco:swap", {
              bubbles: true,
              detail: { url: path, seq: seq, at: performance.timeOrigin + performance.now() },
            }));
          });
        })).then(function () { revoke(old); });
      })
      .catch(function (e) { console.warn("fresco live.js:", e); })
      .then(function () {
        refreshing.delete(path);
        if (state.again !== null) refresh(path, state.again);
      });
  }
  function refreshAll(seq) {
    tracked.forEach(function (_, path) { refresh(path, seq === undefined ? null : seq); });
  }

  // The feeds: one EventSource per MAX_PER_FEED paths (one for any ordinary page).
  function subscribe() {
    var from = live.lastEventId;
    feeds.splice(0).forEach(function (f) { f.close(); });
    var paths = Array.from(tracked.keys()), query = "";
    var count = 0;
    paths.forEach(function (p, i) {
      var part = "url=" + encodeURIComponent(p);
      if (query && (query.length + part.length > MAX_URL || count >= MAX_PER_FEED)) {
        feeds.push(feed(query, from));
        query = "";
        count = 0;
      }
      query += (query ? "&" : "") + part;
      count++;
      if (i === paths.length - 1) feeds.push(feed(query, from));
    });
  }

  function feed(query, from) {
    var f = { query: query, lastEventId: from, source: null, backoff: 250, timer: null, closed: false };
    f.close = function () {
      f.closed = true;
      clearTimeout(f.timer);
      if (f.source) f.source.close();
    };
    f.open = function () {
      var url = edge + "/_fresco/events?" + query;
      // With no position yet, the page's age: the edge first tells of what was purged since
      // the page loaded, which its images may predate.
      if (f.lastEventId !== null) url += "&last_event_id=" + encodeURIComponent(f.lastEventId);
      else url += "&age_ms=" + Math.round(performance.now());
      var es = (f.source = new EventSource(url));
      function seen(e) {
        if (e.lastEventId) f.lastEventId = +e.lastEventId;
        var ids = feeds.map(function (g) { return g.lastEventId; }).filter(function (id) { return id !== null; });
        live.lastEventId = ids.length ? Math.min.apply(null, ids) : null;
      }
      es.addEventListener("hello", function (e) {
        f.backoff = 250;
        live.hellos++;
        seen(e);
      });
      es.addEventListener("change", function (e) {
        seen(e);
        var d = JSON.parse(e.data);
        if (d.url !== null && tracked.has(d.url)) refresh(d.url, d.seq);
        else if (d.url === null) refreshAll(d.seq); // a tag with no URL known: refresh all
      });
      es.addEventListener("reset", function (e) {
        seen(e);
        refreshAll(JSON.parse(e.data).seq);
      });
      es.onerror = function () {
        // EventSource reconnects by itself after a network error (with Last-Event-ID); it
        // gives up (CLOSED) on an HTTP error, e.g. a 503 from a restarting edge: retry then.
        if (es.readyState !== EventSource.CLOSED || f.closed) return;
        f.timer = setTimeout(f.open, f.backoff);
        f.backoff = Math.min(f.backoff * 2, 10000);
      };
    };
    f.open();
    return f;
  }

  var pending = false;
  function scanSoon() {
    if (pending) return;
    pending = true;
    setTimeout(function () { pending = false; scan(); }, 50);
  }
  new MutationObserver(function (records) {
    // Our own swaps change src/srcset too; only what the page does calls for a new scan.
    var mine = records.every(function (r) {
      var s = r.type === "attributes" && shown.get(r.target);
      return s && r.target.getAttribute(r.attributeName) === s[r.attributeName];
    });
    if (!mine) scanSoon();
  }).observe(document.documentElement, {
    childList: true,
    subtree: true,
    attributes: true,
    attributeFilter: ["src", "srcset", "data-fresco-live"],
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
