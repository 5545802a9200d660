// pedstream central station: bed tiles with live waveforms (plain canvas), alarm handling, bed view.
// Served by pedstream.web; no external code, no build step. Waveform frames: see pedstream/web/display.py.
"use strict";
(() => {
  const PX_PER_MM = 96 / 25.4, SWEEP_MM_S = 25, PX_PER_S = SWEEP_MM_S * PX_PER_MM;
  const MM_PER_MV = { ecg: 5, iegm: 2.5 };  // half the paper standard: tiles are short (shown on the page)
  const IEGM = new Set(["ABL12", "RVA12", "CS12", "CS34", "CS56", "CS78", "CS90"]);
  const PRIO = { high: 3, medium: 2, advisory: 1 };
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
  const stats = { frames: 0, bytes: 0, msgs: 0, rafs: 0, fps: 0, latency: [], started: performance.now() };
  const drawn = [];  // wall-clock markers of frames drawn in this animation frame
  window.__pedstream = stats;
  let me = null, ws = null, layout = {}, byNumber = {}, tiles = {}, order = [], bedStream = null, soundOn = false, audio = null;
  const bedMatch = location.pathname.match(/^\/bed\/(.+)$/);
  if (bedMatch) bedStream = decodeURIComponent(bedMatch[1]);

  // -- a sweeping trace set on one canvas -------------------------------------------------------------
  class Sweep {
    constructor(canvas, labels) { this.canvas = canvas; this.labels = labels; this.next = null; this.x = 0; this.last = []; this.hp = []; this.queue = []; }
    push(first, fs, nch, samples, wall) { this.queue.push({ first, fs, nch, samples, wall }); if (this.queue.length > 100) this.queue.shift(); }
    draw() {
      const c = this.canvas, w = c.clientWidth, h = c.clientHeight;
      if (!w || !h) { this.queue.length = 0; return; }
      if (c.width !== w || c.height !== h) { c.width = w; c.height = h; this.x = 0; this.last = []; }
      const ctx = c.getContext("2d");
      while (this.queue.length) {
        const f = this.queue.shift(), band = h / f.nch, dx = PX_PER_S / f.fs, n = f.samples.length / f.nch;
        if (this.next !== null && f.first !== this.next) this.last = [];  // a gap: start the trace again
        this.next = f.first + n;
        ctx.lineWidth = 1.3; ctx.strokeStyle = "#59f08a";
        for (let ch = 0; ch < f.nch; ch++) {
          const label = this.labels[ch] || "", gain = (IEGM.has(label) ? MM_PER_MV.iegm : MM_PER_MV.ecg) * PX_PER_MM;
          const mid = band * (ch + 0.5), a = 1 / (f.fs * 0.32);  // one-pole baseline follower (~0.5 Hz)
          let x = this.x, m = this.hp[ch], prev = this.last[ch];
          ctx.beginPath();
          for (let i = 0; i < n; i++) {
            const v = f.samples[i * f.nch + ch] / 200;
            m = m === undefined ? v : m + a * (v - m);
            const y = Math.max(band * ch, Math.min(band * (ch + 1), mid - (v - m) * gain));
            if (prev !== undefined && x >= prev[0]) { ctx.moveTo(prev[0], prev[1]); ctx.lineTo(x, y); }
            prev = [x, y]; x += dx;
            if (x >= w) { x -= w; prev = undefined; }
          }
          ctx.stroke();
          this.hp[ch] = m; this.last[ch] = prev;
          if (ch === f.nch - 1) { this.xEnd = x; }
        }
        const x0 = this.x, x1 = this.xEnd;  // erase a bar ahead of the trace (the sweep)
        const gap = 12;
        if (x1 >= x0) ctx.clearRect(x1 + 1, 0, gap, h); else { ctx.clearRect(x1 + 1, 0, gap, h); }
        this.x = x1;
        ctx.fillStyle = "#8aa"; ctx.font = "11px sans-serif";
        for (let ch = 0; ch < f.nch; ch++) { ctx.clearRect(0, band * ch, 36, 13); ctx.fillText(this.labels[ch] || "", 2, band * ch + 11); }
        drawn.push(f.wall);  // its latency is taken at the next animation frame (the drawing handed on)
      }
    }
  }

  // -- tiles ---------------------------------------------------------------------------------------------
  function makeTile(sid) {
    const t = el("article", "tile"); t.dataset.stream = sid;
    const head = el("div", "head"); head.title = "open the bed view";
    head.append(el("span", "sid", sid), el("span", "src"), el("span", "hr"));
    head.addEventListener("click", () => openBed(sid));
    const canvas = el("canvas", "wave"); canvas.width = 380; canvas.height = 130;
    const info = el("div", "info"); info.append(el("span", "call"), el("span", "ectopy"), el("span", "quality"));
    const alarm = el("div", "alarm"); alarm.append(el("span", "text"));
    if (me && me.role === "clinician") {
      const ack = el("button", "ack", "Acknowledge"); ack.type = "button"; ack.addEventListener("click", () => act(sid, t.dataset.alarm, "ack"));
      const sil = el("button", "silence", "Silence 2 min"); sil.type = "button"; sil.addEventListener("click", () => act(sid, t.dataset.alarm, "silence", 120));
      alarm.append(ack, sil);
    }
    t.append(head, canvas, info, alarm);
    const tile = { el: t, sweep: new Sweep(canvas, []) };
    tiles[sid] = tile; observer.observe(t);
    return tile;
  }
  const fmtHeld = (s) => s === null || s === undefined ? "" : ` · ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  function renderTile(tile, b) {
    const t = tile.el, q = (c) => t.querySelector(c);
    q(".src").textContent = b.source + (b.lost ? ` · ${b.lost}` : "");
    q(".hr").innerHTML = ""; q(".hr").append(el("small", null, "HR "), document.createTextNode(b.hr ?? "-"));
    q(".call").innerHTML = ""; q(".call").append(el("b", null, b.call ?? "-"), document.createTextNode((b.p !== null && b.p !== undefined ? ` ${b.p.toFixed(2)}` : "") + fmtHeld(b.held_s)));
    q(".ectopy").textContent = b.pvc !== null && b.pvc !== undefined ? `PVC ${b.pvc}/min PAC ${b.pac}/min` : "";
    const qual = q(".quality"); qual.textContent = b.check_leads ? "CHECK LEADS" : (b.quality || ""); qual.classList.toggle("bad", !!b.check_leads || b.quality === "error" || b.quality === "stalled");
    const a = b.alarms[0];
    t.className = "tile" + (a ? ` prio-${a.priority} ${a.state}` : "");
    t.dataset.alarm = a ? a.label : "";
    let text = "";
    if (a) {
      text = `${a.priority.toUpperCase()} ${a.label}` + (b.alarms.length > 1 ? ` +${b.alarms.length - 1}` : "");
      if (a.state !== "sounding") text += ` · ${a.state === "silenced" ? "silenced" : "acknowledged"} by ${a.by}` + (a.left_s !== null ? ` (${a.left_s} s)` : "");
    }
    q(".alarm .text").textContent = text;
    t.querySelectorAll(".alarm button").forEach((bt) => { bt.hidden = !a; });
  }

  const visible = new Set();
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) { const sid = e.target.dataset.stream; if (e.isIntersecting) visible.add(sid); else visible.delete(sid); }
    sendLook();
  });
  function sendLook() {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ t: "look", visible: bedStream ? [bedStream] : [...visible], bed: bedStream }));
  }

  // -- messages -----------------------------------------------------------------------------------------
  function onState(msg) {
    const ward = $("ward"), ids = msg.beds.map((b) => b.stream);
    for (const b of msg.beds) renderTile(tiles[b.stream] || makeTile(b.stream), b);
    if (ids.join("\u0000") !== order.join("\u0000")) { for (const sid of ids) ward.append(tiles[sid].el); order = ids; }
    if (bedStream) { const b = msg.beds.find((x) => x.stream === bedStream); const tile = tiles[bedStream]; if (b && tile) { $("bedtile").append(tile.el); } }
    const sounding = msg.beds.flatMap((b) => b.alarms).filter((a) => a.state === "sounding");
    beep(sounding.length ? Math.max(...sounding.map((a) => PRIO[a.priority] || 0)) : 0);
    $("foot").textContent = `${msg.beds.length} beds · ${SWEEP_MM_S} mm/s · ECG ${MM_PER_MV.ecg} mm/mV, IEGM ${MM_PER_MV.iegm} mm/mV · ${stats.fps.toFixed(0)} frames/s · ${(stats.bytes / 1024).toFixed(0)} KiB received`;
  }
  function onLayout(msg) {
    layout = {}; byNumber = {};
    for (const b of msg.beds) {
      layout[b.stream] = b; byNumber[b.bed] = b;
      const tile = tiles[b.stream] || makeTile(b.stream);
      tile.sweep.labels = b.tile.map((i) => b.channels[i]);
      if (b.stream === bedStream) { bedSweep.labels = b.channels; $("bedcanvas").style.height = `${Math.max(200, b.channels.length * 56)}px`; }
    }
  }
  function onEvent(ev) {
    if (bedStream && ev.stream === bedStream) addEvent(ev);
  }
  function addEvent(ev) {
    const li = el("li", null, `${ev.t.slice(11, 19)} ${ev.kind} ${ev.label ?? ""} ${ev.priority ?? ""}` + (ev.user ? ` by ${ev.user}` : "") + (ev.reason ? ` ${ev.reason}` : "") + (ev.message ? ` ${ev.message}` : ""));
    $("events").prepend(li);
    while ($("events").children.length > 200) $("events").lastChild.remove();
    if (ev.kind === "alarm_on" && ev.strip) setTimeout(() => addStrip(ev.strip.split("/").pop()), 15000);
  }
  function addStrip(name) {
    const img = el("img"); img.src = `/strips/${encodeURIComponent(name)}`; img.alt = name; img.onerror = () => img.remove();
    $("strips").prepend(img);
  }
  const calls = [], colours = {};
  function addCall(c) { calls.push(c); while (calls.length > 900) calls.shift(); drawTimeline(); }
  function drawTimeline() {
    const tl = $("timeline"); tl.innerHTML = "";
    const recent = calls.slice(-300);
    for (const c of recent) {
      const label = c[1] || "-"; if (!(label in colours)) colours[label] = Object.keys(colours).length % 8;
      const s = el("span", `c${colours[label]}`); s.style.flex = "1"; s.title = `${c[0].slice(11, 19)} ${label} ${c[2] === null ? "" : c[2].toFixed(2)}`; tl.append(s);
    }
    const lg = $("legend"); lg.innerHTML = "";
    for (const [label, i] of Object.entries(colours)) { const s = el("span"); s.append(el("i", `c${i}`), document.createTextNode(label)); lg.append(s); }
  }
  function onBed(msg) {
    $("events").innerHTML = ""; $("strips").innerHTML = ""; calls.length = 0;
    for (const e of msg.events) addEvent(e);
    for (const c of msg.calls) calls.push(c);
    drawTimeline();
    for (const s of msg.strips) addStrip(s);
  }
  function onFrame(buf) {
    const dv = new DataView(buf), kind = dv.getUint8(0), nch = dv.getUint8(1), bed = dv.getUint16(2, true);
    const first = dv.getUint32(4, true), fs = dv.getFloat32(8, true), wall = dv.getFloat64(12, true), n = dv.getUint16(20, true);
    const samples = new Int16Array(buf, 24, n * nch), b = byNumber[bed];
    stats.frames++; stats.bytes += buf.byteLength;
    if (!b) return;
    if (kind === 2) { if (b.stream === bedStream) bedSweep.push(first, fs, nch, samples, wall); }
    else if (tiles[b.stream]) tiles[b.stream].sweep.push(first, fs, nch, samples, wall);
  }

  // -- actions ------------------------------------------------------------------------------------------
  async function act(stream, label, action, seconds) {
    if (!label) return;
    const r = await fetch("/api/alarm", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": me.csrf }, body: JSON.stringify({ stream, label, action, seconds }) });
    const e = r.ok ? null : await r.json().catch(() => ({}));
    $("notice").textContent = e ? `${action} ${stream} ${label}: ${e.error || r.status}` : "";
  }
  function beep(level) {
    if (!soundOn || !level) return;
    const now = performance.now(); if (beep.last && now - beep.last < (level === 3 ? 1000 : 3000)) return; beep.last = now;
    audio = audio || new AudioContext();
    const o = audio.createOscillator(), g = audio.createGain(); o.frequency.value = level === 3 ? 960 : level === 2 ? 700 : 500;
    g.gain.value = 0.1; o.connect(g).connect(audio.destination); o.start(); o.stop(audio.currentTime + 0.15);
  }
  function openBed(sid) { location.href = `/bed/${encodeURIComponent(sid)}`; }

  // -- start --------------------------------------------------------------------------------------------
  const bedSweep = new Sweep($("bedcanvas"), []);
  function frame() {
    stats.rafs++;
    const now = Date.now();  // the previous animation frame's drawing has been handed to the compositor
    for (const w of drawn) stats.latency.push(now - w);
    drawn.length = 0; if (stats.latency.length > 1000) stats.latency.splice(0, stats.latency.length - 1000);
    const t = performance.now(); if (t - (frame.t0 || 0) >= 1000) { stats.fps = (stats.rafs - (frame.n0 || 0)) * 1000 / (t - (frame.t0 || t - 1000)); frame.t0 = t; frame.n0 = stats.rafs; }
    for (const sid in tiles) tiles[sid].sweep.draw();
    if (bedStream) bedSweep.draw();
    requestAnimationFrame(frame);
  }
  function connect() {
    ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn up"; sendLook(); };
    ws.onclose = (e) => { $("conn").textContent = `disconnected (${e.code})`; $("conn").className = "conn down"; if (e.code === 4401 || e.code === 1008) location.href = "/login"; else setTimeout(connect, 2000); };
    ws.onmessage = (m) => {
      if (typeof m.data !== "string") { onFrame(m.data); return; }
      stats.msgs++; stats.bytes += m.data.length;
      const msg = JSON.parse(m.data);
      if (msg.t === "state") onState(msg); else if (msg.t === "layout") onLayout(msg); else if (msg.t === "event") onEvent(msg.ev);
      else if (msg.t === "call") { if (msg.stream === bedStream) addCall(msg.call); } else if (msg.t === "bed") onBed(msg);
      else if (msg.t === "hello") { $("banner").textContent = msg.banner; }
    };
  }
  async function start() {
    const r = await fetch("/api/session", { credentials: "same-origin" });
    if (!r.ok) { location.href = "/login"; return; }
    me = await r.json();
    $("who").textContent = `${me.user} (${me.role})`; $("logout-csrf").value = me.csrf;
    $("sound").addEventListener("click", () => { soundOn = !soundOn; $("sound").textContent = soundOn ? "sound on" : "sound off"; });
    if (bedStream) { $("ward").hidden = true; $("bedview").hidden = false; $("bedtitle").textContent = bedStream; }
    connect(); requestAnimationFrame(frame);
  }
  start();
})();
