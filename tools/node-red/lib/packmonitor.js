// Pack Monitor dashboard logic: topic parsing, staleness, colours against thresholds, and the view
// model the dashboard templates and charts render.
//
// Plain JavaScript with no require(): build-flow.js inlines everything above the EXPORTS marker into
// the flow's function nodes, so the code unit-tested here (test/packmonitor.test.js) is the code that
// runs in Node-RED. Edit this file, then run `node tools/node-red/build-flow.js`.

// Defaults match the hub's alarm defaults (hub/config.py); the flow tab's PACKMON_THRESHOLDS env
// variable overrides any of them. Warn levels colour a pack amber before the hub's alarm fires.
const DEFAULT_THRESHOLDS = {
  low_alarm: 3.0, // V, hub alarms.pack_low_v
  low_warn: 3.1, // V
  high_warn: 4.1, // V
  high_alarm: 4.15, // V, hub alarms.pack_high_v
  temp_low: 0.0, // degC, hub alarms.temp_low_c
  temp_high: 50.0, // degC, hub alarms.temp_high_c
  stale_after_s: 60, // a pack not heard of for this long is shown stale (hub: stale_after_s 30 + scans)
};

const LEVEL_COLORS = {
  ok: '#2ea043',
  warn: '#d29922',
  alarm: '#f85149',
  stale: '#6e7681',
  unknown: '#6e7681',
};

const ALARM_LABELS = {
  pack_low: 'Pack voltage low',
  pack_high: 'Pack voltage high',
  delta_high: 'Pack imbalance high',
  temp_high: 'Temperature high',
  temp_low: 'Temperature low',
  comms: 'Packs not answering',
};

function thresholds(overrides) {
  const th = Object.assign({}, DEFAULT_THRESHOLDS);
  if (overrides && typeof overrides === 'object') {
    for (const k of Object.keys(DEFAULT_THRESHOLDS)) {
      const v = Number(overrides[k]);
      if (overrides[k] !== undefined && overrides[k] !== null && overrides[k] !== '' && Number.isFinite(v)) th[k] = v;
    }
  }
  return th;
}

// lastHeard: when any topic of this hub last arrived (the battery values below are known only while the
// hub is heard). shunt / estimator: null until the first message of that kind, so a hub without a shunt
// or battery config shows "not configured" instead of zeros.
function newState() {
  return {
    status: null,
    statusSeen: 0,
    lastHeard: null,
    packs: {},
    bank: null,
    bankSeen: 0,
    alarms: {},
    probes: {},
    shunt: null, // {current, power, energy (object|null), energySeen}
    estimator: null, // {soc}
    packEst: {}, // n -> {soc, health (object|null)}
    outputs: {}, // name -> {state, reason, since} | {unknown: true}
  };
}

function payloadText(payload) {
  if (payload === undefined || payload === null) return '';
  if (typeof payload === 'string') return payload;
  if (typeof Buffer !== 'undefined' && Buffer.isBuffer(payload)) return payload.toString('utf8');
  if (typeof payload === 'object') return JSON.stringify(payload);
  return String(payload);
}

// "3.312" -> 3.312; "" (a deleted retained value), "nan", garbage -> null.
function parseNumber(payload) {
  if (typeof payload === 'number') return Number.isFinite(payload) ? payload : null;
  const s = payloadText(payload).trim();
  if (s === '') return null;
  const v = Number(s);
  return Number.isFinite(v) ? v : null;
}

function parseJson(payload) {
  if (payload && typeof payload === 'object' && !(typeof Buffer !== 'undefined' && Buffer.isBuffer(payload))) return payload;
  const s = payloadText(payload).trim();
  if (s === '') return null;
  try {
    const v = JSON.parse(s);
    return v && typeof v === 'object' ? v : null;
  } catch (e) {
    return null;
  }
}

function normPrefix(prefix) {
  return String(prefix || '').replace(/\/+$/, '');
}

// The wildcard subscription for one bank: every pack, whatever their number.
function subscribeTopic(prefix) {
  return normPrefix(prefix) + '/#';
}

// packmonitor/bank1/pack/12/voltage -> {kind:'pack', pack:12, field:'voltage'}; null when not ours.
function parseTopic(topic, prefix) {
  const p = normPrefix(prefix) + '/';
  if (typeof topic !== 'string' || !topic.startsWith(p)) return null;
  const parts = topic.slice(p.length).split('/');
  if (parts.length === 1 && parts[0] === 'status') return { kind: 'status' };
  if (parts.length === 3 && parts[0] === 'pack' && ['voltage', 'temperature', 'state', 'soc', 'health'].indexOf(parts[2]) >= 0) {
    if (!/^[1-9][0-9]{0,3}$/.test(parts[1])) return null;
    const kind = parts[2] === 'soc' || parts[2] === 'health' ? 'packest' : 'pack';
    return { kind: kind, pack: parseInt(parts[1], 10), field: parts[2] };
  }
  if (parts.length === 2 && parts[0] === 'bank' && parts[1] === 'state') return { kind: 'bank' };
  if (parts.length === 2 && parts[0] === 'bank' && ['current', 'power', 'energy'].indexOf(parts[1]) >= 0) {
    return { kind: 'shunt', field: parts[1] };
  }
  if (parts.length === 2 && parts[0] === 'bank' && parts[1] === 'soc') return { kind: 'soc' };
  if (parts.length === 2 && parts[0] === 'output' && /^[a-z0-9_]+$/.test(parts[1])) return { kind: 'output', name: parts[1] };
  if (parts.length === 2 && parts[0] === 'alarm' && /^[a-z0-9_]+$/.test(parts[1])) return { kind: 'alarm', name: parts[1] };
  if (parts.length === 3 && parts[0] === 'probe' && parts[1] !== '' && parts[2] === 'temperature') {
    return { kind: 'probe', id: parts[1] };
  }
  return null;
}

function fixed(v, digits, unit) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '—';
  return Number(v).toFixed(digits) + (unit ? ' ' + unit : '');
}

function alarmUnit(name) {
  if (name === 'pack_low' || name === 'pack_high' || name === 'delta_high') return { unit: 'V', digits: 3 };
  if (name === 'temp_high' || name === 'temp_low') return { unit: '°C', digits: 1 };
  return { unit: '', digits: 0 };
}

// {"active":true,"value":3.05,"threshold":3.1,"pack":4} -> "Pack voltage low: pack 4 at 3.050 V (limit 3.100 V)"
function alarmText(name, a) {
  const label = ALARM_LABELS[name] || name;
  if (!a) return label;
  const u = alarmUnit(name);
  let s = label;
  if (name === 'comms') {
    if (a.value !== null && a.value !== undefined) s += ': ' + a.value + (a.pack ? ' (first: pack ' + a.pack + ')' : '');
    return s;
  }
  if (a.pack) s += ': pack ' + a.pack;
  if (a.value !== null && a.value !== undefined) s += (a.pack ? ' at ' : ': ') + fixed(a.value, u.digits, u.unit);
  if (a.threshold !== null && a.threshold !== undefined) s += ' (limit ' + fixed(a.threshold, u.digits, u.unit) + ')';
  return s;
}

function getPack(state, n) {
  if (!state.packs[n]) {
    state.packs[n] = { pack: n, voltage: null, temperature: null, flags: [], bad_frames: 0, stale: false, seen: null };
  }
  return state.packs[n];
}

// "62.5" -> 62.5; empty (unknown), garbage or outside 0..100 -> null: a SOC is never guessed or clamped.
function parsePercent(payload) {
  const v = parseNumber(payload);
  return v !== null && v >= 0 && v <= 100 ? v : null;
}

// "+12.345 A", "-0.500 A": the sign says the direction (+ = charging).
function signed(v, digits, unit) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '—';
  const n = Number(v);
  const t = Math.abs(n).toFixed(digits);
  return (n > 0 && Number(t) !== 0 ? '+' : n < 0 && Number(t) !== 0 ? '-' : '') + t + (unit ? ' ' + unit : '');
}

// Outputs the hub drives (protect branch): closed = connected / on.
const OUTPUTS = {
  charge_enable: { label: 'Charge', closed: 'connected', open: 'disconnected', normal: 'closed' },
  discharge_enable: { label: 'Discharge', closed: 'connected', open: 'disconnected', normal: 'closed' },
  fan: { label: 'Fan', closed: 'on', open: 'off', normal: null },
  buzzer: { label: 'Buzzer', closed: 'sounding', open: 'silent', normal: 'open' },
};
const OUTPUT_ORDER = ['charge_enable', 'discharge_enable', 'fan', 'buzzer'];

function outputState(o) {
  const s = o && typeof o.state === 'string' ? o.state.toLowerCase() : null;
  return s === 'closed' || s === 'open' ? s : null;
}

// alarm: a protection has acted (charge/discharge disconnected, buzzer sounding); info: a non-default
// state that is not a fault (fan on); ok; unknown.
function outputLevel(name, o) {
  const s = outputState(o);
  if (s === null) return 'unknown';
  const d = OUTPUTS[name];
  if (!d || d.normal === null) return s === 'closed' ? 'info' : 'ok';
  return s === d.normal ? 'ok' : 'alarm';
}

function outputText(name, o) {
  const d = OUTPUTS[name] || { label: name, closed: 'closed', open: 'open' };
  const s = outputState(o);
  let t = d.label + ' ' + (s === null ? 'UNKNOWN' : s.toUpperCase() + ' (' + d[s] + ')');
  if (o && o.reason !== null && o.reason !== undefined && String(o.reason) !== '') t += ': ' + String(o.reason);
  return t;
}

function pad2(n) {
  return (n < 10 ? '0' : '') + n;
}

// The "since" of an output, whatever the hub sends: an ISO/date string is shown as it is; a number is
// Unix seconds (or ms), or seconds since 2000-01-01 (MicroPython's epoch on the ESP32), or, when small,
// the hub's uptime in seconds. Shown in the Node-RED server's local time.
function sinceText(since) {
  if (since === null || since === undefined || since === '') return null;
  if (typeof since === 'string' && !/^\s*-?[0-9.]+\s*$/.test(since)) return since.trim();
  const n = Number(since);
  if (!Number.isFinite(n) || n < 0) return null;
  let ms = null;
  if (n >= 1e12) ms = n;
  else if (n >= 1e9) ms = n * 1000;
  else if (n >= 6e8) ms = (n + 946684800) * 1000; // 2000 epoch: 2019..2031
  if (ms === null) {
    const s = Math.round(n);
    return 'uptime ' + (s >= 3600 ? Math.floor(s / 3600) + ' h ' + pad2(Math.floor((s % 3600) / 60)) + ' min' : s >= 60 ? Math.floor(s / 60) + ' min ' + pad2(s % 60) + ' s' : s + ' s');
  }
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
}

// Why the battery values (current, power, energy, SOC, health, outputs) cannot be shown as known now,
// or null. The hub publishes some of them only on change, so they do not age on their own: they are
// unknown when the hub is offline (its last will) or when nothing at all was heard from it for
// stale_after_s (the hub publishes every scan).
function hubUnknownReason(state, th, now) {
  if (state.status === 'offline') return 'hub offline';
  if (state.lastHeard !== null && now - state.lastHeard > th.stale_after_s * 1000) {
    return 'nothing from the hub for ' + Math.round((now - state.lastHeard) / 1000) + ' s';
  }
  return null;
}

function socLevel(v) {
  if (v === null) return 'unknown';
  return v <= 10 ? 'alarm' : v <= 25 ? 'warn' : 'ok';
}

// The first of several names a field may have (the energy payload is read defensively).
function pick(obj, names) {
  if (!obj || typeof obj !== 'object') return undefined;
  for (const n of names) if (obj[n] !== undefined) return obj[n];
  return undefined;
}

const ENERGY_FIELDS = {
  in_wh: ['in_wh', 'charged_wh', 'charge_wh'],
  out_wh: ['out_wh', 'discharged_wh', 'discharge_wh'],
  in_ah: ['in_ah', 'charged_ah', 'charge_ah'],
  out_ah: ['out_ah', 'discharged_ah', 'discharge_ah'],
};

// One energy row (today or lifetime): present fields only; null fields are unknown ("—").
function energyRow(obj, unknown) {
  const row = { present: false };
  for (const k of Object.keys(ENERGY_FIELDS)) {
    const raw = pick(obj, ENERGY_FIELDS[k]);
    if (raw === undefined) {
      row[k] = undefined;
      continue;
    }
    row.present = true;
    const v = unknown ? null : parseNumber(raw);
    row[k] = v;
    row[k + 'Text'] = k.endsWith('_wh') ? (v === null ? '—' : fixed(v / 1000, 2, 'kWh')) : fixed(v, 1, 'Ah');
  }
  return row;
}

function energyView(state, why) {
  const sh = state.shunt;
  if (!sh) return { configured: false };
  const e = why ? null : sh.energy;
  const unknown = e === null;
  const lifetime = energyRow(unknown ? null : pick(e, ['lifetime', 'total']) || e, false);
  // "today": null is an unknown day (no clock yet): the lifetime's fields, each unknown
  let today = energyRow(unknown ? null : e.today, false);
  if (!unknown && e.today === null) {
    const blank = {};
    for (const k of Object.keys(ENERGY_FIELDS)) if (lifetime[k] !== undefined) blank[k] = null;
    today = energyRow(blank, true);
  }
  const date = unknown ? null : typeof e.date === 'string' && e.date ? e.date : null;
  return {
    configured: true,
    known: !unknown,
    unknownText: why ? 'unknown: ' + why : 'unknown',
    today: today,
    lifetime: lifetime,
    date: date, // the hub's day of the "today" counters; null: none (no clock yet)
    showAh: today.in_ah !== undefined || today.out_ah !== undefined || lifetime.in_ah !== undefined || lifetime.out_ah !== undefined,
  };
}

function powerView(state, why) {
  const sh = state.shunt;
  if (!sh) return { configured: false };
  const i = why ? null : sh.current;
  const p = why ? null : sh.power;
  const dir = i === null ? null : i > 0.05 ? 'charging' : i < -0.05 ? 'discharging' : 'idle';
  return {
    configured: true,
    current: i,
    currentText: signed(i, 3, 'A'),
    power: p,
    powerText: p === null ? '—' : Math.abs(p) >= 10000 ? signed(p / 1000, 2, 'kW') : signed(p, 0, 'W'),
    direction: dir,
    directionText: dir === null ? (why ? 'unknown: ' + why : 'unknown') : dir,
    directionColor: dir === 'charging' ? LEVEL_COLORS.ok : dir === 'discharging' ? '#2f81f7' : LEVEL_COLORS.unknown,
  };
}

function socView(state, why) {
  if (!state.estimator) return { configured: false };
  const v = why ? null : state.estimator.soc;
  const level = socLevel(v);
  return {
    configured: true,
    soc: v,
    text: v === null ? '—' : fixed(v, 1, '%'),
    level: level,
    color: levelColor(level),
    // the filled share of the gauge's arc, 0..1; 0 when unknown (the arc is grey, the text "—")
    fraction: v === null ? 0 : v / 100,
    note: v === null ? 'SOC unknown' + (why ? ': ' + why : ' (no estimate yet)') : 'bank state of charge',
  };
}

function sohLevel(v) {
  if (v === null) return 'unknown';
  return v < 70 ? 'alarm' : v < 80 ? 'warn' : 'ok';
}

// One row per pack that the hub knows (pack topics) or estimates (soc/health topics). A stale pack's
// SOC is not shown (like its voltage); its capacity/SOH/resistance are long-term estimates and stay.
function healthView(state, why, th, now) {
  if (!state.estimator) return { configured: false };
  const nums = {};
  for (const n of Object.keys(state.packs)) nums[n] = true;
  for (const n of Object.keys(state.packEst)) nums[n] = true;
  const rows = Object.keys(nums)
    .map(Number)
    .sort((a, b) => a - b)
    .map((n) => {
      const est = state.packEst[n] || { soc: null, health: null };
      const h = why || !est.health ? {} : est.health;
      const packStale = state.packs[n] ? staleReason(state.packs[n], state, th, now) !== null : false;
      const soc = why || packStale ? null : est.soc;
      const cap = parseNumber(h.capacity_ah);
      const soh = parseNumber(h.soh);
      const r = parseNumber(h.resistance_mohm);
      let conf = parseNumber(h.confidence);
      if (conf !== null && (conf < 0 || conf > 1)) conf = null;
      const sl = sohLevel(soh);
      return {
        pack: n,
        label: 'P' + n,
        socText: fixed(soc, 1, '%'),
        capacityText: fixed(cap, 1, 'Ah'),
        sohText: fixed(soh, 1, '%'),
        sohColor: sl === 'unknown' ? '' : levelColor(sl),
        resistanceText: fixed(r, 1, 'mΩ'),
        confidenceText: conf === null ? '—' : Math.round(conf * 100) + ' %',
        lowConfidence: conf !== null && conf < 0.5,
        weakest: !why && h.weakest === true,
      };
    });
  const weakest = rows.filter((r) => r.weakest).map((r) => r.pack);
  return {
    configured: true,
    rows: rows,
    weakest: weakest,
    weakestText: weakest.length ? 'Weakest: pack ' + weakest.join(', ') : 'Weakest: —' + (why ? ' (' + why + ')' : ''),
  };
}

function outputsView(state, why) {
  const names = Object.keys(state.outputs).sort((a, b) => {
    const ia = OUTPUT_ORDER.indexOf(a) < 0 ? 99 : OUTPUT_ORDER.indexOf(a);
    const ib = OUTPUT_ORDER.indexOf(b) < 0 ? 99 : OUTPUT_ORDER.indexOf(b);
    return ia - ib || (a < b ? -1 : a > b ? 1 : 0);
  });
  if (!names.length) return { configured: false, items: [], tripped: 0 };
  const items = names.map((name) => {
    const o = why ? null : state.outputs[name];
    const d = OUTPUTS[name] || { label: name, closed: 'closed', open: 'open' };
    const s = outputState(o);
    const level = outputLevel(name, o);
    const reason = o && o.reason !== null && o.reason !== undefined && String(o.reason) !== '' ? String(o.reason) : null;
    const since = o ? sinceText(o.since) : null;
    return {
      name: name,
      label: d.label,
      state: s,
      stateText: s === null ? 'UNKNOWN' : s.toUpperCase(),
      meaning: s === null ? (why ? why : 'unknown') : d[s],
      reason: reason,
      sinceText: since ? 'since ' + since : '',
      level: level,
      color: level === 'info' ? '#2f81f7' : levelColor(level),
      tripped: level === 'alarm',
    };
  });
  return { configured: true, items: items, tripped: items.filter((x) => x.tripped).length };
}

// Apply one MQTT message to the state. Returns {ok, changed, events}; events feed the history charts
// (fresh readings only) and the notifications (alarm raised/cleared, hub offline/online).
function ingest(state, topic, payload, prefix, now) {
  const t = parseTopic(topic, prefix);
  const res = { ok: !!t, changed: false, events: [] };
  if (!t) return res;
  res.changed = true;
  state.lastHeard = now;
  if (t.kind === 'status') {
    const s = payloadText(payload).trim().toLowerCase();
    const was = state.status;
    state.status = s === 'online' || s === 'offline' ? s : null;
    state.statusSeen = now;
    if (was !== state.status && state.status) res.events.push({ type: 'status', online: state.status === 'online', was: was });
  } else if (t.kind === 'pack') {
    if (t.field === 'state') {
      const s = parseJson(payload);
      if (s === null) {
        if (payloadText(payload).trim() === '') delete state.packs[t.pack]; // deleted: pack left the ring
        else res.ok = false;
        return res;
      }
      const p = getPack(state, t.pack);
      p.stale = s.stale === true;
      p.flags = Array.isArray(s.flags) ? s.flags.map(String) : [];
      p.bad_frames = Number(s.bad_frames) || 0;
      p.age = s.age === undefined ? null : s.age;
      p.voltage = p.stale ? null : parseNumber(s.voltage);
      p.temperature = p.stale ? null : parseNumber(s.temperature);
      p.seen = now;
    } else {
      const v = parseNumber(payload);
      const p = getPack(state, t.pack);
      p[t.field] = v;
      if (v !== null) {
        p.seen = now;
        p.stale = false; // the hub publishes values only for packs read in this scan
        if (t.field === 'voltage') res.events.push({ type: 'voltage', series: 'P' + t.pack, value: v });
        else res.events.push({ type: 'temperature', series: 'P' + t.pack, value: v });
      }
    }
  } else if (t.kind === 'bank') {
    state.bank = parseJson(payload);
    state.bankSeen = now;
  } else if (t.kind === 'alarm') {
    const a = parseJson(payload);
    const was = state.alarms[t.name] ? state.alarms[t.name].active === true : false;
    if (a === null) delete state.alarms[t.name];
    else state.alarms[t.name] = a;
    const active = !!(a && a.active === true);
    if (active !== was) {
      res.events.push({ type: 'alarm', name: t.name, active: active, text: alarmText(t.name, a) });
    }
  } else if (t.kind === 'shunt') {
    if (!state.shunt) state.shunt = { current: null, power: null, energy: null };
    if (t.field === 'energy') {
      const e = parseJson(payload);
      if (e === null && payloadText(payload).trim() !== '') res.ok = false; // garbage: keep what we had
      else state.shunt.energy = e; // empty payload: unknown
    } else {
      const v = parseNumber(payload);
      state.shunt[t.field] = v;
      if (v !== null) res.events.push({ type: t.field, series: t.field === 'current' ? 'current' : 'power', value: v });
    }
  } else if (t.kind === 'soc') {
    if (!state.estimator) state.estimator = { soc: null };
    state.estimator.soc = parsePercent(payload);
  } else if (t.kind === 'packest') {
    if (!state.estimator) state.estimator = { soc: null };
    if (!state.packEst[t.pack]) state.packEst[t.pack] = { soc: null, health: null };
    if (t.field === 'soc') state.packEst[t.pack].soc = parsePercent(payload);
    else {
      const h = parseJson(payload);
      if (h === null && payloadText(payload).trim() !== '') res.ok = false;
      else state.packEst[t.pack].health = h;
    }
  } else if (t.kind === 'output') {
    const o = parseJson(payload);
    const before = outputLevel(t.name, state.outputs[t.name]);
    if (o === null && payloadText(payload).trim() !== '') {
      res.ok = false;
      return res;
    }
    state.outputs[t.name] = o === null ? { state: null, reason: null, since: null } : o;
    const after = outputLevel(t.name, state.outputs[t.name]);
    // a protection that trips is notified once (also when first seen tripped), and so is its return to
    // normal; an output becoming unknown is not a return to normal
    const tripped = after === 'alarm' && before !== 'alarm';
    const back = before === 'alarm' && (after === 'ok' || after === 'info');
    if (tripped || back) res.events.push({ type: 'output', name: t.name, tripped: tripped, text: outputText(t.name, state.outputs[t.name]) });
  } else if (t.kind === 'probe') {
    const v = parseNumber(payload);
    if (v === null) delete state.probes[t.id];
    else {
      state.probes[t.id] = { id: t.id, temperature: v, seen: now };
      res.events.push({ type: 'temperature', series: 'probe ' + t.id, value: v });
    }
  }
  return res;
}

function voltageLevel(v, th) {
  if (v === null || v === undefined || !Number.isFinite(v)) return 'unknown';
  if (v <= th.low_alarm || v >= th.high_alarm) return 'alarm';
  if (v <= th.low_warn || v >= th.high_warn) return 'warn';
  return 'ok';
}

function temperatureLevel(t, th) {
  if (t === null || t === undefined || !Number.isFinite(t)) return 'unknown';
  if (t >= th.temp_high || t <= th.temp_low) return 'alarm';
  if (t >= th.temp_high - 5 || t <= th.temp_low + 5) return 'warn';
  return 'ok';
}

function levelColor(level) {
  return LEVEL_COLORS[level] || LEVEL_COLORS.unknown;
}

// Why a pack must not be shown as a live value, or null when it is live.
function staleReason(p, state, th, now) {
  if (state.status === 'offline') return 'hub offline';
  if (p.stale) return 'not answering';
  if (p.seen !== null && now - p.seen > th.stale_after_s * 1000) return 'no update for ' + Math.round((now - p.seen) / 1000) + ' s';
  return null;
}

function packView(p, state, th, now) {
  const why = staleReason(p, state, th, now);
  const stale = why !== null;
  const v = stale ? null : p.voltage;
  const t = stale ? null : p.temperature;
  const level = stale ? 'stale' : voltageLevel(v, th);
  const tlevel = stale ? 'stale' : temperatureLevel(t, th);
  const span = th.high_alarm - th.low_alarm;
  const fill = v === null || !(span > 0) ? 0 : Math.max(0, Math.min(100, Math.round(((v - th.low_alarm) / span) * 100)));
  return {
    pack: p.pack,
    label: 'P' + p.pack,
    voltage: v,
    voltageText: stale ? 'STALE' : fixed(v, 3, 'V'),
    temperature: t,
    temperatureText: stale ? '—' : fixed(t, 1, '°C'),
    level: level,
    color: levelColor(level),
    tempLevel: tlevel,
    tempColor: levelColor(tlevel),
    stale: stale,
    staleReason: why,
    flags: p.flags || [],
    badFrames: p.bad_frames || 0,
    fill: fill,
  };
}

function activeAlarms(state) {
  return Object.keys(state.alarms)
    .sort()
    .filter((k) => state.alarms[k] && state.alarms[k].active === true)
    .map((k) => ({ name: k, text: alarmText(k, state.alarms[k]) }));
}

// Everything the dashboard shows, from the state: rendered by the ui-template widgets as msg.payload.
function buildView(state, th, now, bankName) {
  const packs = Object.keys(state.packs)
    .map(Number)
    .sort((a, b) => a - b)
    .map((n) => packView(state.packs[n], state, th, now));
  const fresh = packs.filter((p) => !p.stale && p.voltage !== null);
  const staleCount = packs.filter((p) => p.stale).length;
  const b = state.bank || {};
  const hubOffline = state.status === 'offline';
  // The hub's own figures are the truth; a local figure is used only when the hub sent none.
  let total = hubOffline ? null : parseNumber(b.voltage);
  let min = parseNumber(b.min);
  let max = parseNumber(b.max);
  let minPack = b.min_pack || null;
  let maxPack = b.max_pack || null;
  if ((min === null || max === null) && fresh.length) {
    const lo = fresh.reduce((x, y) => (y.voltage < x.voltage ? y : x));
    const hi = fresh.reduce((x, y) => (y.voltage > x.voltage ? y : x));
    min = lo.voltage;
    minPack = lo.pack;
    max = hi.voltage;
    maxPack = hi.pack;
  }
  if (hubOffline) min = max = minPack = maxPack = null;
  const delta = min !== null && max !== null ? max - min : null;
  const tempMax = parseNumber(b.temp_max);
  const probes = Object.keys(state.probes)
    .sort()
    .map((id) => {
      const pr = state.probes[id];
      const stale = hubOffline || now - pr.seen > th.stale_after_s * 1000;
      return { id: id, temperature: stale ? null : pr.temperature, text: stale ? 'STALE' : fixed(pr.temperature, 1, '°C'), stale: stale };
    });
  const status = state.status === 'online' ? 'online' : state.status === 'offline' ? 'offline' : 'unknown';
  const batteryWhy = hubUnknownReason(state, th, now);
  return {
    bank: bankName || '',
    status: status,
    statusText: status === 'online' ? 'ONLINE' : status === 'offline' ? 'OFFLINE' : 'NO STATUS',
    statusColor: status === 'online' ? LEVEL_COLORS.ok : status === 'offline' ? LEVEL_COLORS.alarm : LEVEL_COLORS.unknown,
    total: total,
    totalText: total === null ? (staleCount ? '— (' + staleCount + ' stale)' : '—') : fixed(total, 2, 'V'),
    min: min,
    minText: min === null ? '—' : fixed(min, 3, 'V') + (minPack ? ' (P' + minPack + ')' : ''),
    max: max,
    maxText: max === null ? '—' : fixed(max, 3, 'V') + (maxPack ? ' (P' + maxPack + ')' : ''),
    delta: delta,
    deltaText: delta === null ? '—' : Math.round(delta * 1000) + ' mV',
    deltaColor: levelColor(delta === null ? 'unknown' : delta >= 0.1 ? 'alarm' : delta >= 0.05 ? 'warn' : 'ok'),
    avgText: fixed(hubOffline ? null : parseNumber(b.avg), 3, 'V'),
    tempMaxText: fixed(hubOffline ? null : tempMax, 1, '°C'),
    packCount: packs.length,
    staleCount: staleCount,
    packs: packs,
    probes: probes,
    alarms: activeAlarms(state),
    thresholds: th,
    // the battery cards; each says configured:false until the hub sent its first topic of that kind
    soc: socView(state, batteryWhy),
    power: powerView(state, batteryWhy),
    energy: energyView(state, batteryWhy),
    health: healthView(state, batteryWhy, th, now),
    outputs: outputsView(state, batteryWhy),
    updated: now,
  };
}

// Payload for the bar chart (ui-chart, x = pack label, y = volts): live packs only, so a stale pack
// is a gap, never its last value.
function barChartData(view) {
  return view.packs.filter((p) => !p.stale && p.voltage !== null).map((p) => ({ pack: p.label, volts: p.voltage }));
}

// A y-axis range that shows differences of a few mV, instead of bars all starting at 0 V.
function voltageAxis(view) {
  const vs = view.packs.filter((p) => !p.stale && p.voltage !== null).map((p) => p.voltage);
  if (!vs.length) return { min: 2.5, max: 4.3 };
  const lo = Math.min.apply(null, vs);
  const hi = Math.max.apply(null, vs);
  const pad = Math.max(0.02, (hi - lo) * 0.25);
  return { min: Math.floor((lo - pad) * 100) / 100, max: Math.ceil((hi + pad) * 100) / 100 };
}

// Notification text for an alarm/status event, or null when the event is not notified.
function notification(ev, bankName) {
  const where = bankName ? bankName + ': ' : '';
  if (ev.type === 'alarm') return (ev.active ? '⚠ ALARM ' : '✓ cleared ') + where + ev.text;
  if (ev.type === 'status' && !ev.online) return '⚠ ' + where + 'hub OFFLINE — values are stale';
  if (ev.type === 'status' && ev.online && ev.was === 'offline') return '✓ ' + where + 'hub back online';
  if (ev.type === 'output') return (ev.tripped ? '⚠ ' : '✓ ') + where + ev.text;
  return null;
}

// ---- EXPORTS (not inlined into the flow) ----
module.exports = {
  DEFAULT_THRESHOLDS,
  LEVEL_COLORS,
  thresholds,
  newState,
  parseNumber,
  parseJson,
  subscribeTopic,
  parseTopic,
  alarmText,
  ingest,
  voltageLevel,
  temperatureLevel,
  levelColor,
  staleReason,
  packView,
  buildView,
  barChartData,
  voltageAxis,
  notification,
  parsePercent,
  signed,
  outputLevel,
  outputText,
  sinceText,
  hubUnknownReason,
  energyView,
  powerView,
  socView,
  healthView,
  outputsView,
};
