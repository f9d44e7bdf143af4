/*! rulecast.js: the browser side of rulecast. No dependencies, no build step.
 *  RuleCast.connect({...})  a client: WebSocket, else SSE; resumes, shares one connection per browser
 *  <script src="/rulecast/static/rulecast.js" data-rulecast-widget></script>  a notification bell
 *  Reference: docs/widget.md; wire protocol: docs/protocol.md. */
(function () {
  "use strict";
  if (window.RuleCast) return; // included twice: the first copy serves

  const script = document.currentScript;
  // The server that served this file: ".../rulecast/static/rulecast.js" → ".../rulecast".
  const DEFAULT_BASE = script && script.src ? script.src.replace(/\/static\/[^/]*$/, "")
    : location.origin + "/rulecast";
  const noop = () => {};
  const isTopic = (ch) => String(ch).startsWith("topic:");
  const num = (v) => (v === null || v === "" || isNaN(v) ? null : Number(v));
  const storage = { // sessionStorage: per tab, survives reloads; may be unavailable
    get(k) { try { return sessionStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { sessionStorage.setItem(k, String(v)); } catch (e) { /* full or blocked */ } },
  };
  function hash(s) { let h = 5381; for (let i = 0; i < s.length; i++) h = (h * 33 + s.charCodeAt(i)) >>> 0; return h.toString(36); }

  // ---------------------------------------------------------------------------------------------
  // Conn: one server connection, run by the leading tab (or a tab alone). WebSocket first; after
  // two WebSockets failed before opening, SSE, while probing WebSocket again now and then.
  class Conn {
    constructor(client) {
      Object.assign(this, { c: client, ws: null, es: null, pending: [], attempt: 0, wsFails: 0, stopped: true });
    }
    start() { if (this.stopped) { this.stopped = false; this.open(); } }
    stop() {
      this.stopped = true;
      [this.retryTimer, this.probeTimer].forEach(clearTimeout);
      clearInterval(this.beatTimer);
      const ws = this.ws, es = this.es;
      this.ws = this.es = null;
      if (ws) { ws.onopen = ws.onmessage = ws.onclose = null; try { ws.close(1000); } catch (e) { /* closing */ } }
      if (es) es.close();
      this.failPending();
    }
    restart() { this.stop(); this.attempt = 0; this.start(); }
    open() {
      if (this.stopped) return;
      if (!this.c.everLive) this.c.setStatus("connecting");
      const sse = typeof EventSource === "function";
      if (sse && (typeof WebSocket !== "function" || this.wsFails >= 2)) this.openSSE(); else this.openWS();
    }
    url(kind) {
      const c = this.c, q = new URLSearchParams();
      this.since = c.last;
      if (c.last !== null) q.set("since", c.last);
      if (kind === "sse") c.wanted().forEach((ch) => q.append("channel", ch));
      if (c.token) q.set("token", c.token); // browsers cannot set headers on either
      const s = q.toString();
      return (kind === "ws" ? c.base.replace(/^http/, "ws") : c.base) + "/" + kind + (s ? "?" + s : "");
    }
    openWS() {
      let ws = null, opened = false;
      try { ws = new WebSocket(this.url("ws")); } catch (e) { /* no WebSocket, or blocked */ }
      if (!ws) return this.wsClosed(null, false, 1006);
      this.ws = ws;
      ws.onopen = () => { opened = true; this.wsOpened(ws); };
      ws.onmessage = (e) => { if (this.ws === ws) this.frame(JSON.parse(e.data)); };
      ws.onclose = (e) => { if (this.ws === ws) this.wsClosed(ws, opened, e.code, e.reason); };
    }
    wsOpened(ws) {
      this.wsFails = 0;
      if (this.es) { this.es.close(); this.es = null; } // a probe got through: leave SSE
      const gen = this.c.opened("ws");
      // Subscribe frames after a ?since connect get their backlog since then. Replies may
      // interleave with live messages, so ids are only trusted in order after the barrier.
      this.c.wanted().forEach((ch) => this.request({ type: "subscribe", channel: ch }).catch(this.c.warn));
      this.barrier(gen);
      // A dead network path shows no error until TCP gives up: ping, and drop it without a pong.
      clearInterval(this.beatTimer);
      this.beatTimer = setInterval(() => {
        const t = setTimeout(() => {
          if (this.ws !== ws) return;
          ws.onclose = null; ws.close();
          this.wsClosed(ws, true, 4000, "no pong");
        }, 10000);
        this.request({ type: "ping" }).then(() => clearTimeout(t), noop);
      }, 30000);
    }
    barrier(gen) { // the server answers in order: the pong comes after every replay before it
      this.request({ type: "ping" }).then(() => this.c.settled(gen), noop);
    }
    wsClosed(ws, opened, code, reason) {
      this.ws = null;
      clearInterval(this.beatTimer);
      this.failPending();
      if (!opened) this.wsFails++;
      if (this.es || this.stopped) return this.probeLater(); // a failed probe: SSE carries on
      if (code === 1008) { this.stopped = true; return this.c.lost("denied", reason); } // bad token
      this.retry();
    }
    openSSE() {
      const es = new EventSource(this.url("sse"));
      let opened = false;
      this.es = es;
      es.addEventListener("welcome", (e) => {
        if (this.es !== es) return;
        opened = true;
        this.c.opened("sse"); // one request carries since and every channel: replay is in order
        this.frame(JSON.parse(e.data));
        this.probeLater(0); // WebSocket may just have been down with the server: try it at once
      });
      es.addEventListener("message", (e) => { if (this.es === es) this.frame(JSON.parse(e.data)); });
      es.onerror = () => { // EventSource would retry by itself; we do, to rebuild the URL
        if (this.es !== es) return;
        es.close(); this.es = null;
        clearTimeout(this.probeTimer);
        if (this.ws) return; // a probe is under way: its outcome decides
        if (!opened) this.wsFails = 1; // neither works (server down?): alternate, WebSocket next
        this.retry();
      };
    }
    probeLater(delay) {
      clearTimeout(this.probeTimer);
      if (this.stopped || typeof WebSocket !== "function") return;
      this.probeTimer = setTimeout(() => { if (this.es && !this.ws) this.openWS(); },
        delay === undefined ? this.c.wsRetry : delay);
    }
    retry() {
      this.c.lost("reconnecting");
      // Exponential back-off with jitter, so a restarted server is not hit by everyone at once.
      const delay = Math.min(this.c.maxDelay, 500 * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.open(), delay);
    }
    reopenSSE() { if (this.es) { this.es.close(); this.es = null; this.openSSE(); } } // channels are in its URL
    frame(f) {
      if (f.type === "welcome") { this.attempt = 0; this.c.serverWelcome(f); }
      else if (f.type === "message") this.c.serverMessage(f);
      else if (/^(subscribed|unsubscribed|published|pong|error)$/.test(f.type)) {
        const p = this.pending.shift(); // every frame is answered once, in order
        if (!p) return;
        if (f.type === "error") p.reject(Object.assign(new Error("rulecast: " + f.code + ": " + f.message), { code: f.code }));
        else p.resolve(f);
      }
    }
    request(frame) {
      const ws = this.ws;
      if (!ws || ws.readyState !== 1 || this.es) return Promise.reject(new Error("rulecast: not connected over WebSocket"));
      return new Promise((resolve, reject) => { this.pending.push({ resolve, reject }); ws.send(JSON.stringify(frame)); });
    }
    failPending() {
      const pending = this.pending;
      this.pending = [];
      pending.forEach((p) => p.reject(new Error("rulecast: connection lost")));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Client: what RuleCast.connect returns. Keeps the resume point, drops repeats, and shares one
  // connection between the tabs of an origin: the leader holds it and relays over BroadcastChannel.
  class Client {
    constructor(o) {
      o = o || {};
      this.base = new URL(o.url || DEFAULT_BASE, location.href).href.replace(/\/+$/, "");
      this.token = o.token || null;
      this.onMessage = o.onMessage || noop;
      this.onStatus = o.onStatus || noop;
      this.channels = new Set(o.channels || []); // this tab's extra (topic) channels
      this.shared = new Set(); // leader: channels other tabs asked for
      this.hiddenTimeout = 1000 * (o.hiddenTimeout == null ? 300 : o.hiddenTimeout);
      this.maxDelay = 1000 * (o.maxDelay || 30);
      this.wsRetry = 1000 * (o.wsRetry || 60);
      this.key = "rulecast:" + this.base + ":" + hash(this.token || "");
      this.user = storage.get(this.key + ":user"); // who we were: whose resume point to use
      this.last = num(storage.get(this.lastKey())); // every message up to here was handled
      this.seen = new Set(); // ids above `last` already handled
      this.recent = []; // the last messages, for a tab that joins late
      Object.assign(this, { gen: 0, unsettled: 0, status: "connecting", transport: null, role: null,
        conn: null, closed: false, everLive: false, asks: new Map(), rid: 0,
        tab: Math.random().toString(36).slice(2) + Date.now().toString(36) });
      this.warn = (e) => console.warn(e.message || e);
      this.onVisibility = this.onVisibility.bind(this);
      document.addEventListener("visibilitychange", this.onVisibility);
      addEventListener("online", () => { if (this.conn && this.status === "reconnecting") this.conn.restart(); });
      if (o.share !== false && typeof BroadcastChannel === "function") this.share();
      else { this.role = "solo"; this.conn = new Conn(this); this.conn.start(); this.onVisibility(); }
    }

    // -- public API ----------------------------------------------------------------------------
    subscribe(ch) {
      this.channels.add(ch);
      // A follower's channel is also in every hello, so a leader that comes later subscribes it.
      return this.role === "follower" ? this.ask({ t: "sub", ch }, true) : this.addChannel(ch);
    }
    unsubscribe(ch) {
      this.channels.delete(ch); // its messages are no longer passed on here
      // Other tabs may use the shared subscription: the server only hears of it from a lone tab.
      const ws = this.conn && this.conn.ws;
      if (ws && ws.readyState === 1 && !this.shared.has(ch)) this.conn.request({ type: "unsubscribe", channel: ch }).catch(noop);
      else if (this.conn && this.role === "solo") this.conn.reopenSSE();
    }
    publish(ch, data) {
      if (this.role === "follower") return this.ask({ t: "pub", ch, data });
      if (!this.conn) return Promise.reject(new Error("rulecast: not connected"));
      return this.conn.request({ type: "publish", channel: ch, data }).then((f) => f.id);
    }
    reconnect() { if (this.role === "follower") this.post({ t: "reconnect" }); else if (this.conn) this.conn.restart(); }
    close() {
      if (this.closed) return;
      this.closed = true;
      if (this.conn) this.conn.stop();
      if (this.role === "leader") this.post({ t: "bye" });
      if (this.release) this.release();
      if (this.abort) this.abort.abort();
      clearInterval(this.electTimer);
      clearTimeout(this.hideTimer);
      if (this.bc) this.bc.close();
      document.removeEventListener("visibilitychange", this.onVisibility);
      this.setStatus("closed");
    }

    // -- resume point and repeats ----------------------------------------------------------------
    lastKey() { return this.key + ":last:" + this.user; }
    accept(f) {
      if (typeof f.id !== "number" || (this.last !== null && f.id <= this.last) || this.seen.has(f.id)) return false;
      this.seen.add(f.id);
      this.recent.push(f);
      if (this.recent.length > 200) this.recent.shift();
      return true;
    }
    advanceTo(v) { // everything up to v was handled: make it the resume point
      if (v === null || v === undefined || (this.last !== null && v <= this.last)) return;
      this.seen.forEach((id) => { if (id <= v) this.seen.delete(id); });
      this.last = v;
      if (this.user !== null) storage.set(this.lastKey(), v);
    }
    advance() { let m = this.last; this.seen.forEach((id) => { if (m === null || id > m) m = id; }); this.advanceTo(m); }
    deliver(f) {
      if (isTopic(f.channel) && !this.channels.has(f.channel)) return; // another tab's topic
      try { this.onMessage(f); } catch (e) { console.error(e); }
    }
    setStatus(s, detail) {
      this.status = s;
      if (this.role === "leader") this.post({ t: "status", s, tr: this.transport });
      try { this.onStatus(s, { transport: this.transport, role: this.role, user: this.user, detail }); } catch (e) { console.error(e); }
    }

    // -- called by the connection ----------------------------------------------------------------
    opened(transport) { this.transport = transport; this.unsettled = transport === "ws" ? 1 : 0; return ++this.gen; }
    settled(gen) {
      if (gen !== this.gen || !this.unsettled || --this.unsettled) return;
      this.advance();
      this.post({ t: "safe", safe: this.last });
    }
    lost(status, reason) { this.gen++; this.unsettled = 0; this.transport = null; this.setStatus(status, reason); }
    wanted() { return new Set([...this.channels, ...this.shared]); }
    addChannel(ch) { // leader or lone tab: make the connection carry ch
      const conn = this.conn;
      if (!conn || conn.stopped) return Promise.resolve();
      if (conn.es) { conn.reopenSSE(); return Promise.resolve(); }
      if (!conn.ws || conn.ws.readyState !== 1) return Promise.resolve(); // subscribed on open
      this.unsettled++;
      const done = conn.request({ type: "subscribe", channel: ch, since: this.last === null ? undefined : this.last });
      conn.barrier(this.gen);
      return done.then(noop);
    }
    serverWelcome(f) { this.welcomed(f, true); }
    serverMessage(f) {
      if (!this.accept(f)) return;
      if (!this.unsettled) this.advance();
      this.post({ t: "msg", f, safe: this.last });
      this.deliver(f);
    }
    welcomed(f, own) {
      const user = f.user || "";
      if (user !== this.user) { // first welcome, or someone else logged in: their resume point
        const before = this.user;
        this.user = user;
        storage.set(this.key + ":user", user);
        if (before !== null) {
          this.last = num(storage.get(this.lastKey()));
          this.seen.clear(); this.recent = [];
          if (own && this.conn.since !== this.last) return this.conn.restart();
        }
      }
      if (this.last === null) this.advanceTo(f.last_id);
      this.welcome = f;
      if (!own) return;
      this.everLive = true;
      this.post({ t: "welcome", f });
      this.setStatus("live");
    }

    // -- sharing between tabs ----------------------------------------------------------------------
    post(m) { if (this.bc) try { this.bc.postMessage(Object.assign({ from: this.tab }, m)); } catch (e) { this.warn(e); } }
    share() {
      this.bc = new BroadcastChannel(this.key);
      this.bc.onmessage = (e) => this.onBus(e.data);
      this.follow();
      if (navigator.locks && navigator.locks.request) { // the lock holder leads; the next in line takes over
        this.abort = new AbortController();
        navigator.locks.request(this.key, { signal: this.abort.signal },
          () => new Promise((release) => { this.release = release; this.lead(); })).catch(noop);
      } else this.elect();
      addEventListener("pagehide", () => { if (this.role === "leader") this.post({ t: "bye" }); });
    }
    follow() {
      this.role = "follower";
      this.post({ t: "hello", since: this.last, chs: [...this.channels] });
    }
    lead() {
      if (this.closed) return this.release && this.release();
      this.role = "leader";
      this.conn = new Conn(this);
      this.post({ t: "leader" });
      this.conn.start();
      this.onVisibility(); // a hidden tab may inherit the lead
    }
    elect() {
      // Without Web Locks: the leader beats every second; when beats stop for 3 s (or it says
      // bye), tabs claim, and the claimant with the smallest tab id wins.
      this.beatAt = 0;
      const tick = () => {
        if (this.role === "leader") this.post({ t: "beat" });
        else if (Date.now() - this.beatAt > 3000 && !this.claiming) this.claim();
      };
      this.electTimer = setInterval(tick, 1000);
      setTimeout(tick, 300);
    }
    claim() {
      this.claiming = true;
      this.post({ t: "claim" });
      setTimeout(() => { if (this.claiming && !this.closed) { this.claiming = false; this.lead(); } }, 300);
    }
    ask(m, optional) { // follower → leader, answered by request id
      return new Promise((resolve, reject) => {
        const rid = ++this.rid;
        this.asks.set(rid, { resolve, reject });
        this.post(Object.assign(m, { rid }));
        setTimeout(() => {
          if (this.asks.delete(rid)) (optional ? resolve() : reject(new Error("rulecast: the leading tab did not answer")));
        }, 10000);
      });
    }
    answer(m, promise) {
      promise.then((v) => this.post({ t: "ans", to: m.from, rid: m.rid, v }),
        (e) => this.post({ t: "ans", to: m.from, rid: m.rid, err: e.message, code: e.code }));
    }
    onBus(m) {
      if (this.closed || !m) return;
      const lead = this.role === "leader";
      if (!lead && /^(beat|leader|catchup|msg|status)$/.test(m.t)) { this.beatAt = Date.now(); this.claiming = false; }
      switch (m.t) {
        case "hello": // a tab joined, or answers a new leader
          if (!lead) break;
          m.chs.forEach((ch) => { const had = this.wanted().has(ch); this.shared.add(ch); if (!had) this.addChannel(ch).catch(this.warn); });
          this.post({ t: "catchup", to: m.from, safe: this.last, welcome: this.welcome, s: this.status, tr: this.transport,
            fs: m.since === null ? [] : this.recent.filter((f) => f.id > m.since) });
          break;
        case "sub": if (lead) { this.shared.add(m.ch); this.answer(m, this.addChannel(m.ch)); } break;
        case "pub": if (lead) this.answer(m, this.publish(m.ch, m.data)); break;
        case "reconnect": if (lead) this.conn.restart(); break;
        case "visible": if (lead) { this.someVisible = true; this.wake(); } break;
        case "anyone": if (!lead && document.visibilityState === "visible") this.post({ t: "visible" }); break;
        case "catchup":
          if (m.to !== this.tab) break;
          if (m.welcome) this.welcomed(m.welcome, false);
          m.fs.forEach((f) => { if (this.accept(f)) this.deliver(f); });
          this.advanceTo(m.safe);
          this.transport = m.tr;
          this.setStatus(m.s);
          break;
        case "msg": if (!lead) { if (this.accept(m.f)) this.deliver(m.f); this.advanceTo(m.safe); } break;
        case "safe": if (!lead) this.advanceTo(m.safe); break;
        case "welcome": if (!lead) this.welcomed(m.f, false); break;
        case "status": if (!lead) { this.transport = m.tr; this.setStatus(m.s); } break;
        case "leader": case "beat": // a leader: answer it, or (no Web Locks) the smaller tab id leads
          if (lead && !this.release && m.from < this.tab) { this.conn.stop(); this.conn = null; }
          else if (lead) { if (m.t === "leader") this.post({ t: "beat" }); break; }
          if (m.t === "leader" || this.role === "leader") this.follow();
          break;
        case "claim": if (lead) this.post({ t: "beat" }); else if (m.from < this.tab) this.claiming = false; break;
        case "bye": if (!lead) this.beatAt = 0; break;
        case "ans": {
          const p = m.to === this.tab && this.asks.get(m.rid);
          if (!p) break;
          this.asks.delete(m.rid);
          if ("err" in m) p.reject(Object.assign(new Error(m.err), { code: m.code })); else p.resolve(m.v);
          break;
        }
      }
    }

    // -- hidden pages ------------------------------------------------------------------------------
    onVisibility() { // a hidden page keeps its socket for hiddenTimeout, then lets it go
      clearTimeout(this.hideTimer);
      if (document.visibilityState === "visible") {
        if (this.role === "follower") this.post({ t: "visible" }); else this.wake();
      } else if (this.role !== "follower" && this.hiddenTimeout > 0) {
        this.hideTimer = setTimeout(() => this.maybeSleep(), this.hiddenTimeout);
      }
    }
    maybeSleep() {
      if (document.visibilityState === "visible" || !this.conn) return;
      if (this.role === "solo") return this.sleep();
      this.someVisible = false; // a visible follower answers at once
      this.post({ t: "anyone" });
      this.hideTimer = setTimeout(() => (this.someVisible ? this.onVisibility() : this.sleep()), 1000);
    }
    sleep() { this.conn.stop(); this.lost("paused"); }
    wake() { if (this.conn && this.conn.stopped && this.status === "paused") this.conn.start(); }
  }

  // ---------------------------------------------------------------------------------------------
  // The widget: a bell with an unread count, a list of notifications, toasts. All of it lives in a
  // shadow root; message text only ever goes through textContent.
  const CSS = `
:host { all: initial; position: fixed; z-index: var(--rulecast-z, 2147483000); font: 14px/1.4 var(--rulecast-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  color: var(--rulecast-fg, #1f2937); --a: var(--rulecast-accent, #2563eb); --bg: var(--rulecast-bg, #fff); --line: var(--rulecast-border, #e5e7eb);
  --muted: var(--rulecast-muted, #6b7280); --off: var(--rulecast-offset, 16px); }
:host([data-position$=right]) { right: var(--off); } :host([data-position$=left]) { left: var(--off); }
:host([data-position^=top]) { top: var(--off); } :host([data-position^=bottom]) { bottom: var(--off); }
:host([data-position=inline]) { position: relative; display: inline-block; }
.bell { position: relative; display: grid; place-items: center; width: 40px; height: 40px; padding: 0; border-radius: 50%; cursor: pointer;
  color: inherit; background: var(--bg); border: 1px solid var(--line); box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.bell:hover { background: var(--rulecast-hover, #f9fafb); }
button:focus-visible, a:focus-visible { outline: 2px solid var(--a); outline-offset: 2px; } .panel:focus { outline: none; }
.badge { position: absolute; top: -4px; right: -4px; min-width: 18px; height: 18px; padding: 0 5px; box-sizing: border-box; border-radius: 9px;
  background: var(--rulecast-badge-bg, #dc2626); color: var(--rulecast-badge-fg, #fff); font-size: 11px; font-weight: 700; line-height: 14px;
  text-align: center; border: 2px solid var(--bg); }
.panel { position: absolute; width: var(--rulecast-width, 360px); max-width: calc(100vw - 2 * var(--off)); background: var(--bg); border: 1px solid var(--line);
  border-radius: var(--rulecast-radius, 12px); box-shadow: var(--rulecast-shadow, 0 12px 32px rgba(15,23,42,.18)); overflow: hidden; }
:host([data-position$=right]) .panel, :host([data-position=inline]) .panel { right: 0; } :host([data-position$=left]) .panel { left: 0; }
:host(:not([data-position^=bottom])) .panel { top: 48px; } :host([data-position^=bottom]) .panel { bottom: 48px; }
.head { display: flex; align-items: center; justify-content: space-between; padding: 12px 16px; border-bottom: 1px solid var(--line); }
h2 { margin: 0; font-size: 15px; font-weight: 600; }
.mark { border: 0; background: none; color: var(--a); font: inherit; font-size: 13px; cursor: pointer; padding: 2px 4px; border-radius: 4px; }
.mark:disabled { color: var(--muted); cursor: default; }
.state { margin: 0; padding: 6px 16px; font-size: 12px; color: #92400e; background: #fffbeb; border-bottom: 1px solid var(--line); }
ul { list-style: none; margin: 0; padding: 0; max-height: min(60vh, 420px); overflow-y: auto; }
li { position: relative; padding: 12px 16px 12px 28px; border-bottom: 1px solid var(--line); }
li:last-child { border-bottom: 0; }
li.unread { background: var(--rulecast-unread-bg, #eff6ff); }
li.unread::before { content: ""; position: absolute; left: 12px; top: 19px; width: 8px; height: 8px; border-radius: 50%; background: var(--a); }
.title { display: block; font-weight: 600; color: inherit; text-decoration: none; overflow-wrap: anywhere; }
a.title:hover { color: var(--a); text-decoration: underline; }
.body { margin: 2px 0 0; color: var(--rulecast-body, #374151); overflow-wrap: anywhere; display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden; }
time { display: block; margin-top: 4px; font-size: 12px; color: var(--muted); }
.empty { margin: 0; padding: 28px 16px; text-align: center; color: var(--muted); }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.toasts { position: fixed; display: flex; flex-direction: column; gap: 8px; width: var(--rulecast-width, 360px); max-width: calc(100vw - 2 * var(--off)); }
:host(:not([data-position^=bottom])) .toasts { bottom: var(--off); } :host([data-position^=bottom]) .toasts { bottom: calc(var(--off) + 52px); }
:host(:not([data-position$=left])) .toasts { right: var(--off); } :host([data-position$=left]) .toasts { left: var(--off); }
.toast { padding: 12px 14px; background: var(--rulecast-toast-bg, #111827); color: var(--rulecast-toast-fg, #f9fafb); border-radius: 10px;
  box-shadow: 0 8px 24px rgba(0,0,0,.2); cursor: pointer; animation: in .18s ease-out; }
.toast strong { display: block; } .toast span { display: block; opacity: .85; font-size: 13px; overflow-wrap: anywhere; }
@keyframes in { from { opacity: 0; transform: translateY(6px); } }
@media (prefers-reduced-motion: reduce) { .toast { animation: none; } }
[hidden] { display: none !important; }`;
  // Constant markup only: no data ever goes through innerHTML.
  const HTML = `<button class="bell" type="button" aria-haspopup="true" aria-expanded="false" aria-controls="panel" aria-label="Notifications">
<svg width="20" height="20" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">
<path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/><path d="M13.73 21a2 2 0 0 1-3.46 0"/></svg>
<span class="badge" aria-hidden="true" hidden></span></button>
<div class="panel" id="panel" role="region" aria-labelledby="heading" tabindex="-1" hidden>
<div class="head"><h2 id="heading">Notifications</h2><button class="mark" type="button" disabled>Mark all read</button></div>
<p class="state" role="status" hidden></p><ul aria-labelledby="heading"></ul><p class="empty">No notifications yet</p></div>
<div class="toasts" role="status" aria-live="polite"></div>`;
  const STATES = { connecting: "Connecting…", reconnecting: "Reconnecting…", paused: "Paused while the page is hidden",
    denied: "Not signed in: the server refused the token", closed: "Disconnected" };

  function ago(iso, now) {
    const t = Date.parse(iso);
    if (isNaN(t)) return "";
    const s = Math.max(0, (now - t) / 1000);
    if (s < 45) return "just now";
    if (s < 3600) return Math.max(1, Math.floor(s / 60)) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    if (s < 7 * 86400) return Math.floor(s / 86400) + " d ago";
    return new Date(t).toLocaleDateString();
  }
  function safeHref(url) { // only http(s): a javascript: or data: link never becomes clickable
    if (typeof url !== "string" || !url) return null;
    try { const u = new URL(url, location.href); return /^https?:$/.test(u.protocol) ? u.href : null; } catch (e) { return null; }
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const str = (v) => (v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v));

  class Widget {
    constructor(o) {
      this.o = o;
      this.base = new URL(o.url || DEFAULT_BASE, location.href).href.replace(/\/+$/, "");
      Object.assign(this, { items: new Map(), nodes: new Map(), early: [], extra: new Set(), unreadBase: 0,
        lastRead: 0, inbox: false, anonymous: false, user: undefined, isOpen: false });
      this.mount();
      if (typeof BroadcastChannel === "function") { // "Mark all read" in one tab clears the others
        this.readBus = new BroadcastChannel("rulecast-widget:" + this.base);
        this.readBus.onmessage = (e) => this.applyRead(e.data.last_read, e.data.unread);
      }
      this.client = new Client({ url: this.base, token: o.token, channels: o.channels, share: o.share,
        hiddenTimeout: o.hiddenTimeout, onMessage: (f) => this.onMessage(f), onStatus: (s, d) => this.onStatus(s, d) });
      this.clock = setInterval(() => this.renderTimes(), 30000);
    }
    mount() {
      const host = this.host = document.createElement("rulecast-widget");
      host.setAttribute("data-position", this.o.position || "top-right");
      const root = this.root = host.attachShadow({ mode: "open" });
      root.innerHTML = "<style>" + CSS + "</style>" + HTML;
      const $ = (s) => root.querySelector(s);
      Object.assign(this, { bell: $(".bell"), badge: $(".badge"), panel: $(".panel"), list: $("ul"), empty: $(".empty"),
        mark: $(".mark"), state: $(".state"), toasts: $(".toasts") });
      this.bell.addEventListener("click", () => (this.isOpen ? this.close(false) : this.open()));
      this.mark.addEventListener("click", () => this.markAllRead());
      document.addEventListener("keydown", (e) => { if (e.key === "Escape" && this.isOpen) this.close(true); });
      document.addEventListener("click", (e) => { if (this.isOpen && !e.composedPath().includes(host)) this.close(false); });
      const target = this.o.target;
      if (target) target.appendChild(host);
      else if (this.o.position === "inline" && this.o.script && this.o.script.parentNode) this.o.script.after(host);
      else document.body.appendChild(host);
    }
    open() {
      this.isOpen = true;
      this.panel.hidden = false;
      this.bell.setAttribute("aria-expanded", "true");
      if (this.o.position === "inline") { // hangs left from the bell, unless that leaves the page
        this.panel.style.right = this.panel.style.left = "";
        if (this.panel.getBoundingClientRect().left < 0) Object.assign(this.panel.style, { right: "auto", left: "0" });
      }
      this.renderTimes();
      this.toasts.replaceChildren(); // their messages are in the list now
      this.panel.focus(); // screen readers announce the region; Tab goes on to its buttons and links
    }
    close(refocus) {
      this.isOpen = false;
      this.panel.hidden = true;
      this.bell.setAttribute("aria-expanded", "false");
      if (refocus) this.bell.focus();
    }
    onStatus(s, d) {
      this.host.dataset.status = s;
      this.state.hidden = !STATES[s];
      this.state.textContent = STATES[s] || "";
      dispatchEvent(new CustomEvent("rulecast:status", { detail: { status: s, transport: d.transport, role: d.role } }));
      if (s !== "live") return;
      if (this.user !== undefined && d.user !== this.user) this.reset(); // someone else logged in
      this.user = d.user;
      if (!this.inbox && !this.loading) this.loadInbox();
    }
    reset() {
      this.items.clear(); this.nodes.clear(); this.list.replaceChildren();
      Object.assign(this, { early: [], extra: new Set(), unreadBase: 0, lastRead: 0, inbox: false, anonymous: false });
      this.render();
    }
    headers(json) {
      const h = json ? { "Content-Type": "application/json" } : {};
      if (this.o.token) h.Authorization = "Bearer " + this.o.token;
      return h;
    }
    async loadInbox() {
      // Loaded once the connection is live: what is stored before this request is in the answer,
      // whatever comes later arrives over the connection. Ids tie the two together.
      this.loading = true;
      try {
        const res = await fetch(this.base + "/api/notifications?limit=" + (this.o.limit || 20), { credentials: "same-origin", headers: this.headers() });
        if (res.status === 401) this.applyInbox({ messages: [], unread: 0, last_read: 0 }, true);
        else if (res.ok) this.applyInbox(await res.json(), false);
        else console.warn("rulecast: the inbox answered " + res.status);
      } catch (e) { console.warn("rulecast: cannot load the inbox:", e); } finally { this.loading = false; }
    }
    applyInbox(r, anonymous) {
      // A tab that logged in as someone else may share a connection opened before: renew it (once).
      if (r.user !== undefined && this.client.welcome && r.user !== this.client.welcome.user && !this.renewed) {
        this.renewed = true;
        this.client.reconnect();
      }
      const ids = new Set(r.messages.map((m) => m.id));
      const top = Math.max(0, ...ids);
      this.anonymous = anonymous;
      this.lastRead = r.last_read || 0;
      this.unreadBase = r.unread || 0;
      // The server counted what it had stored when it answered; what came live and is not in the
      // answer (newer, or a topic, which the inbox leaves out) is counted on top.
      this.early.forEach((f) => { if (f.id > this.lastRead && !ids.has(f.id) && (f.id > top || isTopic(f.channel))) this.extra.add(f.id); });
      this.early = [];
      this.inbox = true;
      this.host.dataset.ready = "";
      r.messages.forEach((m) => this.add(m));
      this.render();
    }
    onMessage(f) {
      dispatchEvent(new CustomEvent("rulecast:message", { detail: f }));
      if (this.items.has(f.id)) return;
      this.add(f);
      if (!this.inbox) this.early.push(f);
      else if (f.id > this.lastRead) this.extra.add(f.id);
      this.toast(f);
      this.render();
    }
    async markAllRead() {
      const upto = Math.max(0, ...this.items.keys());
      if (!upto) return;
      if (this.anonymous) return this.applyRead(upto, 0);
      try {
        const res = await fetch(this.base + "/api/notifications/read", { method: "POST", credentials: "same-origin",
          headers: this.headers(true), body: JSON.stringify({ upto }) });
        if (!res.ok) throw new Error("the server answered " + res.status);
        const r = await res.json();
        this.applyRead(r.last_read, r.unread);
        if (this.readBus) this.readBus.postMessage({ last_read: r.last_read, unread: r.unread });
      } catch (e) { console.warn("rulecast: mark all read failed:", e); }
    }
    applyRead(lastRead, unread) {
      this.lastRead = Math.max(this.lastRead, lastRead);
      this.unreadBase = unread;
      // The server's count covers its channels; only topics it does not know of stay on top.
      this.extra.forEach((id) => { const f = this.items.get(id); if (id <= this.lastRead || !f || !isTopic(f.channel)) this.extra.delete(id); });
      this.render();
    }

    // -- rendering ---------------------------------------------------------------------------------
    add(f) {
      if (this.items.has(f.id)) return;
      this.items.set(f.id, f);
      const d = f.data || {}, li = el("li"), href = safeHref(d.url);
      const title = str(d.title) || (d.body ? "" : "Notification");
      li.append(el("span", "sr", "Unread: "));
      if (title) {
        const t = el(href ? "a" : "span", "title", title);
        if (href) t.href = href;
        li.append(t);
      }
      if (d.body !== undefined && d.body !== null && d.body !== "") li.append(el("p", "body", str(d.body)));
      const time = el("time");
      time.dateTime = f.time || "";
      time.title = f.time ? new Date(f.time).toLocaleString() : "";
      li.append(time);
      li.dataset.id = f.id;
      this.nodes.set(f.id, li);
      // Newest first; inserted in place (not re-rendered) so that focus in the list stays put.
      let next = null;
      for (const node of this.list.children) if (Number(node.dataset.id) < f.id) { next = node; break; }
      this.list.insertBefore(li, next);
      time.textContent = ago(f.time, Date.now());
      while (this.items.size > (this.o.max || 50)) { // drop the oldest
        const oldest = Math.min(...this.items.keys());
        this.items.delete(oldest); this.extra.delete(oldest);
        this.nodes.get(oldest).remove(); this.nodes.delete(oldest);
      }
    }
    render() {
      const n = this.unreadBase + this.extra.size;
      this.badge.hidden = n === 0;
      this.badge.textContent = n > 99 ? "99+" : String(n);
      this.bell.setAttribute("aria-label", n ? "Notifications, " + n + " unread" : "Notifications");
      this.host.dataset.unread = n;
      let unreadShown = false;
      this.nodes.forEach((li, id) => {
        const unread = id > this.lastRead;
        unreadShown = unreadShown || unread;
        li.classList.toggle("unread", unread);
        li.firstChild.hidden = !unread;
      });
      this.mark.disabled = !n && !unreadShown;
      this.empty.hidden = this.items.size > 0;
    }
    renderTimes() {
      const now = Date.now();
      this.nodes.forEach((li, id) => { li.querySelector("time").textContent = ago(this.items.get(id).time, now); });
    }
    toast(f) {
      if (this.o.toast === 0 || this.isOpen) return; // the open list shows it already
      const d = f.data || {}, t = el("div", "toast");
      t.append(el("strong", "", str(d.title) || "New notification"));
      if (d.body) t.append(el("span", "", str(d.body)));
      t.addEventListener("click", () => { t.remove(); this.open(); });
      this.toasts.append(t);
      while (this.toasts.children.length > 3) this.toasts.firstChild.remove();
      setTimeout(() => t.remove(), 1000 * (this.o.toast || 6));
    }
  }

  // ---------------------------------------------------------------------------------------------
  const RuleCast = window.RuleCast = {
    version: "1",
    connect: (o) => new Client(o),
    Widget,
    widget: null, // the widget the script tag made, if any
  };
  if (script && script.hasAttribute("data-rulecast-widget")) {
    const ds = script.dataset, number = (v) => (v === undefined || v === "" ? undefined : Number(v));
    const start = () => {
      RuleCast.widget = new Widget({ script, url: ds.url, token: ds.token, position: ds.position,
        channels: (ds.channels || "").split(",").map((s) => s.trim()).filter(Boolean),
        share: ds.share !== "false", hiddenTimeout: number(ds.hiddenTimeout), toast: number(ds.toast), limit: number(ds.limit) });
    };
    if (document.body) start(); else document.addEventListener("DOMContentLoaded", start, { once: true });
  }
})();
