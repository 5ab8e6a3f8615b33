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

test('packmonitor-flow.json is up to date with lib/ and templates/ (run build-flow.js)', () => {
  assert.equal(fs.readFileSync(build.FLOW_FILE, 'utf8'), build.render());
});

test('every function node carries the current lib', () => {
  const lib = build.libSource();
  const fns = byType('function');
  assert.equal(fns.length, 2);
  for (const fn of fns) assert.ok(fn.func.startsWith(lib), fn.name + ' does not start with the inlined lib');
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
  assert.deepEqual(charts.map((c) => c.chartType).sort(), ['bar', 'line', 'line']);
  assert.equal(byType('ui-template').length, 2);
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
  const fn = flow.find((n) => n.type === 'function' && n.outputs === 5);
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
  for (const [name, file] of [['bank summary', 'bank.vue'], ['pack table', 'packs.vue']]) {
    const t = tpls.find((n) => n.name === name);
    assert.equal(t.format, fs.readFileSync(path.join(__dirname, '..', 'templates', file), 'utf8'));
  }
});
