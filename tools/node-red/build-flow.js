#!/usr/bin/env node
// Builds packmonitor-flow.json from lib/packmonitor.js and templates/*.vue, so the function nodes
// run exactly the unit-tested library code and the dashboard templates are editable as files.
//
//   node tools/node-red/build-flow.js           write packmonitor-flow.json
//   node tools/node-red/build-flow.js --check   exit 1 when packmonitor-flow.json is out of date
//
// test/flow.test.js runs the --check comparison, so a lib change without a rebuild fails the tests.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const HERE = __dirname;
const FLOW_FILE = path.join(HERE, 'packmonitor-flow.json');
const LIB_FILE = path.join(HERE, 'lib', 'packmonitor.js');
const EXPORTS_MARKER = '// ---- EXPORTS';

// Stable 16-hex-digit node ids (the shape Node-RED itself uses), derived from a readable name.
function id(name) {
  return crypto.createHash('sha256').update('packmonitor:' + name).digest('hex').slice(0, 16);
}

// The library source without its module.exports block: plain functions a function node can run.
function libSource() {
  const src = fs.readFileSync(LIB_FILE, 'utf8');
  const cut = src.indexOf(EXPORTS_MARKER);
  if (cut < 0) throw new Error('lib/packmonitor.js lost its "' + EXPORTS_MARKER + '" marker');
  return (
    '// ---- inlined from tools/node-red/lib/packmonitor.js by build-flow.js: edit it there ----\n' +
    src.slice(0, cut).trimEnd() +
    '\n// ---- end of inlined lib ----\n\n'
  );
}

function template(name) {
  return fs.readFileSync(path.join(HERE, 'templates', name), 'utf8');
}

const TAB = id('tab');
const BROKER = id('broker');
const BASE = id('ui-base');
const THEME = id('ui-theme');
const PAGE = id('ui-page');
const G_BANK = id('group-bank');
const G_PACKS = id('group-packs');
const G_BAR = id('group-bar');
const G_HIST = id('group-history');
const G_TEMP = id('group-temperature');
const G_SOC = id('group-soc');
const G_POWER = id('group-power');
const G_ENERGY = id('group-energy');
const G_HEALTH = id('group-health');
const G_OUTPUTS = id('group-outputs');
const N = {
  start: id('inject-start'),
  subscribe: id('fn-subscribe'),
  mqttIn: id('mqtt-in'),
  tick: id('inject-tick'),
  logic: id('fn-logic'),
  bankTpl: id('tpl-bank'),
  packsTpl: id('tpl-packs'),
  bar: id('chart-bar'),
  vLine: id('chart-voltage'),
  tLine: id('chart-temperature'),
  notify: id('notification'),
  socTpl: id('tpl-soc'),
  powerTpl: id('tpl-power'),
  energyTpl: id('tpl-energy'),
  healthTpl: id('tpl-health'),
  outputsTpl: id('tpl-outputs'),
  iLine: id('chart-current'),
  pLine: id('chart-power'),
  resetGate: id('fn-reset-gate'),
  resetOut: id('mqtt-out-reset'),
  comment: id('comment'),
};

const SUBSCRIBE_CODE = `
// Subscribes the "mqtt in" node to <prefix>/# (every pack, whatever their number).
const prefix = env.get('PACKMON_TOPIC_PREFIX');
if (!prefix) {
  node.error('set the PACKMON_TOPIC_PREFIX environment variable of this flow tab (e.g. packmonitor/bank1)');
  return null;
}
node.status({ text: subscribeTopic(prefix) });
return { action: 'subscribe', topic: subscribeTopic(prefix), qos: 1 };
`;

const LOGIC_CODE = `
// Outputs: 1 view model -> every ui-template card, 2 bar chart, 3 voltage history,
// 4 temperature history, 5 notifications, 6 current history, 7 power history.
const prefix = env.get('PACKMON_TOPIC_PREFIX');
if (!prefix) return null; // the subscribe node reports it
const bankName = prefix.split('/').filter(Boolean).pop() || prefix;
const th = thresholds(env.get('PACKMON_THRESHOLDS'));
let state = context.get('state');
if (!state) {
  state = newState();
  context.set('state', state);
}
const out = [null, null, [], [], [], [], []];
if (msg.topic !== '__tick') {
  const res = ingest(state, msg.topic, msg.payload, prefix, Date.now());
  if (!res.ok) return null; // a topic this dashboard does not show (e.g. <prefix>/ring)
  for (const ev of res.events) {
    if (ev.type === 'voltage') out[2].push({ topic: ev.series, payload: ev.value });
    if (ev.type === 'temperature') out[3].push({ topic: ev.series, payload: ev.value });
    if (ev.type === 'current') out[5].push({ topic: 'current', payload: ev.value });
    if (ev.type === 'power') out[6].push({ topic: 'power', payload: ev.value });
    const text = notification(ev, bankName);
    if (text) {
      const bad = (ev.type === 'alarm' && ev.active) || (ev.type === 'status' && !ev.online) || (ev.type === 'output' && ev.tripped);
      out[4].push({ payload: text, ui_update: { color: bad ? '#f85149' : '#2ea043' } });
    }
  }
}
// A scan publishes a few messages per pack: render the view once for all of them.
if (!context.get('renderPending')) {
  context.set('renderPending', true);
  setTimeout(function () {
    context.set('renderPending', false);
    const view = buildView(context.get('state'), th, Date.now(), bankName);
    view.resetEnabled = env.get('PACKMON_RESET_BUTTON') === true || env.get('PACKMON_RESET_BUTTON') === 'true';
    node.status({
      fill: view.status === 'online' ? 'green' : 'red',
      shape: 'dot',
      text: view.status + ', ' + view.packCount + ' packs, ' + view.staleCount + ' stale, ' + view.alarms.length + ' alarms',
    });
    node.send([
      { payload: view },
      { payload: barChartData(view), ui_update: { chartOptions: { yAxis: voltageAxis(view) } } },
      null,
      null,
      null,
      null,
      null,
    ]);
  }, 300);
}
return out;
`;

const RESET_CODE = `
// The outputs card's Reset button (shown only when PACKMON_RESET_BUTTON is true) -> <prefix>/cmd/reset.
// Checked again here, so nothing is ever published while the option is off; the hub acts on it only
// when its own config allows remote reset.
if (!(env.get('PACKMON_RESET_BUTTON') === true || env.get('PACKMON_RESET_BUTTON') === 'true')) {
  node.warn('reset ignored: PACKMON_RESET_BUTTON is off');
  return null;
}
const prefix = env.get('PACKMON_TOPIC_PREFIX');
const name = typeof msg.payload === 'string' ? msg.payload : '';
if (!prefix || !/^[a-z0-9_]+$/.test(name)) {
  node.warn('reset ignored: not an output name: ' + JSON.stringify(msg.payload));
  return null;
}
node.status({ text: 'reset ' + name });
return { topic: prefix.replace(/\\/+$/, '') + '/cmd/reset', payload: name, qos: 1, retain: false };
`;

const CHART_COMMON = {
  xAxisLabel: '',
  xAxisFormat: '',
  xAxisFormatType: 'auto',
  xmin: '',
  xmax: '',
  yAxisLabel: '',
  bins: 10,
  stackSeries: false,
  pointShape: 'circle',
  pointRadius: 2,
  removeOlder: 1,
  removeOlderUnit: '3600',
  removeOlderPoints: '',
  colors: ['#2f81f7', '#f85149', '#d29922', '#2ea043', '#a371f7', '#db61a2', '#39c5cf', '#e3b341', '#8b949e'],
  textColor: ['#c9d1d9'],
  textColorDefault: false,
  gridColor: ['#30363d'],
  gridColorDefault: false,
  className: '',
  interpolation: 'linear',
};

// what the two history charts (pack voltages, temperatures) share: one line per topic, over time
const LINE_CHART = {
  order: 1,
  chartType: 'line',
  category: 'topic',
  categoryType: 'msg',
  xAxisType: 'time',
  xAxisProperty: '',
  xAxisPropertyType: 'timestamp',
  yAxisProperty: 'payload',
  yAxisPropertyType: 'msg',
  ymin: '',
  ymax: '',
  action: 'append',
  showLegend: true,
  width: 0,
  height: 6,
};

// A ui-template card fed with the view model (output 1 of the logic node).
function cardTemplate(nodeId, group, name, file, order, y, wiresOut) {
  return {
    id: nodeId,
    type: 'ui-template',
    z: TAB,
    group: group,
    page: '',
    ui: '',
    name: name,
    order: order,
    width: 0,
    height: 0,
    head: '',
    format: template(file),
    storeOutMessages: true,
    passthru: false,
    resendOnRefresh: true,
    templateScope: 'local',
    className: '',
    x: 990,
    y: y,
    wires: [wiresOut],
  };
}

function buildFlow() {
  const lib = libSource();
  const g = (name, page, width, order) => ({
    id: name,
    type: 'ui-group',
    page,
    width,
    height: 1,
    order,
    showTitle: true,
    className: '',
    visible: true,
    disabled: false,
    groupType: 'default',
  });
  return [
    {
      id: TAB,
      type: 'tab',
      label: 'Pack Monitor',
      disabled: false,
      info:
        'Pack Monitor dashboard (docs/node-red.md). Generated by tools/node-red/build-flow.js.\n\n' +
        'Settings are this tab\'s environment variables (double-click the tab, "Environment Variables"):\n' +
        '- PACKMON_TOPIC_PREFIX: the hub\'s topic prefix, packmonitor/<bank> (the ONE place to set the bank)\n' +
        '- PACKMON_THRESHOLDS: colour thresholds in volts / degC, stale_after_s\n' +
        '- PACKMON_RESET_BUTTON: false (default); true shows a Reset button on a tripped output, which publishes ' +
        'its name to <prefix>/cmd/reset (the hub acts on it only when its config allows remote reset)\n' +
        '- PACKMON_MQTT_HOST / PACKMON_MQTT_PORT: the broker, from the MQTT_HOST / MQTT_PORT environment ' +
        'variables of the Node-RED process when set, else localhost:1883\n\n' +
        'Broker user name, password and TLS are set in the "Pack Monitor broker" node (stored in Node-RED\'s ' +
        'encrypted credentials file, never in this flow).',
      env: [
        { name: 'PACKMON_TOPIC_PREFIX', value: 'packmonitor/bank1', type: 'str' },
        {
          name: 'PACKMON_THRESHOLDS',
          value: JSON.stringify({
            low_alarm: 3.0,
            low_warn: 3.1,
            high_warn: 4.1,
            high_alarm: 4.15,
            temp_low: 0,
            temp_high: 50,
            stale_after_s: 60,
          }),
          type: 'json',
        },
        { name: 'PACKMON_RESET_BUTTON', value: 'false', type: 'bool' },
        { name: 'PACKMON_MQTT_HOST', value: "$env('MQTT_HOST') ? $env('MQTT_HOST') : 'localhost'", type: 'jsonata' },
        { name: 'PACKMON_MQTT_PORT', value: "$env('MQTT_PORT') ? $number($env('MQTT_PORT')) : 1883", type: 'jsonata' },
      ],
    },
    {
      id: N.comment,
      type: 'comment',
      z: TAB,
      name: 'Pack Monitor: set the bank in this tab\'s env PACKMON_TOPIC_PREFIX; dashboard at /dashboard',
      info: 'See the tab\'s description and docs/node-red.md.',
      x: 400,
      y: 40,
      wires: [],
    },
    {
      id: BROKER,
      type: 'mqtt-broker',
      z: TAB, // scoped to the tab so it sees the tab's PACKMON_MQTT_* variables
      name: 'Pack Monitor broker',
      broker: '${PACKMON_MQTT_HOST}',
      port: '${PACKMON_MQTT_PORT}',
      clientid: '',
      autoConnect: true,
      usetls: false,
      protocolVersion: '4',
      keepalive: '60',
      cleansession: true,
      autoUnsubscribe: true,
      birthTopic: '',
      birthQos: '0',
      birthRetain: 'false',
      birthPayload: '',
      birthMsg: {},
      closeTopic: '',
      closeQos: '0',
      closeRetain: 'false',
      closePayload: '',
      closeMsg: {},
      willTopic: '',
      willQos: '0',
      willRetain: 'false',
      willPayload: '',
      willMsg: {},
      userProps: '',
      sessionExpiry: '',
    },
    {
      id: N.start,
      type: 'inject',
      z: TAB,
      name: 'on start',
      props: [],
      repeat: '',
      crontab: '',
      once: true,
      onceDelay: '0.5',
      topic: '',
      x: 120,
      y: 100,
      wires: [[N.subscribe]],
    },
    {
      id: N.subscribe,
      type: 'function',
      z: TAB,
      name: 'subscribe <prefix>/#',
      func: lib + SUBSCRIBE_CODE.trimStart(),
      outputs: 1,
      timeout: 0,
      noerr: 0,
      initialize: '',
      finalize: '',
      libs: [],
      x: 300,
      y: 100,
      wires: [[N.mqttIn]],
    },
    {
      id: N.mqttIn,
      type: 'mqtt in',
      z: TAB,
      name: 'hub topics',
      topic: '',
      qos: '1',
      datatype: 'utf8',
      broker: BROKER,
      nl: false,
      rap: true,
      rh: 0,
      inputs: 1,
      x: 500,
      y: 100,
      wires: [[N.logic]],
    },
    {
      id: N.tick,
      type: 'inject',
      z: TAB,
      name: 'every 10 s (staleness)',
      props: [{ p: 'topic', vt: 'str' }],
      repeat: '10',
      crontab: '',
      once: false,
      onceDelay: '',
      topic: '__tick',
      x: 500,
      y: 160,
      wires: [[N.logic]],
    },
    {
      id: N.logic,
      type: 'function',
      z: TAB,
      name: 'Pack Monitor logic',
      func: lib + LOGIC_CODE.trimStart(),
      outputs: 7,
      timeout: 0,
      noerr: 0,
      initialize: "context.set('state', undefined);\ncontext.set('renderPending', false);\n",
      finalize: '',
      libs: [],
      outputLabels: ['view', 'bar chart', 'voltage history', 'temperature history', 'notifications', 'current history', 'power history'],
      x: 730,
      y: 120,
      wires: [
        [N.bankTpl, N.packsTpl, N.socTpl, N.powerTpl, N.energyTpl, N.healthTpl, N.outputsTpl],
        [N.bar],
        [N.vLine],
        [N.tLine],
        [N.notify],
        [N.iLine],
        [N.pLine],
      ],
    },
    cardTemplate(N.socTpl, G_SOC, 'SOC gauge', 'soc.vue', 1, 300, []),
    cardTemplate(N.powerTpl, G_POWER, 'present current and power', 'power.vue', 1, 340, []),
    cardTemplate(N.energyTpl, G_ENERGY, 'energy', 'energy.vue', 1, 380, []),
    cardTemplate(N.healthTpl, G_HEALTH, 'pack health', 'health.vue', 1, 420, []),
    cardTemplate(N.outputsTpl, G_OUTPUTS, 'outputs', 'outputs.vue', 1, 460, [N.resetGate]),
    Object.assign(
      {
        id: N.iLine,
        type: 'ui-chart',
        z: TAB,
        group: G_POWER,
        name: 'current history',
        label: 'Current, last hour (A, + = charging)',
        x: 990,
        y: 500,
        wires: [[]],
      },
      LINE_CHART,
      CHART_COMMON,
      { order: 2, height: 4, showLegend: false, colors: ['#2ea043'] }
    ),
    Object.assign(
      {
        id: N.pLine,
        type: 'ui-chart',
        z: TAB,
        group: G_POWER,
        name: 'power history',
        label: 'Power, last hour (W)',
        x: 990,
        y: 540,
        wires: [[]],
      },
      LINE_CHART,
      CHART_COMMON,
      { order: 3, height: 4, showLegend: false, colors: ['#2f81f7'] }
    ),
    {
      id: N.resetGate,
      type: 'function',
      z: TAB,
      name: 'reset gate (PACKMON_RESET_BUTTON)',
      func: RESET_CODE.trimStart(),
      outputs: 1,
      timeout: 0,
      noerr: 0,
      initialize: '',
      finalize: '',
      libs: [],
      x: 1230,
      y: 460,
      wires: [[N.resetOut]],
    },
    {
      id: N.resetOut,
      type: 'mqtt out',
      z: TAB,
      name: '<prefix>/cmd/reset',
      topic: '',
      qos: '1',
      retain: 'false',
      respTopic: '',
      contentType: '',
      userProps: '',
      correl: '',
      expiry: '',
      broker: BROKER,
      x: 1470,
      y: 460,
      wires: [],
    },
    {
      id: N.bankTpl,
      type: 'ui-template',
      z: TAB,
      group: G_BANK,
      page: '',
      ui: '',
      name: 'bank summary',
      order: 1,
      width: 0,
      height: 0,
      head: '',
      format: template('bank.vue'),
      storeOutMessages: true,
      passthru: false,
      resendOnRefresh: true,
      templateScope: 'local',
      className: '',
      x: 990,
      y: 40,
      wires: [[]],
    },
    {
      id: N.packsTpl,
      type: 'ui-template',
      z: TAB,
      group: G_PACKS,
      page: '',
      ui: '',
      name: 'pack table',
      order: 1,
      width: 0,
      height: 0,
      head: '',
      format: template('packs.vue'),
      storeOutMessages: true,
      passthru: false,
      resendOnRefresh: true,
      templateScope: 'local',
      className: '',
      x: 980,
      y: 80,
      wires: [[]],
    },
    Object.assign(
      {
        id: N.bar,
        type: 'ui-chart',
        z: TAB,
        group: G_BAR,
        name: 'pack voltages (bar)',
        label: 'Pack voltages (V)',
        order: 1,
        chartType: 'bar',
        category: 'volts',
        categoryType: 'str',
        xAxisType: 'category',
        xAxisProperty: 'pack',
        xAxisPropertyType: 'property',
        yAxisProperty: 'volts',
        yAxisPropertyType: 'property',
        ymin: '',
        ymax: '',
        action: 'replace',
        showLegend: false,
        width: 0,
        height: 6,
        x: 1000,
        y: 120,
        wires: [[]],
      },
      CHART_COMMON,
      { colors: ['#2f81f7'] }
    ),
    Object.assign(
      {
        id: N.vLine,
        type: 'ui-chart',
        z: TAB,
        group: G_HIST,
        name: 'voltage history',
        label: 'Pack voltages, last hour (V)',
        x: 990,
        y: 160,
        wires: [[]],
      },
      LINE_CHART,
      CHART_COMMON
    ),
    Object.assign(
      {
        id: N.tLine,
        type: 'ui-chart',
        z: TAB,
        group: G_TEMP,
        name: 'temperature history',
        label: 'Temperatures, last hour (°C)',
        x: 1000,
        y: 200,
        wires: [[]],
      },
      LINE_CHART,
      CHART_COMMON
    ),
    {
      id: N.notify,
      type: 'ui-notification',
      z: TAB,
      ui: BASE,
      position: 'top right',
      colorDefault: false,
      color: '#f85149',
      displayTime: '15',
      showCountdown: true,
      outputs: 1,
      allowDismiss: true,
      dismissText: 'Close',
      allowConfirm: false,
      confirmText: 'Confirm',
      raw: false,
      className: '',
      name: 'alarms',
      x: 980,
      y: 240,
      wires: [[]],
    },
    {
      id: BASE,
      type: 'ui-base',
      name: 'Pack Monitor',
      path: '/dashboard',
      appIcon: '',
      includeClientData: true,
      acceptsClientConfig: ['ui-notification', 'ui-control'],
      showPathInSidebar: false,
      headerContent: 'page',
      navigationStyle: 'none',
      titleBarStyle: 'default',
      showReconnectNotification: true,
      notificationDisplayTime: 1,
      showDisconnectNotification: true,
      allowInstall: false,
    },
    {
      id: THEME,
      type: 'ui-theme',
      name: 'Pack Monitor dark',
      colors: { surface: '#161b22', primary: '#2f81f7', bgPage: '#0d1117', groupBg: '#161b22', groupOutline: '#30363d' },
      sizes: { density: 'default', pagePadding: '12px', groupGap: '12px', groupBorderRadius: '6px', widgetGap: '12px' },
    },
    {
      id: PAGE,
      type: 'ui-page',
      name: 'Pack Monitor',
      ui: BASE,
      path: '/packs',
      icon: 'battery',
      layout: 'grid',
      theme: THEME,
      breakpoints: [
        { name: 'Default', px: 0, cols: 3 },
        { name: 'Tablet', px: 576, cols: 6 },
        { name: 'Small Desktop', px: 768, cols: 9 },
        { name: 'Desktop', px: 1024, cols: 12 },
      ],
      order: 1,
      className: '',
      visible: 'true',
      disabled: 'false',
    },
    Object.assign(g(G_BANK, PAGE, 4, 1), { name: 'Bank' }),
    Object.assign(g(G_PACKS, PAGE, 8, 2), { name: 'Packs' }),
    Object.assign(g(G_BAR, PAGE, 6, 8), { name: 'Pack voltages' }),
    Object.assign(g(G_HIST, PAGE, 6, 9), { name: 'Voltage history' }),
    Object.assign(g(G_OUTPUTS, PAGE, 12, 3), { name: 'Outputs' }),
    Object.assign(g(G_SOC, PAGE, 4, 4), { name: 'State of charge' }),
    Object.assign(g(G_POWER, PAGE, 8, 5), { name: 'Current & power' }),
    Object.assign(g(G_ENERGY, PAGE, 4, 6), { name: 'Energy' }),
    Object.assign(g(G_HEALTH, PAGE, 8, 7), { name: 'Pack health' }),
    Object.assign(g(G_TEMP, PAGE, 12, 10), { name: 'Temperatures' }),
  ];
}

function render() {
  return JSON.stringify(buildFlow(), null, 2) + '\n';
}

module.exports = { buildFlow, render, libSource, FLOW_FILE };

if (require.main === module) {
  const text = render();
  if (process.argv.includes('--check')) {
    const current = fs.existsSync(FLOW_FILE) ? fs.readFileSync(FLOW_FILE, 'utf8') : '';
    if (current !== text) {
      console.error('packmonitor-flow.json is out of date: run node tools/node-red/build-flow.js');
      process.exit(1);
    }
    console.log('packmonitor-flow.json is up to date');
  } else {
    fs.writeFileSync(FLOW_FILE, text);
    console.log('wrote ' + path.relative(process.cwd(), FLOW_FILE) + ' (' + buildFlow().length + ' nodes)');
  }
}
