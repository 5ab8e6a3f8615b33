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

function newState() {
  return { status: null, statusSeen: 0, packs: {}, bank: null, bankSeen: 0, alarms: {}, probes: {} };
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
  if (parts.length === 3 && parts[0] === 'pack' && ['voltage', 'temperature', 'state'].indexOf(parts[2]) >= 0) {
    if (!/^[1-9][0-9]{0,3}$/.test(parts[1])) return null;
    return { kind: 'pack', pack: parseInt(parts[1], 10), field: parts[2] };
  }
  if (parts.length === 2 && parts[0] === 'bank' && parts[1] === 'state') return { kind: 'bank' };
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

// Apply one MQTT message to the state. Returns {ok, changed, events}; events feed the history charts
// (fresh readings only) and the notifications (alarm raised/cleared, hub offline/online).
function ingest(state, topic, payload, prefix, now) {
  const t = parseTopic(topic, prefix);
  const res = { ok: !!t, changed: false, events: [] };
  if (!t) return res;
  res.changed = true;
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
};
