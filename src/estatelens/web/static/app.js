/* estatelens page: search, browse, review. Plain JavaScript, no dependencies.
 *
 * Routes (in the URL hash, so reload and the back button work):
 *   #/search?q=&level=&room=&attr.NAME=yes|no&corrected=1&page=&per_page=
 *   #/photo/ID
 *   #/listing/ID?matched=ID,ID   (photos that matched the listing search that led here)
 *   #/label                      (photos to label next: those the model is least sure of)
 *
 * Every string from the server or the user is put into the page as text (textContent or
 * attributes set through the DOM), never as HTML.
 */
"use strict";

const TOKEN_KEY = "estatelens.token";
const PER_PAGE = 24;
const CHECK_FILTERS = ["quality=fail", "watermark=yes", "duplicates", "duplicates=across", "faces>0"];  // the Checks select's options

const state = {
  vocab: { rooms: [], attributes: [], listing_columns: [], synonyms: {} },
  health: null,
  lastSearch: "#/search",   // the hash of the last search shown, for "back to results"
  seq: 0,                   // render counter: answers for an older view are dropped
};

// --- small helpers -------------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

/** Make an element. props: class, testid, dataset, on<event>, DOM properties, else attributes. */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "testid") el.dataset.testid = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") el.style.cssText = v;  // through the CSSOM: the page's CSP allows no style attributes
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (typeof v !== "string" && k in el) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid == null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const label = (name) => String(name ?? "").replace(/_/g, " ");
const Label = (name) => { const t = label(name); return t.charAt(0).toUpperCase() + t.slice(1); };

/** Replace an element's children; null and false are left out, arrays are flattened. */
function fill(el, ...kids) {
  el.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
  return el;
}
const pct = (p) => (p == null ? "–" : `${Math.round(p * 100)}%`);
const pct1 = (p) => (p == null ? "–" : `${(p * 100).toFixed(1)}%`);

function factText(name, value) {
  if (typeof value === "number" && /price|pris|area|sqft|sqm|^value/i.test(name) && name !== "price_to_value") return value.toLocaleString("en-US");
  return String(value);
}

// Listing columns a value model writes (index --value-model): shown in their own box, not as facts.
const VALUE_FACTS = new Set(["value", "value_low", "value_high", "value_basis", "value_drivers", "value_note", "price_to_value"]);

function valueBox(f) {
  if (typeof f.value !== "number") return null;
  const money = (v) => (typeof v === "number" ? v.toLocaleString("en-US") : "?");
  return h("section", { class: "value-box", testid: "value-estimate" },
    h("h2", null, "Estimated value"),
    h("p", { class: "value-figure" }, h("strong", { testid: "value" }, money(f.value)),
      h("span", { class: "muted", testid: "value-interval" }, ` 80 % interval ${money(f.value_low)} – ${money(f.value_high)}`)),
    typeof f.price_to_value === "number"
      ? h("p", { testid: "price-to-value" }, `The price is ${Math.round(f.price_to_value * 100)} % of the estimate.`) : null,
    f.value_drivers ? h("p", { testid: "value-drivers" }, "Moved most by: ", String(f.value_drivers)) : null,
    h("p", { class: "muted" }, `From the ${f.value_basis || "facts"}`, f.value_note ? ` · ${f.value_note}` : ""));
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function errorText(resp) {
  let text = "";
  try { text = await resp.text(); } catch (_) { /* nothing to read */ }
  try {
    const body = JSON.parse(text);
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
  } catch (_) { /* not JSON */ }
  return text.trim().slice(0, 300) || `${resp.status} ${resp.statusText}`;
}

let pendingReads = 0;
/** GET a JSON answer. body[data-pending] counts the reads on their way (0: the page is settled). */
async function getJSON(url) {
  document.body.dataset.pending = String(++pendingReads);
  try {
    // With the write token, the server shows photos' full paths; without it, file names.
    const token = getToken();
    const headers = token ? { Accept: "application/json", Authorization: `Bearer ${token}` } : { Accept: "application/json" };
    const resp = await fetch(url, { headers });
    if (!resp.ok) throw new ApiError(resp.status, await errorText(resp));
    return await resp.json();
  } finally {
    document.body.dataset.pending = String(--pendingReads);
  }
}

// --- notices -------------------------------------------------------------------------------------

let noticeTimer = null;
function notice(message, kind = "ok") {
  const el = $("#notice");
  el.replaceChildren(h("span", null, message),
    h("button", { type: "button", class: "link", "aria-label": "Close", onclick: () => { el.hidden = true; } }, "×"));
  el.className = `notice ${kind}`;
  el.hidden = false;
  clearTimeout(noticeTimer);
  if (kind === "ok") noticeTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

// --- the write token -----------------------------------------------------------------------------

const getToken = () => localStorage.getItem(TOKEN_KEY) || "";
function setToken(t) {
  if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
  $("#token-forget").hidden = !t;
}

/** A token given as ?token=XYZ is kept and taken out of the address bar. */
function takeTokenFromURL() {
  const url = new URL(location.href);
  const t = url.searchParams.get("token");
  if (t == null) return;
  setToken(t.trim());
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

let tokenWaiter = null;
/** Show the token form; resolves true once a token is saved, false when cancelled. */
function askToken(problem) {
  const panel = $("#token-panel");
  const err = $("#token-error");
  err.textContent = problem || "";
  err.hidden = !problem;
  $("#token-input").value = "";
  panel.hidden = false;
  $("#token-input").focus();
  if (tokenWaiter) tokenWaiter(false);
  return new Promise((resolve) => { tokenWaiter = resolve; });
}

function closeToken(ok) {
  $("#token-panel").hidden = true;
  const w = tokenWaiter;
  tokenWaiter = null;
  if (w) w(ok);
}

/** A write (PUT, DELETE, POST): sends the token; on 401/403 asks for it and tries again. */
async function write(method, url, body) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body != null) { payload = JSON.stringify(body); headers["Content-Type"] = "application/json"; }
    const resp = await fetch(url, { method, headers, body: payload });
    if (resp.status === 401 || resp.status === 403) {
      const detail = await errorText(resp);
      if (resp.status === 403) setToken("");
      const problem = resp.status === 403 ? `The server refused the token: ${detail}. Check it and try again.` : null;
      if (!(await askToken(problem))) throw new ApiError(resp.status, detail);
      continue;
    }
    if (!resp.ok) throw new ApiError(resp.status, await errorText(resp));
    return resp.json();
  }
}

// --- routing -------------------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/search";
  const i = raw.indexOf("?");
  const path = i < 0 ? raw : raw.slice(0, i);
  const params = new URLSearchParams(i < 0 ? "" : raw.slice(i + 1));
  const parts = path.split("/").filter(Boolean).map((p) => decodeURIComponent(p));
  return { parts, params };
}

/**
 * Show HASH now. The history entry is pushed and the view routed in the same task as the click or
 * key that asked for it: setting location.hash would route later, on "hashchange", and whatever
 * the user typed or clicked meanwhile would be read against the old view's controls and then
 * overwritten by them (on a busy machine: "Listings", then a quick search, searched photos).
 * Back, forward and plain links still arrive as "hashchange".
 */
function go(hash) {
  if (location.hash !== hash) history.pushState(history.state, "", hash);
  route();
}

function route() {
  const { parts, params } = parseHash();
  const seq = ++state.seq;
  window.scrollTo(0, 0);
  $("#filters").hidden = !(parts.length === 0 || parts[0] === "search");
  if (parts[0] === "photo" && parts[1]) return showPhoto(parts[1], seq);
  if (parts[0] === "listing" && parts[1]) return showListing(parts[1], params, seq);
  if (parts[0] === "label") return showSuggestions(seq);
  return showSearch(params, seq);
}

function backLink() {
  return h("a", { href: state.lastSearch, class: "back", testid: "back-link" }, "← Back to results");
}

// --- search --------------------------------------------------------------------------------------

function searchFromParams(params) {
  const attrs = {};
  for (const a of state.vocab.attributes) {
    const v = params.get(`attr.${a}`);
    if (v === "yes" || v === "no") attrs[a] = v;
  }
  const level = params.get("level");
  return {
    q: params.get("q") || "",
    level: level === "photo" || level === "listing" ? level : "",
    room: state.vocab.rooms.includes(params.get("room")) ? params.get("room") : "",
    attrs,
    corrected: params.get("corrected") === "1",
    check: CHECK_FILTERS.includes(params.get("check")) ? params.get("check") : "",
    page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1),
    perPage: Math.min(200, Math.max(1, parseInt(params.get("per_page") || "", 10) || PER_PAGE)),
  };
}

function searchHash(s) {
  const p = new URLSearchParams();
  if (s.q) p.set("q", s.q);
  if (s.level) p.set("level", s.level);
  if (s.room) p.set("room", s.room);
  for (const [a, v] of Object.entries(s.attrs)) if (v) p.set(`attr.${a}`, v);
  if (s.corrected) p.set("corrected", "1");
  if (s.check) p.set("check", s.check);
  if (s.page > 1) p.set("page", String(s.page));
  if (s.perPage && s.perPage !== PER_PAGE) p.set("per_page", String(s.perPage));
  const qs = p.toString();
  return `#/search${qs ? `?${qs}` : ""}`;
}

/** The query sent: the words typed, then one filter token per control that is set. */
function composeQuery(s) {
  const parts = [s.q.trim()];
  if (s.room) parts.push(`room=${s.room}`);
  for (const [a, v] of Object.entries(s.attrs)) if (v) parts.push(`${a}=${v}`);
  if (s.corrected) parts.push("corrected=yes");
  if (s.check) parts.push(s.check);
  return parts.filter(Boolean).join(" ");
}

/** The search the controls describe now (the box, the selects, the toggle). */
function searchFromControls(level) {
  const attrs = {};
  for (const sel of document.querySelectorAll("#filter-attrs select")) if (sel.value) attrs[sel.dataset.attr] = sel.value;
  return {
    q: $("#search-input").value.trim(),
    level: level ?? currentLevel,
    room: $("#filter-room").value,
    attrs,
    corrected: $("#filter-corrected").checked,
    check: $("#filter-check").value,
    page: 1,
    perPage: currentPerPage,
  };
}

let currentLevel = "";
let currentPerPage = PER_PAGE;

function setControls(s) {
  $("#search-input").value = s.q;
  $("#filter-room").value = s.room;
  for (const sel of document.querySelectorAll("#filter-attrs select")) sel.value = s.attrs[sel.dataset.attr] || "";
  $("#filter-corrected").checked = s.corrected;
  $("#filter-check").value = s.check || "";
  currentLevel = s.level;
  currentPerPage = s.perPage;
}

function showLevel(level) {
  for (const b of document.querySelectorAll(".seg button")) b.setAttribute("aria-pressed", String(b.dataset.level === level));
}

function describeTerm(t) {
  if (t.kind === "room") {
    const names = t.name.split("|").map(label).join(" or ");
    return t.op === "not" ? `room is not ${names}` : `room: ${names}`;
  }
  if (t.kind === "attribute") {
    if (t.op === "yes" || t.op === "no") return `${label(t.name)}: ${t.op}`;
    return `${label(t.name)} ${t.op} ${t.value}`;
  }
  if (t.kind === "check") {
    if (t.name === "quality") return `quality: ${t.op}`;
    if (t.name === "faces") return `faces ${t.op} ${t.value}`;
    if (t.name === "watermark") return `watermark: ${t.op}`;
    if (t.name === "watermark_probability") return `watermark ${t.op} ${t.value}`;
    return { yes: "near duplicates", no: "no near duplicates", across: "copied from another listing",
      "not across": "not copied from another listing" }[t.op] || `duplicates ${t.op}`;
  }
  return `${label(t.name)} ${t.op} ${t.value}`;
}

function interpretedBox(data) {
  const it = data.interpreted;
  const chips = [];
  chips.push(h("span", { class: "chip level", testid: "term" }, it.level === "listing" ? "listings" : "photos"));
  for (const t of [...it.terms, ...it.listing_filters]) {
    chips.push(h("span", { class: `chip ${t.kind}`, testid: "term", title: t.said ? `you wrote: ${t.said}` : null }, describeTerm(t)));
  }
  if (it.corrected === true) chips.push(h("span", { class: "chip", testid: "term" }, "corrected only"));
  if (it.corrected === false) chips.push(h("span", { class: "chip", testid: "term" }, "not corrected"));
  const box = [h("div", { class: "interpreted", testid: "interpreted" }, h("span", { class: "muted" }, "Understood as"), chips)];
  if (it.ignored && it.ignored.length) {
    box.push(h("div", { class: "warning", testid: "ignored-warning", role: "alert" },
      "Not understood, ignored: ", it.ignored.map((w, i) => [i ? ", " : "", h("strong", null, w)]),
      h("span", { class: "muted" }, " — try a room type, an attribute, or a filter such as price<500000.")));
  }
  return box;
}

function pager(s, data) {
  const to = (page) => searchHash({ ...s, page });
  return h("nav", { class: "pager", testid: "pager", "aria-label": "Pages" },
    h("button", { type: "button", testid: "prev-page", disabled: data.page <= 1, onclick: () => go(to(data.page - 1)) }, "← Prev"),
    h("span", { testid: "page-info" }, `page ${data.page} of ${data.pages}`),
    h("button", { type: "button", testid: "next-page", disabled: data.page >= data.pages, onclick: () => go(to(data.page + 1)) }, "Next →"));
}

async function showSearch(params, seq) {
  const s = searchFromParams(params);
  setControls(s);
  state.lastSearch = searchHash(s);
  const view = $("#view");
  fill(view, h("p", { class: "muted loading", testid: "search-loading" }, "Searching…"));
  showLevel(s.level || "photo");
  const query = composeQuery(s);
  const url = new URLSearchParams({ q: query, page: String(s.page), per_page: String(s.perPage) });
  if (s.level) url.set("level", s.level);
  let data;
  try {
    data = await getJSON(`/api/search?${url}`);
  } catch (e) {
    if (seq !== state.seq) return;
    fill(view, h("div", { class: "error box", testid: "search-error", role: "alert" },
      h("strong", null, e.status === 400 ? "This query cannot be run: " : "Search failed: "), e.message));
    return;
  }
  if (seq !== state.seq) return;
  showLevel(data.level);
  const noun = data.level === "listing" ? (data.total === 1 ? "listing" : "listings") : (data.total === 1 ? "photo" : "photos");
  const head = h("div", { class: "summary" },
    h("h1", { testid: "result-count", dataset: { total: String(data.total), query, level: data.level, page: String(data.page) } },
      `${data.total.toLocaleString("en-US")} ${noun}`),
    data.pages > 1 ? h("span", { class: "muted" }, `page ${data.page} of ${data.pages}`) : null);
  const grid = h("div", { class: data.level === "listing" ? "grid listings" : "grid", testid: "results" },
    data.results.map((r) => (data.level === "listing" ? listingCard(r) : photoCard(r))));
  const empty = data.total === 0 ? h("p", { class: "empty", testid: "no-results" }, "Nothing found. Loosen a filter or try other words.") : null;
  if (data.total > 0 && data.results.length === 0) {
    fill(view, head, ...interpretedBox(data), h("p", { class: "empty" }, `There is no page ${data.page}. `,
      h("a", { href: searchHash({ ...s, page: 1 }) }, "Go to page 1")));
    return;
  }
  fill(view, head, ...interpretedBox(data), empty || grid, data.pages > 1 ? pager(s, data) : null);
}

function correctedAnywhere(p) {
  return p.room_corrected || Object.values(p.attributes || {}).some((a) => a.corrected);
}

function photoCard(p, opts = {}) {
  const yes = Object.entries(p.attributes || {}).filter(([, a]) => a.value === "yes");
  const ok = p.status === "ok";
  return h("a", {
    href: `#/photo/${p.id}`, class: `card photo-card${opts.matched ? " matched" : ""}`, testid: "photo-card",
    dataset: { id: String(p.id), room: p.room_type || "" },
  },
  h("div", { class: "thumb" },
    h("img", { loading: "lazy", src: `/api/photos/${p.id}/thumbnail`, alt: `${label(p.room_type || p.status)}, photo ${p.id}` }),
    opts.matched ? h("span", { class: "badge match", testid: "matched-badge" }, "matches") : null,
    p.reason === "unusual" ? h("span", { class: "badge unusual", testid: "unusual-badge",
      title: `unlike the photos the model was trained on (score ${p.unusual})` }, "unusual") : null),
  h("div", { class: "meta" },
    ok ? h("div", { class: "room" },
      h("span", { class: "room-name", testid: "card-room" }, Label(p.room_type)),
      p.room_corrected
        ? h("span", { class: "badge corrected", testid: "corrected-mark", title: `model said ${label(p.room_type_predicted)} (${pct(p.room_probability)})` }, "✓ corrected")
        : h("span", { class: "prob", testid: "card-prob" }, pct(p.room_probability)),
      p.also ? h("span", { class: "also", testid: "card-also", title: `open plan: also shows a ${label(p.also)} (${pct(p.also_probability)})` },
        `+ ${label(p.also)}`) : null)
      : h("div", { class: "room error" }, `not tagged: ${p.status}`),
    yes.length ? h("div", { class: "chips" }, yes.map(([name, a]) => h("span", {
      class: `chip attr${a.corrected ? " corrected" : ""}`, testid: "card-attr",
      title: a.corrected ? "corrected by a person" : `probability ${pct(a.probability)}`,
    }, label(name), a.corrected ? h("span", { testid: "corrected-mark" }, " ✓") : ` ${pct(a.probability)}`))) : null,
    !p.room_corrected && correctedAnywhere(p) ? h("span", { class: "badge corrected small", testid: "corrected-mark" }, "corrected") : null,
    checkBadges(p.checks),
    h("div", { class: "sub muted" }, p.listing_id != null ? `listing ${p.listing_id} · ` : "", `#${p.id}`)));
}

/** The failed listing checks of a photo as small badges (none where it passed or was not checked). */
function checkBadges(c) {
  if (!c) return null;
  const badges = [];
  if (c.quality === "fail") {
    badges.push(h("span", { class: "badge check", testid: "check-quality", title: c.quality_reasons.join("; ") },
      c.quality_reasons.map((r) => r.split(" (")[0]).join(", ")));
  }
  if (c.watermark === "yes") {
    badges.push(h("span", { class: "badge check", testid: "check-watermark",
      title: `watermark or overlaid text (probability ${c.watermark_probability})` }, "watermark"));
  }
  if (c.faces) badges.push(h("span", { class: "badge check", testid: "check-faces" }, `${c.faces} face${c.faces > 1 ? "s" : ""}`));
  if (c.duplicate_listings.length) {
    badges.push(h("span", { class: "badge check alarm", testid: "check-duplicate",
      title: `the same photo is in listing ${c.duplicate_listings.join(", ")}` }, `also in listing ${c.duplicate_listings.join(", ")}`));
  } else if (c.duplicates.length) {
    badges.push(h("span", { class: "badge check", testid: "check-duplicate", title: "a near copy of another photo of this listing" }, "near copy"));
  }
  return badges.length ? h("div", { class: "chips checks", testid: "card-checks" }, badges) : null;
}

/** A photo's listing checks, with the numbers behind them and links to its near copies. */
function checksSection(c) {
  if (!c) return null;
  const num = (v, unit = "") => (v == null ? "–" : `${v}${unit}`);
  const rows = [
    ["Quality", c.quality === "fail" ? `fails: ${c.quality_reasons.join("; ")}` : "passes"],
    ["Sharpness", num(c.sharpness)], ["Exposure", num(c.exposure, " stops")], ["Tilt", num(c.tilt_degrees, "°")],
    ["Colour cast", num(c.colour_cast)],
    ["Watermark", c.watermark == null ? "not looked for" : `${c.watermark} (probability ${num(c.watermark_probability)})`],
    ["Faces", c.faces == null ? "not looked for" : String(c.faces)],
  ];
  const copies = c.duplicates.length
    ? h("p", { testid: "photo-duplicates" }, "Near copies: ",
      c.duplicates.map((id, i) => [i ? ", " : "", h("a", { href: `#/photo/${id}` }, `#${id}`)]),
      c.duplicate_listings.length ? h("span", { class: "alarm" }, ` — also in listing ${c.duplicate_listings.join(", ")}`) : null)
    : null;
  return h("section", { testid: "photo-checks" }, h("h2", null, "Listing checks"),
    h("dl", { class: "checks-table" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])), copies);
}

/** Whether a listing's photos pass a portal's checks, in one line. */
function publishBox(c) {
  if (!c) return null;
  const problems = [];
  if (c.unusable) problems.push(`${c.unusable} file${c.unusable > 1 ? "s" : ""} not a usable photo`);
  if (c.quality_fail) problems.push(`${c.quality_fail} photo${c.quality_fail > 1 ? "s" : ""} fail quality`);
  if (c.with_watermark) problems.push(`${c.with_watermark} carry a watermark`);
  if (c.with_faces) problems.push(`${c.with_faces} show faces`);
  if (c.copied_from_other_listings) problems.push(`${c.copied_from_other_listings} also in other listings`);
  if (c.duplicates_within) problems.push(`${c.duplicates_within} near copies within the listing`);
  return h("p", { class: `box ${c.publishable ? "ok" : "warning"}`, testid: "publishability" },
    c.publishable ? `Ready to publish: all ${c.checked} checked photos pass.` : `Not ready to publish: ${problems.join(", ")}.`);
}

function factsLine(facts) {
  return Object.entries(facts).filter(([k]) => k === "value" || !VALUE_FACTS.has(k)).slice(0, 5).map(([k, v]) => h("span", { class: "fact" }, h("span", { class: "muted" }, `${label(k)} `), factText(k, v)));
}

function listingCard(l) {
  const matched = l.photos.filter((p) => p.matched).map((p) => p.id);
  const href = `#/listing/${encodeURIComponent(l.id)}${matched.length ? `?matched=${matched.join(",")}` : ""}`;
  const cover = l.photos.find((p) => p.matched) || l.photos.find((p) => p.status === "ok") || l.photos[0];
  return h("article", { class: "card listing-card", testid: "listing-card", dataset: { id: String(l.id) } },
    h("a", { href, class: "thumb" }, cover ? h("img", { loading: "lazy", src: `/api/photos/${cover.id}/thumbnail`, alt: `listing ${l.id}` }) : null),
    h("div", { class: "meta" },
      h("a", { href, class: "title", testid: "listing-link" }, `Listing ${l.id}`),
      h("div", { class: "facts" }, factsLine(l.facts)),
      h("div", { class: "sub muted" }, `${l.n_photos} photo${l.n_photos === 1 ? "" : "s"}`,
        matched.length ? ` · ${matched.length} matched` : ""),
      h("div", { class: "strip" }, l.photos.slice(0, 8).map((p) => h("a", {
        href: `#/photo/${p.id}`, class: p.matched ? "matched" : "", title: `${label(p.room_type || p.status)}${p.matched ? " (matches)" : ""}`,
      }, h("img", { loading: "lazy", src: `/api/photos/${p.id}/thumbnail`, alt: label(p.room_type || p.status) }))))));
}

// --- listing view --------------------------------------------------------------------------------

// Show "Loading WHAT…", fetch URL; the data, or null when it failed (the error is shown under
// TESTID) or when the user has moved on to another view meanwhile.
async function loadView(what, url, testid, seq) {
  const view = $("#view");
  fill(view, h("p", { class: "muted loading" }, `Loading ${what}…`));
  try {
    const data = await getJSON(url);
    return seq === state.seq ? data : null;
  } catch (e) {
    if (seq === state.seq) fill(view, backLink(), h("div", { class: "error box", testid }, e.message));
    return null;
  }
}

async function showListing(id, params, seq) {
  const view = $("#view");
  const matched = new Set((params.get("matched") || "").split(",").filter(Boolean).map(Number));
  const l = await loadView("listing", `/api/listings/${encodeURIComponent(id)}`, "listing-error", seq);
  if (!l) return;
  const facts = Object.entries(l.facts).filter(([k]) => !VALUE_FACTS.has(k));
  fill(view,
    backLink(),
    h("div", { class: "summary" }, h("h1", { testid: "listing-title" }, `Listing ${l.id}`),
      h("span", { class: "muted" }, `${l.n_photos} photo${l.n_photos === 1 ? "" : "s"}`,
        matched.size ? ` · ${matched.size} matched your search` : "")),
    facts.length
      ? h("table", { class: "facts-table", testid: "facts-table" },
        h("tbody", null, facts.map(([k, v]) => h("tr", null, h("th", { scope: "row" }, Label(k)), h("td", null, factText(k, v))))))
      : h("p", { class: "muted" }, "No facts for this listing."),
    valueBox(l.facts),
    publishBox(l.checks),
    h("div", { class: "grid", testid: "listing-photos" }, l.photos.map((p) => photoCard(p, { matched: matched.has(p.id) }))));
}

// --- photos to label next ------------------------------------------------------------------------

async function showSuggestions(seq) {
  const view = $("#view");
  const data = await loadView("photos to label", "/api/suggestions?n=24", "suggestions-error", seq);
  if (!data) return;
  fill(view,
    h("div", { class: "summary" }, h("h1", { testid: "suggestions-title" }, "Label next"),
      h("span", { class: "muted" }, `${data.results.length} photo${data.results.length === 1 ? "" : "s"}`)),
    h("p", { class: "muted", testid: "suggestions-why" },
      "The model is least sure of these photos, or (marked unusual) they are unlike anything it was trained on. ",
      "Open one and correct its room type: ",
      h("code", null, "estatelens export-labels"), " and ", h("code", null, "estatelens adapt"),
      " learn most from such corrections."),
    data.results.length
      ? h("div", { class: "grid", testid: "suggestions" }, data.results.map((p) => photoCard(p)))
      : h("p", { class: "empty", testid: "no-suggestions" }, "Nothing left to label: every photo is corrected."));
}

// --- photo view ----------------------------------------------------------------------------------

async function showPhoto(id, seq) {
  const view = $("#view");
  const p = await loadView("photo", `/api/photos/${encodeURIComponent(id)}`, "photo-error", seq);
  if (!p) return;
  const details = h("div", { class: "details", testid: "photo-details" });
  fill(view, backLink(), h("div", { class: "photo-view" }, imagePane(p), details));
  renderDetails(details, p);
}

function imagePane(p) {
  const img = h("img", { class: "main-image", testid: "photo-image", alt: `photo ${p.id}` });
  const loading = h("div", { class: "loading-overlay", testid: "image-loading", hidden: true }, h("span", { class: "spinner" }), h("span", { class: "loading-text" }));
  const error = h("p", { class: "error", testid: "image-error", role: "alert", hidden: true });
  const caption = h("p", { class: "caption muted", testid: "image-caption" });
  const buttons = [];
  const show = (target, btn) => {
    for (const b of buttons) b.setAttribute("aria-pressed", String(b === btn));
    const url = target ? `/api/photos/${p.id}/heatmap/${encodeURIComponent(target)}` : `/api/photos/${p.id}/image`;
    error.hidden = true;
    $(".loading-text", loading).textContent = target
      ? "Drawing the heatmap… (the first one takes a few seconds)" : "Loading the photo…";
    loading.hidden = false;
    caption.textContent = target ? `Heatmap for ${label(target)}: warm colours show where the model looked.` : "";
    img.dataset.target = target || "";
    img.onload = () => { if (img.src.endsWith(url)) loading.hidden = true; };
    img.onerror = async () => {
      if (!img.src.endsWith(url)) return;
      loading.hidden = true;
      let msg = "the image could not be loaded";
      try { const r = await fetch(url); if (!r.ok) msg = await errorText(r); } catch (_) { /* keep msg */ }
      error.textContent = `${target ? "No heatmap" : "No image"}: ${msg}`;
      error.hidden = false;
    };
    img.src = url;
  };
  const mk = (text, target, testid) => {
    const b = h("button", { type: "button", testid, onclick: () => show(target, b) }, text);
    buttons.push(b);
    return b;
  };
  const original = mk("Photo", null, "view-original");
  const bar = h("div", { class: "toolbar", testid: "heatmap-buttons" }, h("span", { class: "muted" }, "Show:"), original);
  if (p.status === "ok") {
    bar.append(mk("Room type heatmap", "room_type", "heatmap-room_type"));
    const drawable = (state.health && state.health.heatmaps) || null;  // heads Grad-CAM can follow
    for (const a of Object.keys(p.attributes || {})) {
      if (!drawable || drawable.includes(a)) bar.append(mk(`${Label(a)} heatmap`, a, `heatmap-${a}`));
    }
  }
  show(null, original);
  return h("div", { class: "image-pane" }, h("div", { class: "image-box" }, img, loading), bar, caption, error);
}

function renderDetails(el, p) {
  const ok = p.status === "ok";
  const title = h("div", { class: "summary" },
    h("h1", { testid: "photo-title" }, ok ? Label(p.room_type) : `Photo ${p.id}`),
    p.room_corrected ? h("span", { class: "badge corrected", testid: "room-corrected" }, "✓ corrected") : null);
  const model = ok && p.room_corrected
    ? h("p", { class: "muted", testid: "model-said" }, `model said: ${label(p.room_type_predicted)} (${pct(p.room_probability)})`)
    : null;
  const listing = p.listing_id != null
    ? h("p", null, h("a", { href: `#/listing/${encodeURIComponent(p.listing_id)}`, testid: "photo-listing-link" }, `Listing ${p.listing_id} →`))
    : h("p", { class: "muted" }, "Not part of a listing.");

  const also = ok && p.also
    ? h("p", { testid: "photo-also" }, "Open plan: also shows a ", h("strong", null, label(p.also)),
      h("span", { class: "muted" }, ` (${pct(p.also_probability)})`))
    : null;
  const sections = [title, also, model, listing];
  if (ok && p.checks) sections.push(checksSection(p.checks));
  if (!ok) sections.push(h("p", { class: "error box" }, `This photo could not be tagged: ${p.status}`));
  if (ok) {
    const rooms = Object.entries(p.room_scores || {});
    sections.push(h("section", null, h("h2", null, "Room type probabilities"),
      h("div", { class: "bars", testid: "room-bars" }, rooms.map(([room, prob]) => h("div", {
        class: `bar-row${room === p.room_type ? " current" : ""}${room === p.room_type_predicted ? " predicted" : ""}`,
        testid: "room-bar", dataset: { room },
      }, h("span", { class: "bar-label" }, Label(room)),
      h("span", { class: "bar" }, h("span", { class: "fill", style: `width:${(Math.max(0, Math.min(1, prob)) * 100).toFixed(1)}%` })),
      h("span", { class: "bar-value" }, pct1(prob)))))));

    const attrs = Object.entries(p.attributes || {});
    if (attrs.length) {
      sections.push(h("section", null, h("h2", null, "Attributes"),
        h("div", { class: "bars", testid: "attributes" }, attrs.map(([name, a]) => {
          const said = a.probability >= a.threshold ? "yes" : "no";
          return h("div", { class: "bar-row attr-row", testid: "attr-row", dataset: { attr: name, value: a.value } },
            h("span", { class: "bar-label" }, Label(name)),
            h("span", { class: "bar", title: `threshold ${pct(a.threshold)}` },
              h("span", { class: "fill", style: `width:${(a.probability * 100).toFixed(1)}%` }),
              h("span", { class: "threshold", style: `left:${(a.threshold * 100).toFixed(1)}%` })),
            h("span", { class: "bar-value" }, pct1(a.probability)),
            h("span", { class: `yn ${a.value}`, testid: "attr-value" }, a.value),
            a.corrected ? h("span", { class: "badge corrected", testid: "attr-corrected" }, `✓ corrected · model said: ${said}`) : null);
        }))));
    }
    sections.push(reviewSection(el, p));
  }
  sections.push(h("section", { class: "info" }, h("h2", null, "About this photo"),
    h("dl", null,
      h("dt", null, "id"), h("dd", null, String(p.id)),
      h("dt", null, "file"), h("dd", { class: "path" }, p.path),
      h("dt", null, "size"), h("dd", null, p.width && p.height ? `${p.width} × ${p.height}` : "–"),
      h("dt", null, "origin"), h("dd", null, p.origin || "–"),
      h("dt", null, "model"), h("dd", null, `${p.model || "–"} ${p.model_version || ""}`),
      h("dt", null, "tagged"), h("dd", null, p.tagged_at ? p.tagged_at.replace("T", " ").slice(0, 19) : "–"))));
  fill(el, sections);
}

function reviewSection(el, p) {
  const busy = h("span", { class: "muted saving", testid: "saving", hidden: true }, "saving…");
  const buttons = [];
  const act = async (method, target, value, done) => {
    buttons.forEach((b) => { b.disabled = true; });
    busy.hidden = false;
    try {
      const url = `/api/photos/${p.id}/corrections/${encodeURIComponent(target)}`;
      const rec = await write(method, url, method === "PUT" ? { value } : null);
      renderDetails(el, rec);
      notice(done);
    } catch (e) {
      buttons.forEach((b) => { b.disabled = false; });
      busy.hidden = true;
      notice(`Not saved: ${e.message}`, "error");
    }
  };
  const btn = (text, props, onclick) => {
    const b = h("button", { type: "button", onclick, ...props }, text);
    buttons.push(b);
    return b;
  };
  const roomButtons = state.vocab.rooms.map((room) => btn(label(room), {
    testid: `set-room-${room}`, class: room === p.room_type ? "choice on" : "choice",
    "aria-pressed": String(room === p.room_type),
  }, () => act("PUT", "room_type", room, `Saved: this photo is a ${label(room)}.`)));
  const rows = [h("div", { class: "review-row" }, h("span", { class: "review-label" }, "Room type"),
    h("div", { class: "choices", testid: "room-choices" }, roomButtons),
    p.corrections.room_type ? btn("undo correction", { testid: "undo-room_type", class: "undo" },
      () => act("DELETE", "room_type", null, "Correction removed: the model's room type holds again.")) : null)];
  for (const [name, a] of Object.entries(p.attributes || {})) {
    rows.push(h("div", { class: "review-row" }, h("span", { class: "review-label" }, Label(name)),
      h("div", { class: "choices" }, ["yes", "no"].map((v) => btn(v, {
        testid: `set-attr-${name}-${v}`, class: a.value === v ? "choice on" : "choice", "aria-pressed": String(a.value === v),
      }, () => act("PUT", name, v, `Saved: ${label(name)} is ${v}.`)))),
      p.corrections[name] ? btn("undo correction", { testid: `undo-${name}`, class: "undo" },
        () => act("DELETE", name, null, `Correction removed: the model's ${label(name)} holds again.`)) : null));
  }
  return h("section", { class: "review", testid: "review" },
    h("h2", null, "Review ", busy), h("p", { class: "muted" }, "Wrong? One click corrects it (needs the write token)."), rows);
}

// --- upload --------------------------------------------------------------------------------------

function toggleUpload(open) {
  const panel = $("#upload-panel");
  panel.hidden = !open;
  $("#upload-toggle").setAttribute("aria-expanded", String(open));
  if (open) $("#upload-file").focus();
}

async function upload(e) {
  e.preventDefault();
  const form = $("#upload-form");
  const file = $("#upload-file").files[0];
  const status = $("#upload-status");
  const err = $("#upload-error");
  err.hidden = true;
  if (!file) { err.textContent = "Choose a photo first."; err.hidden = false; return; }
  const fd = new FormData();
  fd.append("file", file, file.name);
  const listing = $("#upload-listing").value.trim();
  if (listing) fd.append("listing_id", listing);
  const submit = $("[data-testid=upload-submit]", form);
  submit.disabled = true;
  status.textContent = "Uploading and tagging…";
  status.hidden = false;
  try {
    const rec = await write("POST", "/api/photos", fd);
    form.reset();
    toggleUpload(false);
    notice(`Uploaded and tagged: ${label(rec.room_type || rec.status)}.`);
    loadHealth();
    go(`#/photo/${rec.id}`);
  } catch (ex) {
    const why = ex.status === 413 ? "Too large: " : ex.status === 415 ? "Not a photo we take: " : "Upload failed: ";
    err.textContent = why + ex.message;
    err.hidden = false;
  } finally {
    submit.disabled = false;
    status.hidden = true;
  }
}

// --- start ---------------------------------------------------------------------------------------

async function loadHealth() {
  try {
    const hl = await getJSON("/api/health");
    state.health = hl;
    $("#health").textContent = `${hl.photos.toLocaleString("en-US")} photos · ${hl.listings.toLocaleString("en-US")} listings · model ${hl.model} ${String(hl.model_version).slice(0, 8)} · estatelens ${hl.version}`;
  } catch (e) {
    $("#health").textContent = `server not answering: ${e.message}`;
  }
}

function buildFilters() {
  const v = state.vocab;
  fill($("#filter-room"), h("option", { value: "" }, "any"), v.rooms.map((r) => h("option", { value: r }, label(r))));
  fill($("#filter-attrs"), v.attributes.map((a) => h("label", null, label(a), " ",
    h("select", { testid: `filter-attr-${a}`, dataset: { attr: a } },
      h("option", { value: "" }, "any"), h("option", { value: "yes" }, "yes"), h("option", { value: "no" }, "no")))));
  if (v.listing_columns.length) {
    const col = v.listing_columns.find((c) => /price|pris/.test(c)) || v.listing_columns[0];
    $("#filter-hint").textContent = `Facts in the box: ${col}<500000`;
    $("#filter-hint").title = `Columns: ${v.listing_columns.join(", ")}`;
  }
  const searchNow = () => go(searchHash(searchFromControls()));
  $("#filter-room").addEventListener("change", searchNow);
  $("#filter-corrected").addEventListener("change", searchNow);
  $("#filter-check").addEventListener("change", searchNow);
  $("#filter-check-wrap").hidden = !v.checks;
  for (const sel of document.querySelectorAll("#filter-attrs select")) sel.addEventListener("change", searchNow);
  for (const b of document.querySelectorAll(".seg button")) {
    b.addEventListener("click", () => go(searchHash(searchFromControls(b.dataset.level))));
  }
  $("#filter-clear").addEventListener("click", () => {
    go(searchHash({ q: $("#search-input").value.trim(), level: "", room: "", attrs: {}, corrected: false, check: "", page: 1, perPage: currentPerPage }));
  });
}

async function start() {
  takeTokenFromURL();
  setToken(getToken());
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); go(searchHash(searchFromControls())); });
  $("#upload-toggle").addEventListener("click", () => toggleUpload($("#upload-panel").hidden));
  $("#upload-cancel").addEventListener("click", () => toggleUpload(false));
  $("#upload-form").addEventListener("submit", upload);
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("#token-input").value.trim();
    if (!t) return;
    setToken(t);
    closeToken(true);
  });
  $("#token-cancel").addEventListener("click", () => closeToken(false));
  $("#token-forget").addEventListener("click", () => { setToken(""); notice("The write token was removed from this browser."); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("#token-panel").hidden) closeToken(false); });
  window.addEventListener("hashchange", route);
  loadHealth();
  try {
    state.vocab = await getJSON("/api/vocabulary");
  } catch (e) {
    notice(`Could not read the index's vocabulary: ${e.message}`, "error");
  }
  buildFilters();
  document.body.dataset.ready = "1";
  route();
}

start();
