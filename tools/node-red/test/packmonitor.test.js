// Unit tests of the dashboard logic that runs inside the flow's function nodes.
// Run: node --test tools/node-red/test/
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const pm = require('../lib/packmonitor.js');

const P = 'packmonitor/bank1';
const TH = pm.thresholds();

function scan(state, now, packs, opts) {
  opts = opts || {};
  pm.ingest(state, P + '/status', 'online', P, now);
  for (const [n, v, t] of packs) {
    pm.ingest(state, `${P}/pack/${n}/voltage`, v.toFixed(3), P, now);
    pm.ingest(state, `${P}/pack/${n}/temperature`, t.toFixed(1), P, now);
    pm.ingest(state, `${P}/pack/${n}/state`, JSON.stringify({ pack: n, voltage: v, temperature: t, flags: [], bad_frames: 0, stale: false, age: 1.2 }), P, now);
  }
  if (opts.bank) pm.ingest(state, P + '/bank/state', JSON.stringify(opts.bank), P, now);
}

test('parseTopic: every hub topic, any pack number, nothing else', () => {
  assert.deepEqual(pm.parseTopic(P + '/status', P), { kind: 'status' });
  assert.deepEqual(pm.parseTopic(P + '/pack/1/voltage', P), { kind: 'pack', pack: 1, field: 'voltage' });
  assert.deepEqual(pm.parseTopic(P + '/pack/64/temperature', P), { kind: 'pack', pack: 64, field: 'temperature' });
  assert.deepEqual(pm.parseTopic(P + '/pack/17/state', P), { kind: 'pack', pack: 17, field: 'state' });
  assert.deepEqual(pm.parseTopic(P + '/bank/state', P), { kind: 'bank' });
  assert.deepEqual(pm.parseTopic(P + '/alarm/pack_low', P), { kind: 'alarm', name: 'pack_low' });
  assert.deepEqual(pm.parseTopic(P + '/probe/28ff4a1b/temperature', P), { kind: 'probe', id: '28ff4a1b' });
  // trailing slash in the configured prefix is fine
  assert.deepEqual(pm.parseTopic(P + '/status', P + '/'), { kind: 'status' });
  for (const bad of [
    'packmonitor/bank2/status', // another bank
    'packmonitor/bank10/status', // prefix must match whole levels
    P + '/pack/0/voltage',
    P + '/pack/01/voltage',
    P + '/pack/x/voltage',
    P + '/pack/1/current',
    P + '/pack/1/voltage/extra',
    P + '/ring',
    P + '/error',
    P + '/probe//temperature',
    'homeassistant/sensor/x/config',
  ]) {
    assert.equal(pm.parseTopic(bad, P), null, bad);
  }
  assert.equal(pm.subscribeTopic(P), P + '/#');
  assert.equal(pm.subscribeTopic(P + '/'), P + '/#');
});

test('parseNumber: hub formats, deleted values and garbage', () => {
  assert.equal(pm.parseNumber('3.312'), 3.312);
  assert.equal(pm.parseNumber(' 25.1\n'), 25.1);
  assert.equal(pm.parseNumber(Buffer.from('-4.5')), -4.5);
  assert.equal(pm.parseNumber(3.3), 3.3);
  assert.equal(pm.parseNumber(''), null);
  assert.equal(pm.parseNumber('nan'), null);
  assert.equal(pm.parseNumber('3.3V'), null);
  assert.equal(pm.parseNumber(null), null);
  assert.equal(pm.parseJson('{"a":1}').a, 1);
  assert.equal(pm.parseJson('not json'), null);
  assert.equal(pm.parseJson('3'), null);
  assert.equal(pm.parseJson(''), null);
});

test('voltage colours against the thresholds', () => {
  assert.equal(pm.voltageLevel(3.3, TH), 'ok');
  assert.equal(pm.voltageLevel(3.1, TH), 'warn');
  assert.equal(pm.voltageLevel(3.05, TH), 'warn');
  assert.equal(pm.voltageLevel(3.0, TH), 'alarm');
  assert.equal(pm.voltageLevel(2.9, TH), 'alarm');
  assert.equal(pm.voltageLevel(4.1, TH), 'warn');
  assert.equal(pm.voltageLevel(4.2, TH), 'alarm');
  assert.equal(pm.voltageLevel(null, TH), 'unknown');
  assert.equal(pm.levelColor('ok'), pm.LEVEL_COLORS.ok);
  assert.notEqual(pm.levelColor('ok'), pm.levelColor('alarm'));
  assert.notEqual(pm.levelColor('warn'), pm.levelColor('alarm'));
  assert.equal(pm.temperatureLevel(25, TH), 'ok');
  assert.equal(pm.temperatureLevel(47, TH), 'warn');
  assert.equal(pm.temperatureLevel(51, TH), 'alarm');
  assert.equal(pm.temperatureLevel(-1, TH), 'alarm');
});

test('thresholds: overrides by name, bad values ignored', () => {
  const th = pm.thresholds({ low_alarm: 2.8, high_alarm: '3.65', low_warn: 'x', bogus: 1 });
  assert.equal(th.low_alarm, 2.8);
  assert.equal(th.high_alarm, 3.65);
  assert.equal(th.low_warn, pm.DEFAULT_THRESHOLDS.low_warn);
  assert.equal(th.bogus, undefined);
  assert.deepEqual(pm.thresholds(undefined), pm.DEFAULT_THRESHOLDS);
  assert.equal(pm.voltageLevel(3.7, th), 'alarm'); // LiFePO4-style high limit
});

test('a full scan becomes the table, the bar chart and the bank summary', () => {
  const s = pm.newState();
  const packs = [];
  for (let n = 1; n <= 16; n++) packs.push([n, Number((3.3 + n / 1000).toFixed(3)), Number((25 + n / 10).toFixed(1))]);
  scan(s, 1000, packs, { bank: { packs: 16, voltage: 52.936, min: 3.301, min_pack: 1, max: 3.316, max_pack: 16, delta: 0.015, avg: 3.3085, temp_max: 26.6, stale_packs: 0 } });
  const v = pm.buildView(s, TH, 2000, 'bank1');
  assert.equal(v.packs.length, 16);
  assert.deepEqual(v.packs.map((p) => p.pack), packs.map((p) => p[0])); // numeric order, not "1, 10, 11"
  assert.equal(v.packs[0].voltageText, '3.301 V');
  assert.equal(v.packs[0].temperatureText, '25.1 °C');
  assert.equal(v.packs[0].level, 'ok');
  assert.equal(v.packs[0].stale, false);
  assert.equal(v.status, 'online');
  assert.equal(v.totalText, '52.94 V');
  assert.equal(v.minText, '3.301 V (P1)');
  assert.equal(v.maxText, '3.316 V (P16)');
  assert.equal(v.deltaText, '15 mV');
  assert.equal(v.staleCount, 0);
  assert.deepEqual(v.alarms, []);
  const bars = pm.barChartData(v);
  assert.equal(bars.length, 16);
  assert.deepEqual(bars[1], { pack: 'P2', volts: 3.302 });
  const axis = pm.voltageAxis(v);
  assert.ok(axis.min < 3.301 && axis.min > 3.2, JSON.stringify(axis));
  assert.ok(axis.max > 3.316 && axis.max < 3.4, JSON.stringify(axis));
});

test('ingest emits history points for fresh readings only', () => {
  const s = pm.newState();
  let r = pm.ingest(s, P + '/pack/3/voltage', '3.312', P, 1);
  assert.deepEqual(r.events, [{ type: 'voltage', series: 'P3', value: 3.312 }]);
  r = pm.ingest(s, P + '/pack/3/temperature', '25.1', P, 1);
  assert.deepEqual(r.events, [{ type: 'temperature', series: 'P3', value: 25.1 }]);
  r = pm.ingest(s, P + '/pack/3/voltage', '', P, 2); // the hub clears the retained value of a stale pack
  assert.deepEqual(r.events, []);
  assert.equal(s.packs[3].voltage, null);
  r = pm.ingest(s, P + '/probe/28aa/temperature', '21.5', P, 3);
  assert.deepEqual(r.events, [{ type: 'temperature', series: 'probe 28aa', value: 21.5 }]);
  r = pm.ingest(s, P + '/ring', '{"packs":8}', P, 3);
  assert.equal(r.ok, false);
  r = pm.ingest(s, P + '/pack/3/state', '{broken', P, 3);
  assert.equal(r.ok, false);
});

test('a stale pack is shown stale, never with its last value', () => {
  const s = pm.newState();
  scan(s, 1000, [[1, 3.31, 25], [2, 3.32, 25.5]]);
  // the hub's stale sequence: empty retained voltage/temperature, then state with stale:true
  pm.ingest(s, P + '/pack/2/voltage', '', P, 5000);
  pm.ingest(s, P + '/pack/2/temperature', '', P, 5000);
  pm.ingest(s, P + '/pack/2/state', JSON.stringify({ pack: 2, voltage: null, temperature: null, flags: [], bad_frames: 3, stale: true, age: 35.0 }), P, 5000);
  const v = pm.buildView(s, TH, 5100, 'bank1');
  const p2 = v.packs[1];
  assert.equal(p2.stale, true);
  assert.equal(p2.voltageText, 'STALE');
  assert.equal(p2.voltage, null);
  assert.equal(p2.level, 'stale');
  assert.equal(p2.color, pm.LEVEL_COLORS.stale);
  assert.equal(p2.staleReason, 'not answering');
  assert.equal(p2.badFrames, 3);
  assert.equal(v.staleCount, 1);
  assert.deepEqual(pm.barChartData(v).map((b) => b.pack), ['P1']);
  // a state message saying stale wins even if it carries (old) numbers
  pm.ingest(s, P + '/pack/1/state', JSON.stringify({ pack: 1, voltage: 3.31, temperature: 25, flags: [], bad_frames: 0, stale: true }), P, 6000);
  assert.equal(pm.buildView(s, TH, 6000, 'bank1').packs[0].voltageText, 'STALE');
  // a fresh reading revives it
  pm.ingest(s, P + '/pack/2/voltage', '3.330', P, 7000);
  assert.equal(pm.buildView(s, TH, 7000, 'bank1').packs[1].voltageText, '3.330 V');
});

test('a pack not heard of for stale_after_s is stale, and so is everything when the hub is offline', () => {
  const s = pm.newState();
  scan(s, 0, [[1, 3.31, 25]], { bank: { packs: 1, voltage: 3.31, min: 3.31, min_pack: 1, max: 3.31, max_pack: 1, delta: 0, avg: 3.31, temp_max: 25, stale_packs: 0 } });
  assert.equal(pm.buildView(s, TH, 59000, 'b').packs[0].stale, false);
  const late = pm.buildView(s, TH, 61000, 'b').packs[0];
  assert.equal(late.stale, true);
  assert.match(late.staleReason, /no update for 61 s/);
  const r = pm.ingest(s, P + '/status', 'offline', P, 1000);
  assert.deepEqual(r.events, [{ type: 'status', online: false, was: 'online' }]);
  const v = pm.buildView(s, TH, 1000, 'b');
  assert.equal(v.status, 'offline');
  assert.equal(v.statusText, 'OFFLINE');
  assert.equal(v.packs[0].stale, true);
  assert.equal(v.packs[0].staleReason, 'hub offline');
  assert.equal(v.totalText, '— (1 stale)');
  assert.equal(v.minText, '—');
  assert.match(pm.notification(r.events[0], 'b'), /hub OFFLINE/);
  const back = pm.ingest(s, P + '/status', 'online', P, 2000);
  assert.match(pm.notification(back.events[0], 'b'), /back online/);
});

test('bank total is never made up from an incomplete bank', () => {
  const s = pm.newState();
  scan(s, 0, [[1, 3.31, 25], [2, 3.32, 25]], { bank: { packs: 3, voltage: null, min: 3.31, min_pack: 1, max: 3.32, max_pack: 2, delta: 0.01, avg: 3.315, temp_max: 25, stale_packs: 1 } });
  pm.ingest(s, P + '/pack/3/state', JSON.stringify({ pack: 3, voltage: null, temperature: null, flags: [], bad_frames: 0, stale: true }), P, 0);
  const v = pm.buildView(s, TH, 0, 'b');
  assert.equal(v.total, null);
  assert.equal(v.totalText, '— (1 stale)');
  assert.equal(v.deltaText, '10 mV');
  // without a bank/state message, min/max/delta come from the live packs
  const s2 = pm.newState();
  scan(s2, 0, [[1, 3.31, 25], [2, 3.35, 25]]);
  const v2 = pm.buildView(s2, TH, 0, 'b');
  assert.equal(v2.minText, '3.310 V (P1)');
  assert.equal(v2.maxText, '3.350 V (P2)');
  assert.equal(v2.deltaText, '40 mV');
  assert.equal(v2.totalText, '—');
});

test('alarms: listed while active, notified when raised and cleared', () => {
  const s = pm.newState();
  let r = pm.ingest(s, P + '/alarm/pack_low', JSON.stringify({ active: true, value: 3.05, threshold: 3.1, pack: 4 }), P, 0);
  assert.equal(r.events.length, 1);
  assert.equal(r.events[0].active, true);
  assert.equal(r.events[0].text, 'Pack voltage low: pack 4 at 3.050 V (limit 3.100 V)');
  assert.equal(pm.notification(r.events[0], 'bank1'), '⚠ ALARM bank1: Pack voltage low: pack 4 at 3.050 V (limit 3.100 V)');
  // the same state again (retained replay, republish) is not a new notification
  r = pm.ingest(s, P + '/alarm/pack_low', JSON.stringify({ active: true, value: 3.04, threshold: 3.1, pack: 4 }), P, 1);
  assert.deepEqual(r.events, []);
  // an inactive alarm first seen is not notified
  r = pm.ingest(s, P + '/alarm/temp_high', JSON.stringify({ active: false, value: 25.0, threshold: 50.0, pack: 2 }), P, 1);
  assert.deepEqual(r.events, []);
  r = pm.ingest(s, P + '/alarm/temp_low', JSON.stringify({ active: true, value: -2.5, threshold: 0, pack: 1 }), P, 1);
  assert.equal(r.events[0].text, 'Temperature low: pack 1 at -2.5 °C (limit 0.0 °C)');
  let v = pm.buildView(s, TH, 2, 'bank1');
  assert.deepEqual(v.alarms.map((a) => a.name), ['pack_low', 'temp_low']);
  r = pm.ingest(s, P + '/alarm/pack_low', JSON.stringify({ active: false, value: 3.2, threshold: 3.1, pack: 4 }), P, 3);
  assert.equal(r.events[0].active, false);
  assert.match(pm.notification(r.events[0], 'bank1'), /^✓ cleared bank1: Pack voltage low/);
  v = pm.buildView(s, TH, 3, 'bank1');
  assert.deepEqual(v.alarms.map((a) => a.name), ['temp_low']);
  assert.equal(pm.alarmText('delta_high', { active: true, value: 0.12, threshold: 0.1, pack: null }), 'Pack imbalance high: 0.120 V (limit 0.100 V)');
  assert.equal(pm.alarmText('comms', { active: true, value: 2, threshold: 0, pack: 5 }), 'Packs not answering: 2 (first: pack 5)');
  assert.equal(pm.alarmText('something_new', null), 'something_new');
});

test('a pack whose state is deleted (ring got shorter) disappears', () => {
  const s = pm.newState();
  scan(s, 0, [[1, 3.31, 25], [2, 3.32, 25]]);
  pm.ingest(s, P + '/pack/2/state', '', P, 1);
  assert.deepEqual(pm.buildView(s, TH, 1, 'b').packs.map((p) => p.pack), [1]);
});

test('probes are shown, and stale when old', () => {
  const s = pm.newState();
  pm.ingest(s, P + '/status', 'online', P, 0);
  pm.ingest(s, P + '/probe/28ff01/temperature', '19.5', P, 0);
  assert.deepEqual(pm.buildView(s, TH, 1000, 'b').probes, [{ id: '28ff01', temperature: 19.5, text: '19.5 °C', stale: false }]);
  assert.equal(pm.buildView(s, TH, 120000, 'b').probes[0].text, 'STALE');
});

// ---- battery cards: current/power/energy (shunt), SOC and health (estimator), outputs (protection) ----

function health(capacity, soh, r, conf, weakest) {
  return JSON.stringify({ capacity_ah: capacity, soh: soh, resistance_mohm: r, confidence: conf, weakest: weakest });
}

function batteryBank(s, now) {
  scan(s, now, [[1, 3.31, 25], [2, 3.32, 25], [3, 3.30, 25]]);
  pm.ingest(s, P + '/bank/current', '12.345', P, now);
  pm.ingest(s, P + '/bank/power', '640.2', P, now);
  pm.ingest(s, P + '/bank/soc', '62.5', P, now);
  pm.ingest(s, P + '/bank/energy', JSON.stringify({ in_wh: 123456, out_wh: 98765.4, in_ah: 2400.5, out_ah: 1900.25,
    today: { in_wh: 1234, out_wh: 567, in_ah: 24.5, out_ah: 11 }, date: '2026-11-30' }), P, now);
  pm.ingest(s, P + '/pack/1/soc', '63.0', P, now);
  pm.ingest(s, P + '/pack/2/soc', '61.9', P, now);
  pm.ingest(s, P + '/pack/3/soc', '62.4', P, now);
  pm.ingest(s, P + '/pack/1/health', health(98.5, 97.1, 1.9, 0.8, false), P, now);
  pm.ingest(s, P + '/pack/2/health', health(91.2, 89.9, 2.6, 0.8, true), P, now);
  pm.ingest(s, P + '/pack/3/health', health(97.7, 96.5, 2.0, 0.3, false), P, now);
}

test('parseTopic: the battery topics', () => {
  assert.deepEqual(pm.parseTopic(P + '/bank/current', P), { kind: 'shunt', field: 'current' });
  assert.deepEqual(pm.parseTopic(P + '/bank/power', P), { kind: 'shunt', field: 'power' });
  assert.deepEqual(pm.parseTopic(P + '/bank/energy', P), { kind: 'shunt', field: 'energy' });
  assert.deepEqual(pm.parseTopic(P + '/bank/soc', P), { kind: 'soc' });
  assert.deepEqual(pm.parseTopic(P + '/pack/7/soc', P), { kind: 'packest', pack: 7, field: 'soc' });
  assert.deepEqual(pm.parseTopic(P + '/pack/7/health', P), { kind: 'packest', pack: 7, field: 'health' });
  assert.deepEqual(pm.parseTopic(P + '/output/charge_enable', P), { kind: 'output', name: 'charge_enable' });
  for (const bad of [P + '/cmd/reset', P + '/output/', P + '/output/Fan!', P + '/bank/voltage', P + '/pack/0/soc', P + '/output/fan/x']) {
    assert.equal(pm.parseTopic(bad, P), null, bad);
  }
});

test('a hub without shunt or battery config: the cards say so, never zeros', () => {
  const s = pm.newState();
  scan(s, 0, [[1, 3.31, 25]]);
  const v = pm.buildView(s, TH, 0, 'b');
  for (const card of ['soc', 'power', 'energy', 'health', 'outputs']) assert.equal(v[card].configured, false, card);
  assert.equal(v.outputs.items.length, 0);
  // a shunt but no estimator: current is shown, SOC still "not configured"
  pm.ingest(s, P + '/bank/current', '0.000', P, 0);
  const v2 = pm.buildView(s, TH, 0, 'b');
  assert.equal(v2.power.configured, true);
  assert.equal(v2.power.currentText, '0.000 A');
  assert.equal(v2.power.directionText, 'idle');
  assert.equal(v2.energy.configured, true);
  assert.equal(v2.energy.known, false, 'no energy message yet: unknown, not 0 kWh');
  assert.equal(v2.soc.configured, false);
  assert.equal(v2.health.configured, false);
});

test('current, power, SOC and energy of a bank with a shunt and a battery model', () => {
  const s = pm.newState();
  batteryBank(s, 1000);
  const v = pm.buildView(s, TH, 1500, 'b');
  assert.equal(v.power.currentText, '+12.345 A');
  assert.equal(v.power.powerText, '+640 W');
  assert.equal(v.power.directionText, 'charging');
  assert.equal(v.soc.text, '62.5 %');
  assert.equal(v.soc.fraction, 0.625);
  assert.equal(v.soc.level, 'ok');
  assert.equal(v.energy.known, true);
  assert.equal(v.energy.date, '2026-11-30');
  assert.equal(v.energy.today.in_whText, '1.23 kWh');
  assert.equal(v.energy.today.out_whText, '0.57 kWh');
  assert.equal(v.energy.today.in_ahText, '24.5 Ah');
  assert.equal(v.energy.lifetime.in_whText, '123.46 kWh');
  assert.equal(v.energy.lifetime.out_whText, '98.77 kWh');
  assert.equal(v.energy.lifetime.out_ahText, '1900.3 Ah');
  assert.equal(v.energy.showAh, true);
  pm.ingest(s, P + '/bank/current', '-40.5', P, 2000);
  pm.ingest(s, P + '/bank/power', '-12800', P, 2000);
  pm.ingest(s, P + '/bank/soc', '8.0', P, 2000);
  const d = pm.buildView(s, TH, 2000, 'b');
  assert.equal(d.power.currentText, '-40.500 A');
  assert.equal(d.power.powerText, '-12.80 kW');
  assert.equal(d.power.directionText, 'discharging');
  assert.equal(d.soc.level, 'alarm');
  assert.notEqual(d.soc.color, v.soc.color);
});

test('unknown values (empty payload, JSON null) show "—", never 0 and never the last value', () => {
  const s = pm.newState();
  batteryBank(s, 0);
  // the hub deletes the retained plain values it does not know any more
  let r = pm.ingest(s, P + '/bank/current', '', P, 1000);
  assert.equal(r.ok, true);
  assert.deepEqual(r.events, [], 'no chart point for an unknown current');
  pm.ingest(s, P + '/bank/power', '', P, 1000);
  pm.ingest(s, P + '/bank/soc', '', P, 1000);
  pm.ingest(s, P + '/pack/2/soc', '', P, 1000);
  pm.ingest(s, P + '/pack/3/health', JSON.stringify({ capacity_ah: null, soh: null, resistance_mohm: 2.1, confidence: null, weakest: false }), P, 1000);
  pm.ingest(s, P + '/bank/energy', JSON.stringify({ in_wh: 123456, out_wh: null, today: null, date: null }), P, 1000);
  const v = pm.buildView(s, TH, 1000, 'b');
  assert.equal(v.power.currentText, '—');
  assert.equal(v.power.current, null);
  assert.equal(v.power.powerText, '—');
  assert.equal(v.power.directionText, 'unknown');
  assert.equal(v.soc.text, '—');
  assert.equal(v.soc.soc, null);
  assert.equal(v.soc.fraction, 0);
  assert.equal(v.soc.note, 'SOC unknown (no estimate yet)');
  const h = v.health.rows;
  assert.equal(h[1].socText, '—');
  assert.equal(h[0].socText, '63.0 %');
  assert.deepEqual([h[2].capacityText, h[2].sohText, h[2].resistanceText, h[2].confidenceText], ['—', '—', '2.1 mΩ', '—']);
  assert.equal(v.energy.lifetime.in_whText, '123.46 kWh');
  assert.equal(v.energy.lifetime.out_whText, '—');
  assert.equal(v.energy.lifetime.in_ah, undefined, 'absent fields are not shown');
  assert.equal(v.energy.showAh, false);
  assert.equal(v.energy.date, null, 'no date: no made-up day');
  assert.equal(v.energy.today.in_whText, '—', 'today: null is unknown, not 0');
  // an empty energy payload: the whole card is unknown
  pm.ingest(s, P + '/bank/energy', '', P, 1000);
  assert.equal(pm.buildView(s, TH, 1000, 'b').energy.known, false);
  // garbage is refused and leaves the state as it was; out-of-range SOC is unknown, not clamped
  assert.equal(pm.ingest(s, P + '/bank/energy', '{oops', P, 1000).ok, false);
  pm.ingest(s, P + '/bank/soc', '104', P, 1000);
  assert.equal(pm.buildView(s, TH, 1000, 'b').soc.text, '—');
  pm.ingest(s, P + '/bank/soc', '-1', P, 1000);
  assert.equal(pm.buildView(s, TH, 1000, 'b').soc.text, '—');
  pm.ingest(s, P + '/bank/soc', '100', P, 1000);
  assert.equal(pm.buildView(s, TH, 1000, 'b').soc.text, '100.0 %');
  // a deleted health topic: the row stays, every estimate unknown
  pm.ingest(s, P + '/pack/1/health', '', P, 1000);
  const row = pm.buildView(s, TH, 1000, 'b').health.rows[0];
  assert.deepEqual([row.capacityText, row.sohText, row.weakest], ['—', '—', false]);
});

test('energy payload read defensively: other names, nesting, only what is present', () => {
  const s = pm.newState();
  pm.ingest(s, P + '/bank/energy', JSON.stringify({ lifetime: { charged_wh: 2000, discharged_wh: 1500 }, today: { in_wh: 0, out_wh: 250 } }), P, 0);
  const e = pm.buildView(s, TH, 0, 'b').energy;
  assert.equal(e.lifetime.in_whText, '2.00 kWh');
  assert.equal(e.lifetime.out_whText, '1.50 kWh');
  assert.equal(e.today.in_whText, '0.00 kWh', 'a real 0 is shown as 0');
  assert.equal(e.today.out_whText, '0.25 kWh');
  assert.equal(e.showAh, false);
  pm.ingest(s, P + '/bank/energy', JSON.stringify({ in_wh: 'x', out_wh: 10 }), P, 0);
  const e2 = pm.buildView(s, TH, 0, 'b').energy;
  assert.equal(e2.lifetime.in_whText, '—');
  assert.equal(e2.today.present, false, 'no today in the payload: no today row');
});

test('health table: one row per pack, the weakest pack pointed at', () => {
  const s = pm.newState();
  batteryBank(s, 0);
  const h = pm.buildView(s, TH, 0, 'b').health;
  assert.deepEqual(h.rows.map((r) => r.pack), [1, 2, 3]);
  assert.deepEqual(h.weakest, [2]);
  assert.equal(h.weakestText, 'Weakest: pack 2');
  assert.deepEqual(h.rows.map((r) => r.weakest), [false, true, false]);
  const r2 = h.rows[1];
  assert.deepEqual([r2.socText, r2.capacityText, r2.sohText, r2.resistanceText, r2.confidenceText], ['61.9 %', '91.2 Ah', '89.9 %', '2.6 mΩ', '80 %']);
  assert.equal(h.rows[2].lowConfidence, true);
  assert.equal(h.rows[0].lowConfidence, false);
  // SOH colours
  pm.ingest(s, P + '/pack/1/health', health(70, 75.0, 4, 0.9, false), P, 0);
  pm.ingest(s, P + '/pack/3/health', health(60, 65.0, 6, 0.9, false), P, 0);
  const rows = pm.buildView(s, TH, 0, 'b').health.rows;
  assert.equal(rows[0].sohColor, pm.LEVEL_COLORS.warn);
  assert.equal(rows[1].sohColor, pm.LEVEL_COLORS.ok);
  assert.equal(rows[2].sohColor, pm.LEVEL_COLORS.alarm);
  // the hub moves the pointer: the old flag goes, the new one comes
  pm.ingest(s, P + '/pack/2/health', health(91.2, 89.9, 2.6, 0.8, false), P, 0);
  pm.ingest(s, P + '/pack/3/health', health(60, 65.0, 6, 0.9, true), P, 0);
  assert.equal(pm.buildView(s, TH, 0, 'b').health.weakestText, 'Weakest: pack 3');
  // nobody flagged (e.g. not enough data yet): no pointer, not a guess from the numbers
  pm.ingest(s, P + '/pack/3/health', health(60, 65.0, 6, 0.9, null), P, 0);
  const none = pm.buildView(s, TH, 0, 'b').health;
  assert.deepEqual(none.weakest, []);
  assert.equal(none.weakestText, 'Weakest: —');
  // a stale pack's SOC is unknown even if the hub still had one; its long-term estimates stay
  pm.ingest(s, P + '/pack/2/state', JSON.stringify({ pack: 2, voltage: null, temperature: null, flags: [], bad_frames: 0, stale: true }), P, 0);
  const r2s = pm.buildView(s, TH, 0, 'b').health.rows[1];
  assert.deepEqual([r2s.socText, r2s.capacityText], ['—', '91.2 Ah']);
  // a pack estimated before its first scan still gets a row
  pm.ingest(s, P + '/pack/9/soc', '50', P, 0);
  assert.deepEqual(pm.buildView(s, TH, 0, 'b').health.rows.map((r) => r.pack), [1, 2, 3, 9]);
});

test('hub offline or silent: every battery value unknown, no weakest pointer', () => {
  const s = pm.newState();
  batteryBank(s, 0);
  pm.ingest(s, P + '/output/charge_enable', JSON.stringify({ state: 'closed', reason: 'ok', since: 1796011200 }), P, 0);
  pm.ingest(s, P + '/status', 'offline', P, 1000);
  const v = pm.buildView(s, TH, 1000, 'b');
  assert.equal(v.soc.text, '—');
  assert.equal(v.soc.note, 'SOC unknown: hub offline');
  assert.equal(v.power.currentText, '—');
  assert.equal(v.power.powerText, '—');
  assert.equal(v.power.directionText, 'unknown: hub offline');
  assert.equal(v.energy.known, false);
  assert.equal(v.energy.unknownText, 'unknown: hub offline');
  assert.ok(v.health.rows.every((r) => r.socText === '—' && r.capacityText === '—' && r.sohText === '—' && !r.weakest));
  assert.equal(v.health.weakestText, 'Weakest: — (hub offline)');
  assert.equal(v.outputs.items[0].stateText, 'UNKNOWN');
  assert.equal(v.outputs.items[0].meaning, 'hub offline');
  assert.equal(v.outputs.items[0].reason, null, 'no stale reason shown');
  // back online: the values come back (the hub republishes; here the state was kept)
  pm.ingest(s, P + '/status', 'online', P, 2000);
  assert.equal(pm.buildView(s, TH, 2000, 'b').soc.text, '62.5 %');
  // nothing at all from the hub for stale_after_s (Node-RED lost the broker, hub hung): unknown
  const silent = pm.buildView(s, TH, 2000 + 61000, 'b');
  assert.equal(silent.soc.text, '—');
  assert.match(silent.soc.note, /nothing from the hub for 61 s/);
  assert.equal(silent.power.currentText, '—');
  assert.equal(pm.buildView(s, TH, 2000 + 59000, 'b').soc.text, '62.5 %', 'a steady SOC does not age on its own');
});

test('outputs: CLOSED/OPEN with reason and since, a tripped protection stands out and is notified once', () => {
  process.env.TZ = 'UTC';
  const s = pm.newState();
  pm.ingest(s, P + '/status', 'online', P, 0);
  const out = (name, o) => pm.ingest(s, P + '/output/' + name, JSON.stringify(o), P, 0);
  let r = out('fan', { state: 'closed', reason: 'temperature 41.0 °C', since: 1796011200 });
  assert.deepEqual(r.events, []);
  r = out('charge_enable', { state: 'closed', reason: 'ok', since: 1796011200 });
  assert.deepEqual(r.events, []);
  r = out('buzzer', { state: 'open', reason: null, since: null });
  assert.deepEqual(r.events, []);
  r = out('discharge_enable', { state: 'open', reason: 'pack 3 low (2.95 V)', since: 1796011260 });
  assert.equal(r.events.length, 1);
  assert.equal(r.events[0].tripped, true);
  assert.equal(pm.notification(r.events[0], 'bank1'), '⚠ bank1: Discharge OPEN (disconnected): pack 3 low (2.95 V)');
  r = out('discharge_enable', { state: 'open', reason: 'pack 3 low (2.95 V)', since: 1796011260 }); // republished
  assert.deepEqual(r.events, []);
  const v = pm.buildView(s, TH, 0, 'b').outputs;
  assert.deepEqual(v.items.map((o) => o.name), ['charge_enable', 'discharge_enable', 'fan', 'buzzer']);
  assert.equal(v.tripped, 1);
  const [ch, dis, fan, buz] = v.items;
  assert.deepEqual([ch.stateText, ch.meaning, ch.level, ch.tripped], ['CLOSED', 'connected', 'ok', false]);
  assert.deepEqual([dis.stateText, dis.meaning, dis.level, dis.tripped], ['OPEN', 'disconnected', 'alarm', true]);
  assert.equal(dis.reason, 'pack 3 low (2.95 V)');
  assert.equal(dis.sinceText, 'since 2026-11-30 04:01:00');
  assert.equal(dis.color, pm.LEVEL_COLORS.alarm);
  assert.deepEqual([fan.stateText, fan.meaning, fan.level], ['CLOSED', 'on', 'info']);
  assert.deepEqual([buz.stateText, buz.meaning, buz.level, buz.reason, buz.sinceText], ['OPEN', 'silent', 'ok', null, '']);
  // the buzzer sounding is a protection acting too
  r = out('buzzer', { state: 'closed', reason: 'alarm pack_low', since: 1796011260 });
  assert.equal(r.events[0].tripped, true);
  // unknown state (JSON null, empty payload) is UNKNOWN, not a return to normal
  r = out('discharge_enable', { state: null, reason: null, since: null });
  assert.deepEqual(r.events, []);
  assert.equal(pm.buildView(s, TH, 0, 'b').outputs.items[1].stateText, 'UNKNOWN');
  r = pm.ingest(s, P + '/output/charge_enable', '', P, 0);
  assert.equal(pm.buildView(s, TH, 0, 'b').outputs.items[0].level, 'unknown');
  // back to closed after a trip: notified as cleared
  out('charge_enable', { state: 'open', reason: 'pack 1 high', since: 0 });
  r = out('charge_enable', { state: 'closed', reason: 'reset', since: 1796011400 });
  assert.equal(r.events[0].tripped, false);
  assert.equal(pm.notification(r.events[0], 'b'), '✓ b: Charge CLOSED (connected): reset');
  assert.equal(pm.ingest(s, P + '/output/fan', 'closed', P, 0).ok, false, 'not JSON: refused');
  // an output this dashboard does not know is still shown, after the known ones
  out('aux_relay', { state: 'closed', reason: 'manual', since: null });
  const items = pm.buildView(s, TH, 0, 'b').outputs.items;
  assert.deepEqual([items[4].name, items[4].label, items[4].level], ['aux_relay', 'aux_relay', 'info']);
});

test('since: epoch seconds/ms, MicroPython 2000 epoch, uptime, strings', () => {
  process.env.TZ = 'UTC';
  assert.equal(pm.sinceText(1796011200), '2026-11-30 04:00:00');
  assert.equal(pm.sinceText(1796011200000), '2026-11-30 04:00:00');
  assert.equal(pm.sinceText(1796011200 - 946684800), '2026-11-30 04:00:00');
  assert.equal(pm.sinceText(42), 'uptime 42 s');
  assert.equal(pm.sinceText(125), 'uptime 2 min 05 s');
  assert.equal(pm.sinceText(7380), 'uptime 2 h 03 min');
  assert.equal(pm.sinceText('2026-11-30T05:40:00Z'), '2026-11-30T05:40:00Z');
  assert.equal(pm.sinceText(null), null);
  assert.equal(pm.sinceText(-5), null);
  assert.equal(pm.signed(0, 3, 'A'), '0.000 A');
  assert.equal(pm.signed(-0.0001, 3, 'A'), '0.000 A', 'no "-0.000"');
  assert.equal(pm.signed(null, 3, 'A'), '—');
});
