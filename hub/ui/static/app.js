// Unico hub web UI: a single page for HQ marketers. Plain JavaScript, no
// dependencies. Every value from the API reaches the DOM through textContent
// (the el() helper), never parsed as HTML.
"use strict";

(function () {
  const API = "api/v1/";
  const TOKEN_KEY = "unico.token";
  const REFRESH_MS = 5000;
  const STALE_EDGE_SECONDS = 60;
  const RECENT_PAGE = 20;
  const EVENTS_PAGE = 25;
  const ID_TYPE = /^[a-z][a-z0-9_]*:/;

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers -------------------------------------------------------

  // el builds an element; attrs keys are attributes except "class", "text",
  // "title" and "on…" handlers. Children are nodes or strings (text nodes).
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return n;
  }

  function clear(n) {
    while (n.firstChild) n.removeChild(n.firstChild);
    return n;
  }

  // ---- formatting --------------------------------------------------------

  const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const moneyFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const dayFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const timeFmt = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });

  function fmtInt(n) {
    return typeof n === "number" && isFinite(n) ? intFmt.format(n) : "–";
  }
  function fmtMoney(n) {
    return typeof n === "number" && isFinite(n) ? moneyFmt.format(n) : "–";
  }
  // parseTime returns a Date or null for missing and zero times.
  function parseTime(s) {
    if (!s || s.startsWith("0001-01-01")) return null;
    const d = new Date(s);
    return isNaN(d.getTime()) ? null : d;
  }
  function fmtTime(s) {
    const d = parseTime(s);
    return d ? dateFmt.format(d) : "—";
  }
  function fmtAge(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) return "—";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " days ago";
  }
  function fmtValue(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "number") return Number.isInteger(v) ? fmtInt(v) : String(v);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  function plural(n, noun) {
    return fmtInt(n) + " " + noun + (n === 1 ? "" : "s");
  }
  function idString(x) {
    return x.type + ":" + x.value;
  }
  function humanise(s) {
    return String(s || "").replace(/_/g, " ");
  }

  // ---- token and API -----------------------------------------------------

  let token = sessionStorage.getItem(TOKEN_KEY) || "";

  class Unauthorized extends Error {}
  class APIError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, opts) {
    const init = Object.assign({ headers: {} }, opts || {});
    init.headers = Object.assign({ Authorization: "Bearer " + token, Accept: "application/json" }, init.headers);
    const res = await fetch(API + path, init);
    if (res.status === 401) {
      showLogin("The token was refused. Enter the hub's admin token.");
      throw new Unauthorized("unauthorized");
    }
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    if (!res.ok) {
      throw new APIError(res.status, (body && body.error) || res.status + " " + res.statusText);
    }
    return body;
  }

  function showLogin(message) {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    stopRefresh();
    $("app").hidden = true;
    $("signout").hidden = true;
    $("stats").hidden = true;
    $("login").hidden = false;
    const err = $("login-error");
    err.textContent = message || "";
    err.hidden = !message;
    $("token-input").value = "";
    $("token-input").focus();
  }

  function start() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    $("stats").hidden = false;
    startRefresh();
    loadRecent("");
  }

  // ---- stats and edges ---------------------------------------------------

  let refreshTimer = null;

  function startRefresh() {
    stopRefresh();
    refresh();
    refreshTimer = setInterval(refresh, REFRESH_MS);
  }
  function stopRefresh() {
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = null;
  }

  async function refresh() {
    try {
      const [stats, edges] = await Promise.all([api("stats"), api("edges")]);
      renderStats(stats);
      renderEdges(edges.edges || []);
    } catch (e) {
      if (!(e instanceof Unauthorized)) $("stat-broker").textContent = "hub unreachable";
    }
  }

  function renderStats(s) {
    const st = s.store || {};
    $("stat-profiles").textContent = fmtInt(st.profiles);
    $("stat-events").textContent = fmtInt(st.events);
    $("stat-merges").textContent = fmtInt(st.merges_since_start);
    $("stat-repartitions").textContent = fmtInt(st.repartitions_since_start);
    const b = $("stat-broker");
    b.textContent = s.broker_connected ? "connected" : "disconnected";
    b.className = "stat-value " + (s.broker_connected ? "ok" : "bad");
    if (typeof s.broker_clients === "number") b.title = fmtInt(s.broker_clients) + " broker clients";
  }

  function renderEdges(edges) {
    const body = clear($("edges"));
    $("edges-empty").hidden = edges.length > 0;
    edges.sort((a, b) => (a.tenant + "/" + a.edge).localeCompare(b.tenant + "/" + b.edge));
    for (const e of edges) {
      const age = e.seconds_since_last_batch;
      const stale = typeof age === "number" && age > STALE_EDGE_SECONDS;
      body.append(
        el("tr", { class: stale ? "stale" : "" },
          el("td", { class: "edge-name", title: e.tenant ? "tenant " + e.tenant : null }, e.edge || "—"),
          el("td", { title: fmtTime(e.last_batch_at) },
            stale ? el("span", { class: "badge warn", text: "stale" }) : null, " ", fmtAge(age)),
          el("td", { class: "num" }, fmtInt(e.events)),
          el("td", { class: "num" }, fmtInt(e.duplicates)),
          el("td", { class: "num" + (e.backlog > 0 ? " warn-text" : "") }, fmtInt(e.backlog))));
    }
  }

  // ---- recent profiles ---------------------------------------------------

  const recentCursors = [];

  async function loadRecent(cursor) {
    const list = $("recent");
    try {
      const q = "profiles?limit=" + RECENT_PAGE + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const res = await api(q);
      clear(list);
      for (const p of res.profiles || []) {
        list.append(el("li", {},
          el("button", { type: "button", class: "profile-link", onclick: () => openProfileByID(p.id) },
            el("span", { class: "profile-link-name" }, displayName(p)),
            el("span", { class: "profile-link-meta" },
              plural(p.identifiers.length, "identifier") + " · " + plural(p.computed.orders, "order") + " · " +
              plural(p.computed.events, "event")))));
      }
      if (!list.firstChild) list.append(el("li", { class: "muted", text: "No profiles yet." }));
      $("recent-next").hidden = !res.next;
      $("recent-next").onclick = () => { recentCursors.push(cursor); loadRecent(res.next); };
      $("recent-first").hidden = !cursor;
      $("recent-first").onclick = () => { recentCursors.length = 0; loadRecent(""); };
    } catch (e) {
      if (e instanceof Unauthorized) return;
      clear(list).append(el("li", { class: "error", text: "Could not list profiles: " + e.message }));
    }
  }

  // displayName picks a readable name for a profile.
  function displayName(p) {
    const t = p.traits || {};
    const s = (k) => (t[k] && typeof t[k].value === "string" ? t[k].value.trim() : "");
    const full = s("name") || [s("first_name") || s("firstName"), s("last_name") || s("lastName")].filter(Boolean).join(" ");
    if (full) return full;
    for (const type of ["email", "loyalty_id", "phone", "user_id"]) {
      const x = (p.identifiers || []).find((i) => i.type === type);
      if (x) return x.value;
    }
    return p.id;
  }

  // ---- search ------------------------------------------------------------

  // candidates turns what the user typed into identifiers to try, in order.
  function candidates(q) {
    q = q.trim();
    if (!q) return [];
    if (ID_TYPE.test(q)) return [q];
    if (q.includes("@")) return ["email:" + q];
    if (q.startsWith("+")) return ["phone:" + q];
    if (/^[0-9]/.test(q)) return ["phone:" + q, "loyalty_id:" + q, "user_id:" + q];
    return ["loyalty_id:" + q, "user_id:" + q];
  }

  function searchMessage(text, kind) {
    const m = $("search-message");
    m.textContent = text || "";
    m.className = kind || "notice";
    m.hidden = !text;
  }

  async function search(q) {
    const tries = candidates(q);
    if (!tries.length) return;
    $("search-input").value = q;
    searchMessage("Searching…");
    for (const id of tries) {
      try {
        const p = await api("profiles?identifier=" + encodeURIComponent(id));
        searchMessage("");
        setFragment("q", id);
        await showProfile(p);
        return;
      } catch (e) {
        if (e instanceof Unauthorized) return;
        if (e.status === 404) continue;
        searchMessage(e.message, "error");
        return;
      }
    }
    searchMessage("no profile holds " + tries.join(" or "), "error");
  }

  async function openProfileByID(id) {
    try {
      const p = await api("profiles/" + encodeURIComponent(id));
      searchMessage("");
      setFragment("id", p.id);
      await showProfile(p);
    } catch (e) {
      if (e instanceof Unauthorized) return;
      searchMessage(e.status === 404 ? "no such profile " + id : e.message, "error");
    }
  }

  // setFragment records the open profile in the URL (never the token).
  function setFragment(key, value) {
    history.replaceState(null, "", "#" + key + "=" + encodeURIComponent(value));
  }

  // ---- profile view ------------------------------------------------------

  let current = null; // the profile shown

  async function showProfile(p) {
    current = p;
    const main = clear($("profile"));
    main.append(profileHeader(p), identifiersSection(p), computedSection(p), traitsSection(p), consentSection(p));
    const merges = el("section", { class: "card", id: "merges" }, el("h2", { text: "Why this is one person" }), el("p", { class: "muted", text: "Loading merge history…" }));
    const timeline = el("section", { class: "card", id: "timeline" }, el("h2", { text: "Timeline" }));
    main.append(merges, timeline);
    main.scrollTop = 0;
    window.scrollTo(0, 0);
    await Promise.all([loadMerges(p, merges), loadTimeline(p, timeline)]);
  }

  function profileHeader(p) {
    return el("div", { class: "profile-head" },
      el("h1", {}, displayName(p),
        p.conflicted ? el("span", { class: "badge warn", title: "A link of this profile was refused by a rule; see the merge history.", text: "conflicted" }) : null),
      el("p", { class: "muted" },
        "Profile ", el("code", { text: p.id }),
        " · created " + fmtTime(p.created_at) + " · updated " + fmtTime(p.updated_at)),
      p.requested_id ? el("p", { class: "notice" }, "Profile ", el("code", { text: p.requested_id }), " was merged into this one.") : null);
  }

  function identifiersSection(p) {
    const ids = p.identifiers || [];
    const canUnmerge = ids.length > 1;
    const groups = new Map();
    for (const x of ids) {
      if (!groups.has(x.type)) groups.set(x.type, []);
      groups.get(x.type).push(x);
    }
    const rows = [];
    for (const [type, xs] of groups) {
      rows.push(el("div", { class: "id-group" },
        el("span", { class: "id-type", text: humanise(type) }),
        el("div", { class: "chips" }, xs.map((x) =>
          el("span", { class: "chip chip-" + type.replace(/[^a-z0-9_]/g, "") },
            el("span", { class: "chip-value", text: x.value }),
            canUnmerge ? el("button", {
              type: "button", class: "chip-action", title: "Split " + idString(x) + " off this profile",
              onclick: () => unmerge(p, x),
            }, "unmerge") : null)))));
    }
    return el("section", { class: "card", id: "identifiers" },
      el("h2", {}, "Identifiers ", el("span", { class: "count", text: fmtInt(ids.length) })),
      rows.length ? rows : el("p", { class: "muted", text: "No identifiers." }));
  }

  async function unmerge(p, x) {
    const id = idString(x);
    if (!window.confirm("Split " + id + " off this profile?\n\nIt will become a profile of its own and will not be linked again. The rest of this profile is recomputed from its events.")) return;
    try {
      await api("profiles/" + encodeURIComponent(p.id) + "/unmerge", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ identifier: id }),
      });
      searchMessage(id + " was split off into its own profile.", "notice");
      await openProfileByID(p.id);
      refresh();
    } catch (e) {
      if (e instanceof Unauthorized) return;
      window.alert("Unmerge failed: " + e.message);
    }
  }

  function card(label, value, ...extra) {
    return el("div", { class: "metric" },
      el("div", { class: "metric-label", text: label }),
      el("div", { class: "metric-value" }, value),
      extra.length ? el("div", { class: "metric-extra" }, extra) : null);
  }

  // dateValue shows a time as its date over its time of day.
  function dateValue(s) {
    const d = parseTime(s);
    if (!d) return "—";
    return el("span", { class: "date-value", title: s },
      el("span", { text: dayFmt.format(d) }), el("span", { class: "time-of-day", text: timeFmt.format(d) }));
  }

  function countList(m) {
    const entries = Object.entries(m || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    if (!entries.length) return el("span", { class: "muted", text: "—" });
    return el("ul", { class: "count-list" }, entries.map(([k, v]) =>
      el("li", {}, el("span", { text: humanise(k) }), el("span", { class: "num", text: fmtInt(v) }))));
  }

  function computedSection(p) {
    const c = p.computed || {};
    const d = p.derived || {};
    const lc = c.last_contact;
    const days = d.days_since_purchase;
    const rfm = el("span", {}, d.rfm || "—");
    return el("section", { class: "card", id: "computed" },
      el("h2", { text: "Customer value and activity" }),
      el("div", { class: "metrics" },
        card("Orders", el("span", { id: "metric-orders", text: fmtInt(c.orders) })),
        card("Revenue", fmtMoney(c.revenue)),
        card("Average order value", fmtMoney(d.average_order_value)),
        card("RFM", rfm,
          el("span", { class: "score", title: "Recency score (1–5)" }, "R ", el("b", { text: fmtInt(d.recency_score) })),
          el("span", { class: "score", title: "Frequency score (1–5)" }, "F ", el("b", { text: fmtInt(d.frequency_score) })),
          el("span", { class: "score", title: "Monetary score (1–5)" }, "M ", el("b", { text: fmtInt(d.monetary_score) }))),
        card("Favourite site", d.favourite_site || "—"),
        card("Events", fmtInt(c.events)),
        card("First seen", dateValue(c.first_seen)),
        card("Last seen", dateValue(c.last_seen)),
        card("Last purchase", dateValue(c.last_purchase_at),
          typeof days === "number" && days >= 0 ? (days === 0 ? "today" : fmtInt(days) + (days === 1 ? " day ago" : " days ago")) : null),
        card("Last contact", lc ? dateValue(lc.at) : "—",
          lc ? [lc.reason ? "Reason: " + humanise(lc.reason) : "No reason given", lc.channel ? " · " + humanise(lc.channel) : ""] : null),
        el("div", { class: "metric wide" }, el("div", { class: "metric-label", text: "Channels used" }), countList(c.channels)),
        el("div", { class: "metric wide" }, el("div", { class: "metric-label", text: "Visits per site" }), countList(c.site_visits))));
  }

  // dataTable builds a table whose cells carry their column name, so that
  // narrow screens can show each row as a stacked card.
  function dataTable(headers, rows) {
    return el("div", { class: "table-wrap" }, el("table", { class: "data" },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c, i) => {
        const cell = i === 0 ? el("th", { scope: "row" }, c) : el("td", {}, c);
        cell.setAttribute("data-label", headers[i]);
        return cell;
      }))))));
  }

  function traitsSection(p) {
    const entries = Object.entries(p.traits || {}).sort((a, b) => a[0].localeCompare(b[0]));
    const body = entries.length
      ? dataTable(["Trait", "Value", "Channel", "Site", "When", "Event"], entries.map(([k, t]) => [
        humanise(k),
        el("span", { class: "value", text: fmtValue(t.value) }),
        humanise(t.channel) || "—",
        t.site || "—",
        el("span", { class: "nowrap", text: fmtTime(t.at) }),
        el("code", { class: "event-id", text: t.event_id || "—" }),
      ]))
      : el("p", { class: "muted", text: "No traits." });
    return el("section", { class: "card", id: "traits" }, el("h2", { text: "Traits and where they came from" }), body);
  }

  function consentSection(p) {
    const entries = Object.entries(p.consent || {}).sort((a, b) => a[0].localeCompare(b[0]));
    const body = entries.length
      ? dataTable(["Purpose", "Decision", "When", "Channel", "Event"], entries.map(([k, c]) => [
        humanise(k),
        el("span", { class: "badge " + (c.granted ? "ok" : "bad"), text: c.granted ? "granted" : "denied" }),
        el("span", { class: "nowrap", text: fmtTime(c.at) }),
        humanise(c.channel) || "—",
        el("code", { class: "event-id", text: c.event_id || "—" }),
      ]))
      : el("p", { class: "muted", text: "No consent recorded." });
    return el("section", { class: "card", id: "consent" }, el("h2", { text: "Consent" }), body);
  }

  // ---- merge history -----------------------------------------------------

  const mergeReasons = {
    linked: "Linked",
    repartition: "Recomputed after a conflict",
    unmerge: "Identifier split off by an administrator",
    component_too_large: "Too many linked identifiers",
  };

  function linkSentence(l) {
    const a = el("span", { class: "chip small", text: idString(l.a) });
    const b = el("span", { class: "chip small", text: idString(l.b) });
    const ev = el("code", { class: "event-id", text: l.event_id });
    if (l.linked) {
      return el("li", { class: "link linked" },
        el("span", { class: "badge ok", text: "linked" }), " Event ", ev, " linked ", a, " with ", b);
    }
    let why = humanise(l.reason) || "refused";
    if (l.reason === "limit") why = "a profile may hold only a limited number of " + humanise(l.type || "identifiers of that type");
    else if (l.reason === "isolated") why = "the identifier was split off by an administrator";
    else if (l.reason === "component_too_large") why = "the profile would hold too many identifiers";
    return el("li", { class: "link refused" },
      el("span", { class: "badge bad", text: "refused" }), " Event ", ev, " would have linked ", a, " with ", b,
      el("span", { class: "why" }, " — refused: " + why + (l.type && l.reason !== "limit" ? " (" + humanise(l.type) + ")" : "")));
  }

  async function loadMerges(p, section) {
    try {
      const res = await api("profiles/" + encodeURIComponent(p.id) + "/merges");
      if (current !== p) return;
      const ms = res.merges || [];
      const list = el("ol", { class: "merges" });
      for (const m of ms) {
        const links = m.links || [];
        list.append(el("li", { class: "merge" },
          el("div", { class: "merge-head" },
            el("span", { class: "merge-when", text: fmtTime(m.at) }),
            el("span", { class: "merge-reason", text: mergeReasons[m.reason] || humanise(m.reason) }),
            m.event_id ? el("span", { class: "muted" }, "caused by event ", el("code", { class: "event-id", text: m.event_id })) : null),
          m.absorbed && m.absorbed.length
            ? el("p", { class: "muted" }, "Absorbed profiles: ", m.absorbed.map((id, i) => [i ? ", " : "", el("code", { text: id })]))
            : null,
          links.length ? el("ul", { class: "links" }, links.map(linkSentence)) : null));
      }
      clear(section).append(el("h2", { text: "Why this is one person" }),
        ms.length ? list : el("p", { class: "muted", text: "No merges: every identifier arrived together or this profile has a single identifier." }));
    } catch (e) {
      if (e instanceof Unauthorized) return;
      clear(section).append(el("h2", { text: "Why this is one person" }), el("p", { class: "error", text: "Could not load the merge history: " + e.message }));
    }
  }

  // ---- timeline ----------------------------------------------------------

  function eventFacts(e) {
    const pr = e.properties || {};
    const facts = [];
    for (const k of ["revenue", "total", "value"]) {
      if (typeof pr[k] === "number") {
        facts.push(humanise(k) + " " + fmtMoney(pr[k]) + (typeof pr.currency === "string" ? " " + pr.currency : ""));
        break;
      }
    }
    if (Array.isArray(pr.products)) facts.push(fmtInt(pr.products.length) + (pr.products.length === 1 ? " product" : " products"));
    if (typeof pr.order_id === "string") facts.push("order " + pr.order_id);
    if (typeof pr.reason === "string") facts.push("reason: " + pr.reason);
    if (typeof pr.url === "string") facts.push(pr.url);
    else if (typeof pr.path === "string") facts.push(pr.path);
    if (e.type === "identify" && e.traits) facts.push(fmtInt(Object.keys(e.traits).length) + " traits");
    if (e.consent) {
      for (const [k, g] of Object.entries(e.consent)) facts.push(humanise(k) + (g ? " granted" : " denied"));
    }
    return facts;
  }

  function eventRow(e) {
    const title = e.name ? e.name : e.type;
    return el("li", { class: "event" },
      el("div", { class: "event-when", text: fmtTime(e.occurred_at) }),
      el("div", { class: "event-body" },
        el("div", { class: "event-title" },
          el("span", { class: "event-type", text: e.type }), " ", el("b", { text: title }),
          e.channel ? el("span", { class: "tag", text: humanise(e.channel) }) : null,
          e.source && e.source.site ? el("span", { class: "tag site", text: e.source.site }) : null),
        el("div", { class: "event-facts" }, eventFacts(e).join(" · ")),
        el("div", { class: "event-meta" },
          el("code", { class: "event-id", text: e.id }),
          (e.identifiers || []).length ? " · " + e.identifiers.map(idString).join(", ") : "")));
  }

  async function loadTimeline(p, section, cursor, list) {
    if (!list) {
      list = el("ol", { class: "events" });
      clear(section).append(el("h2", { text: "Timeline" }), list);
    }
    const old = section.querySelector(".load-more");
    if (old) old.remove();
    try {
      const q = "profiles/" + encodeURIComponent(p.id) + "/events?limit=" + EVENTS_PAGE + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const res = await api(q);
      if (current !== p) return;
      for (const e of res.events || []) list.append(eventRow(e));
      if (!list.firstChild) section.append(el("p", { class: "muted", text: "No events." }));
      if (res.next) {
        section.append(el("button", {
          type: "button", class: "secondary load-more",
          onclick: (ev) => { ev.target.disabled = true; loadTimeline(p, section, res.next, list); },
        }, "Load more"));
      }
    } catch (e) {
      if (e instanceof Unauthorized) return;
      section.append(el("p", { class: "error", text: "Could not load the timeline: " + e.message }));
    }
  }

  // ---- start -------------------------------------------------------------

  // fragment reads #token=…&q=…&id=… and removes the token from the URL.
  function fragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const t = params.get("token");
    if (t) {
      token = t;
      sessionStorage.setItem(TOKEN_KEY, t);
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    return { q: params.get("q"), id: params.get("id") };
  }

  function init() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token-input").value.trim();
      if (!t) return;
      token = t;
      sessionStorage.setItem(TOKEN_KEY, t);
      start();
    });
    $("signout").addEventListener("click", () => showLogin(""));
    $("search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      search($("search-input").value);
    });
    const f = fragment();
    if (!token) {
      showLogin("");
      return;
    }
    start();
    if (f.q) search(f.q);
    else if (f.id) openProfileByID(f.id);
  }

  init();
})();
