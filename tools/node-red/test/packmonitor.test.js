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
