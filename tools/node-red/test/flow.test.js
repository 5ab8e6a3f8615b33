// The flow file is generated from lib/ and templates/: check it is up to date and well-formed, and
// that its function nodes' code runs (in a vm, like Node-RED's function node) with the lib's results.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const build = require('../build-flow.js');
const pm = require('../lib/packmonitor.js');

const flow = JSON.parse(fs.readFileSync(build.FLOW_FILE, 'utf8'));
const byType = (t) => flow.filter((n) => n.type === t);
const tabEnv = (name) => byType('tab')[0].env.find((e) => e.name === name);

test('packmonitor-flow.json is up to date with lib/ and templates/ (run build-flow.js)', () => {
  assert.equal(fs.readFileSync(build.FLOW_FILE, 'utf8'), build.render());
});

test('every function node that uses the lib carries the current lib', () => {
  const lib = build.libSource();
  const fns = byType('function');
  assert.equal(fns.length, 3);
  const withLib = fns.filter((fn) => fn.outputs === 7 || fn.name.startsWith('subscribe'));
  assert.equal(withLib.length, 2);
  for (const fn of withLib) assert.ok(fn.func.startsWith(lib), fn.name + ' does not start with the inlined lib');
});

test('flow structure: one broker without credentials, wiring, dashboard nodes', () => {
  const ids = new Set(flow.map((n) => n.id));
  assert.equal(ids.size, flow.length, 'duplicate ids');
  const brokers = byType('mqtt-broker');
  assert.equal(brokers.length, 1);
  assert.equal(brokers[0].broker, '${PACKMON_MQTT_HOST}');
  assert.equal(brokers[0].port, '${PACKMON_MQTT_PORT}');
  const text = JSON.stringify(flow);
  assert.ok(!/"(user|password|credentials)"/.test(text), 'credentials must not be in the flow file');
  for (const n of flow) {
    for (const out of n.wires || []) for (const target of out) assert.ok(ids.has(target), n.id + ' wired to missing ' + target);
    const refs = n.type === 'mqtt-broker' ? ['z'] : ['group', 'page', 'ui', 'theme', 'broker', 'z'];
    for (const ref of refs) {
      if (n[ref]) assert.ok(ids.has(n[ref]), `${n.type} ${n.id}: ${ref} -> missing ${n[ref]}`);
    }
  }
  for (const t of ['ui-base', 'ui-theme', 'ui-page', 'ui-notification']) assert.equal(byType(t).length, 1, t);
  assert.ok(byType('ui-group').length >= 4);
  const charts = byType('ui-chart');
  assert.deepEqual(charts.map((c) => c.chartType).sort(), ['bar', 'line', 'line', 'line', 'line']);
  assert.equal(byType('ui-template').length, 7);
  // every card gets the view: output 1 of the logic node feeds every template
  const logic = flow.find((n) => n.type === 'function' && n.outputs === 7);
  assert.deepEqual(logic.wires[0].slice().sort(), byType('ui-template').map((t) => t.id).sort());
  // one mqtt out, the reset path, fed only through the gate function
  const outs = byType('mqtt out');
  assert.equal(outs.length, 1);
  const feeders = flow.filter((n) => (n.wires || []).some((w) => w.includes(outs[0].id)));
  assert.deepEqual(feeders.map((n) => n.name), ['reset gate (PACKMON_RESET_BUTTON)']);
  assert.equal(tabEnv('PACKMON_RESET_BUTTON').value, 'false', 'the reset button is off by default');
  // distinct group order, so the page layout is stable
  const orders = byType('ui-group').map((x) => x.order);
  assert.equal(new Set(orders).size, orders.length);
  assert.equal(byType('ui-base')[0].path, '/dashboard');
  const tab = byType('tab')[0];
  const prefix = tab.env.filter((e) => e.name === 'PACKMON_TOPIC_PREFIX');
  assert.equal(prefix.length, 1);
  assert.equal(prefix[0].value, 'packmonitor/bank1');
  // the bank is named in exactly one place: the tab's PACKMON_TOPIC_PREFIX
  const outsideCode = JSON.stringify(flow.map((n) => (n.type === 'function' ? Object.assign({}, n, { func: '' }) : n)));
  assert.equal(outsideCode.split('bank1').length - 1, 1);
  for (const fn of byType('function')) assert.ok(!fn.func.includes("'packmonitor/bank1'"), fn.name);
});

// Objects made inside the vm have another realm's prototypes: compare them as plain data.
const plain = (v) => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

// Run a function node's code the way Node-RED does: the body of a function(msg, node, context, env...).
function runFunctionNode(fnNode, msgs, envVars) {
  const ctx = {};
  const sent = [];
  const timers = [];
  const node = { send: (m) => sent.push(m), status: () => {}, warn: () => {}, error: (e) => { throw new Error(e); } };
  const context = { get: (k) => ctx[k], set: (k, v) => { ctx[k] = v; } };
  const env = { get: (k) => envVars[k] };
  const sandbox = { node, context, env, setTimeout: (f) => timers.push(f), Buffer, JSON, Math, Number, Object, Array, String, Date };
  vm.createContext(sandbox);
  const wrapped = vm.runInContext('(function (msg) {\n' + fnNode.func + '\n})', sandbox);
  new vm.Script(fnNode.initialize || '').runInContext(sandbox);
  const results = msgs.map((m) => plain(wrapped(m)));
  timers.forEach((f) => f());
  return { results, sent: plain(sent) };
}

test('the logic function node turns MQTT messages into the view the templates render', () => {
  const fn = flow.find((n) => n.type === 'function' && n.outputs === 7);
  const tab = byType('tab')[0];
  const envVars = { PACKMON_TOPIC_PREFIX: 'packmonitor/bank1', PACKMON_THRESHOLDS: JSON.parse(tab.env.find((e) => e.name === 'PACKMON_THRESHOLDS').value) };
  const P = 'packmonitor/bank1';
  const { results, sent } = runFunctionNode(fn, [
    { topic: P + '/status', payload: 'online' },
    { topic: P + '/pack/1/voltage', payload: '3.312' },
    { topic: P + '/pack/1/state', payload: '{"pack":1,"voltage":3.312,"temperature":25.1,"flags":[],"bad_frames":0,"stale":false,"age":1.2}' },
    { topic: P + '/pack/2/state', payload: '{"pack":2,"voltage":null,"temperature":null,"flags":[],"bad_frames":0,"stale":true,"age":40}' },
    { topic: P + '/alarm/comms', payload: '{"active":true,"value":1,"threshold":0,"pack":2}' },
    { topic: P + '/ring', payload: '{}' },
  ], envVars);
  assert.deepEqual(results[1][2], [{ topic: 'P1', payload: 3.312 }]);
  assert.equal(results[4][4].length, 1);
  assert.match(results[4][4][0].payload, /ALARM bank1: Packs not answering/);
  assert.equal(results[5], null);
  assert.equal(sent.length, 1, 'one render for the whole burst');
  const view = sent[0][0].payload;
  assert.equal(view.packs[0].voltageText, '3.312 V');
  assert.equal(view.packs[1].voltageText, 'STALE');
  assert.equal(view.alarms.length, 1);
  assert.deepEqual(sent[0][1].payload, [{ pack: 'P1', volts: 3.312 }]);
  assert.deepEqual(view.thresholds, pm.thresholds(envVars.PACKMON_THRESHOLDS));
  assert.equal(view.resetEnabled, false);
  assert.equal(view.soc.configured, false, 'no battery topics yet: no SOC card values');
  assert.equal(view.power.configured, false);
});

test('the logic node: battery topics feed the cards, the current/power charts and trip notifications', () => {
  const fn = flow.find((n) => n.type === 'function' && n.outputs === 7);
  const P = 'packmonitor/bank1';
  const { results, sent } = runFunctionNode(fn, [
    { topic: P + '/status', payload: 'online' },
    { topic: P + '/bank/current', payload: '-12.345' },
    { topic: P + '/bank/power', payload: '-640' },
    { topic: P + '/bank/soc', payload: '' },
    { topic: P + '/pack/1/health', payload: '{"capacity_ah":98.5,"soh":97.1,"resistance_mohm":1.9,"confidence":0.8,"weakest":true}' },
    { topic: P + '/output/discharge_enable', payload: '{"state":"open","reason":"pack 1 low","since":1796011200}' },
    { topic: P + '/cmd/reset', payload: 'discharge_enable' },
  ], { PACKMON_TOPIC_PREFIX: P, PACKMON_RESET_BUTTON: true });
  assert.deepEqual(results[1][5], [{ topic: 'current', payload: -12.345 }]);
  assert.deepEqual(results[2][6], [{ topic: 'power', payload: -640 }]);
  assert.deepEqual(results[3][5], []);
  assert.equal(results[5][4].length, 1);
  assert.match(results[5][4][0].payload, /^⚠ bank1: Discharge OPEN \(disconnected\): pack 1 low$/);
  assert.equal(results[6], null, 'our own command topic is not a value');
  const view = sent[0][0].payload;
  assert.equal(view.power.currentText, '-12.345 A');
  assert.equal(view.power.directionText, 'discharging');
  assert.equal(view.soc.text, '—');
  assert.equal(view.health.weakestText, 'Weakest: pack 1');
  assert.equal(view.outputs.items[0].tripped, true);
  assert.equal(view.resetEnabled, true);
});

test('the reset gate publishes <prefix>/cmd/reset only when PACKMON_RESET_BUTTON is on', () => {
  const fn = flow.find((n) => n.type === 'function' && n.name.startsWith('reset gate'));
  const P = 'packmonitor/bank1';
  for (const off of [undefined, false, 'false']) {
    const { results } = runFunctionNode(fn, [{ payload: 'charge_enable' }], { PACKMON_TOPIC_PREFIX: P, PACKMON_RESET_BUTTON: off });
    assert.equal(results[0], null, String(off));
  }
  const { results } = runFunctionNode(fn, [{ payload: 'charge_enable' }, { payload: 'x/../#' }, { payload: { a: 1 } }], {
    PACKMON_TOPIC_PREFIX: P + '/',
    PACKMON_RESET_BUTTON: true,
  });
  assert.deepEqual(results[0], { topic: P + '/cmd/reset', payload: 'charge_enable', qos: 1, retain: false });
  assert.equal(results[1], null);
  assert.equal(results[2], null);
});

test('without PACKMON_TOPIC_PREFIX the flow says so instead of guessing a bank', () => {
  const fn = flow.find((n) => n.type === 'function' && n.outputs === 1);
  assert.throws(() => runFunctionNode(fn, [{}], {}), /PACKMON_TOPIC_PREFIX/);
});

test('the subscribe function node subscribes to <prefix>/#', () => {
  const fn = flow.find((n) => n.type === 'function' && n.outputs === 1);
  const { results } = runFunctionNode(fn, [{}], { PACKMON_TOPIC_PREFIX: 'packmonitor/garage' });
  assert.deepEqual(results[0], { action: 'subscribe', topic: 'packmonitor/garage/#', qos: 1 });
});

test('templates are in the flow', () => {
  const tpls = byType('ui-template');
  for (const [name, file] of [
    ['bank summary', 'bank.vue'],
    ['pack table', 'packs.vue'],
    ['SOC gauge', 'soc.vue'],
    ['present current and power', 'power.vue'],
    ['energy', 'energy.vue'],
    ['pack health', 'health.vue'],
    ['outputs', 'outputs.vue'],
  ]) {
    const t = tpls.find((n) => n.name === name);
    assert.equal(t.format, fs.readFileSync(path.join(__dirname, '..', 'templates', file), 'utf8'));
  }
});
