// Tests of the JavaScript plugin SDK, without WebAssembly: `node --test` in this directory.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';

import * as og from './odoo-gateway.js';
import { Config, Delivery, Event, Many2one, Num, Record, X2many } from './odoo-gateway.js';

const RICH = readFileSync(new URL('../tests/fixtures/odoo/rich/sale.order.confirmed.json', import.meta.url), 'utf8');
const text = (delivery) => new TextDecoder().decode(delivery.body);

test('configuration readers and defaults', () => {
  const config = new Config([['min', ' 1000 '], ['states', 'sale, ,sent'], ['route.B', 'b'], ['route.A', 'a']]);
  assert.equal(config.number('min'), 1000);
  assert.equal(config.integer('min'), 1000);
  assert.equal(config.number('absent', 5), 5);
  assert.deepEqual(config.list('states'), ['sale', 'sent']);
  assert.deepEqual(config.list('absent', 'draft'), ['draft']);
  assert.deepEqual(config.withPrefix('route.'), [['A', 'a'], ['B', 'b']]);
  assert.deepEqual(config.entries().map(([k]) => k), ['min', 'route.A', 'route.B', 'states']);
  assert.equal(new Config({ on: 'true' }).boolean('on'), true);
});

test('configuration errors name the key as the Rust SDK does', () => {
  const config = new Config({ min: 'lots\n', blank: '  ' });
  assert.throws(() => config.number('min'), { message: 'config key `min`: invalid value "lots\\n": invalid float literal' });
  assert.throws(() => config.required('blank'), (e) => e instanceof og.InvalidConfig && e.message === 'config key `blank` is required but not set');
  assert.equal(config.number('absent'), undefined, 'an unset key is not an error');
});

test('the payload parses once or rejects', () => {
  const event = Event.new('sale.order', 'confirmed', RICH);
  assert.equal(event.eventType, 'sale.order.confirmed');
  assert.equal(event.payloadJson(), event.payloadJson());
  assert.throws(() => Event.new('sale.order', 'confirmed', '{nope').payloadJson(), (e) => e instanceof og.Reject && /^payload is not valid JSON/.test(e.message));
  assert.throws(() => Event.new('sale.order', 'confirmed', '[1]').record(), { message: 'payload is not a JSON object' });
});

test('Odoo conventions', () => {
  const order = Event.new('sale.order', 'confirmed', RICH).record();
  assert.equal(order.id(), 12);
  assert.deepEqual(order.many2one('partner_id'), new Many2one(9, 'Deco Addict'));
  assert.equal(order.get('commitment_date'), undefined); // `false` is "no value"
  assert.equal(order.bool('locked'), false);
  assert.equal(order.float('amount_total'), 1184.5);
  const lines = order.x2many('order_line');
  assert.deepEqual(lines.ids(), [31, 32, 33]);
  assert.deepEqual(lines.records[0].many2one('route_id'), new Many2one(5, 'Ship: FastFreight'));
});

test('many2one and x2many shapes', () => {
  assert.deepEqual(Many2one.of(7), new Many2one(7));
  assert.deepEqual(Many2one.of([7, false]), new Many2one(7));
  for (const odd of [false, null, [], ['7', 'x'], [7, 8], [7, 'x', 1], true, 7.5]) assert.equal(Many2one.of(odd), undefined, JSON.stringify(odd));
  assert.deepEqual(X2many.of([]).ids(), []);
  assert.equal(X2many.of([1, { id: 2 }]), undefined);
  assert.deepEqual(X2many.of([{ id: 1 }, { name: 'x' }]).ids(), [1]);
  assert.equal(X2many.of([{ id: 1 }, { name: 'x' }]).length, 2);
});

test('exact numbers: integers exact, floats as the Rust SDK writes them, read as numbers', () => {
  const value = og.parseJson('{"b": [2.0, 10, -1.5e-7, 1e2, 12345678901234567890, 1.50, 1E5, 0.000001], "a": "\\u00e9"}', { exactNumbers: true });
  assert.equal(og.toJson(value), '{"a":"é","b":[2.0,10,-1.5e-7,100.0,12345678901234567890,1.5,100000.0,1e-6]}');
  assert.ok(value.b[0] instanceof Num);
  assert.equal(value.b[0] * 2, 4);
  const record = new Record({ qty: value.b[0], big: value.b[4], hundred: value.b[3] });
  assert.equal(record.float('qty'), 2);
  assert.equal(record.int('qty'), undefined, '2.0 is not an integer, as in Rust');
  assert.equal(record.int('hundred'), undefined, '1e2 is not an integer, as in Rust');
  assert.equal(record.int('big'), undefined, 'past i64');
  assert.equal(new Record({ n: og.parseJson('[9007199254740993]', { exactNumbers: true })[0] }).int('n'), 9007199254740993n);
  // Without exactNumbers, JavaScript's own numbers.
  assert.equal(og.toJson(og.parseJson('[2.0]')), '[2]');
});

test('exact numbers where strings hold numbers, keys are array indices or repeat, and __proto__', () => {
  const cases = [
    ['{"s": "x\\": 1.0, [2.0]", "n": 2.0, "t": "\\\\"}', '{"n":2.0,"s":"x\\": 1.0, [2.0]","t":"\\\\"}'],
    ['{"b": 1.0, "1": 2.0, "0": 3}', '{"0":3,"1":2.0,"b":1.0}'],
    ['{"a": "x", "b": 1.0, "a": 2.0}', '{"a":2.0,"b":1.0}'],
    ['{"a": 1.0, "b": {"c": 2.50}, "a": [3e0, 4]}', '{"a":[3.0,4],"b":{"c":2.5}}'],
    ['[[1.0, {"k": [3e0]}], -0.0, 0]', '[[1.0,{"k":[3.0]}],-0.0,0]'],
    ['{"__proto__": 2.0, "x": 1}', '{"__proto__":2.0,"x":1}'],
    ['2.0', '2.0'],
    ['"2.0"', '"2.0"'],
  ];
  for (const [text, written] of cases) {
    const value = og.parseJson(text, { exactNumbers: true });
    assert.equal(og.toJson(value), written, text);
  }
  assert.equal(Object.getPrototypeOf(og.parseJson('{"__proto__": 2.0}', { exactNumbers: true })), Object.prototype);
  assert.throws(() => og.parseJson('{"a": 1.0,}', { exactNumbers: true }), SyntaxError);
});

test('floats are laid out as serde_json lays them out', () => {
  const cases = [[2, '2.0'], [1.5e-7, '1.5e-7'], [1e16, '1e16'], [1e-5, '0.00001'], [-0, '-0.0'], [1184.5, '1184.5'], [1e15, '1000000000000000.0'], [1.5e300, '1.5e300'], [1e21, '1e21']];
  for (const [f, text] of cases) assert.equal(og.floatText(f), text, String(f));
});

test('bodies are compact with keys sorted by code point', () => {
  assert.equal(og.toJson({ b: [1, null, true, undefined], a: 'Déco – "München"', é: { z: 1, Z: 2 }, skip: undefined }), '{"a":"Déco – \\"München\\"","b":[1,null,true,null],"é":{"Z":2,"z":1}}');
  assert.equal(og.toJson({ '\u{1F600}': 1, '\uFF5A': 2, z: 3 }), '{"z":3,"ｚ":2,"😀":1}');
  assert.equal(og.toJson([NaN, Infinity, () => 1]), '[null,null,null]', 'as JSON.stringify writes them');
  const order = JSON.parse(RICH);
  assert.deepEqual(JSON.parse(og.toJson(order)), order);
});

test('deliveries and the world exports', () => {
  const delivery = Delivery.json('erp', { id: 1 }).withHeader('x-shop', 'eu');
  assert.deepEqual([delivery.destination, delivery.contentType, text(delivery), delivery.headers], ['erp', 'application/json', '{"id":1}', [['x-shop', 'eu']]]);
  assert.equal(delivery.orderingKey, undefined, "the event's key by default");
  assert.equal(Delivery.json('', {}).withOrderingKey(42).orderingKey, '42');
  assert.equal(Delivery.json('', {}).withOrderingKey(42).withOrderingKey(null).orderingKey, undefined, "null: the event's key");
  const logged = [];
  const plugin = og.exportPlugin(
    (event, config) => {
      og.info(`handling ${event.id}`);
      if (config.get('mode') === 'reject') throw new og.Reject('no thanks');
      return [Delivery.json('', event.payloadJson()).withOrderingKey('k')];
    },
    (config) => config.required('mode'),
    { entries: () => [['mode', 'ok']], log: (level, message) => logged.push([level, message]) },
    { warmUp: [[Event.new('sale.order', 'confirmed', '{}'), new Config({ mode: 'reject' })]] },
  );
  const out = plugin.handle({ id: 'e1', source: 's', model: 'sale.order', action: 'confirmed', recordId: 12n, receivedAtMs: 0n, payload: '{"id":12}', headers: [] });
  assert.equal(new TextDecoder().decode(out[0].body), '{"id":12}');
  assert.equal(out[0].orderingKey, 'k', 'the key goes to the world');
  assert.deepEqual(logged, [['info', 'handling e1']], 'the warm-up logs nowhere');
  const failing = og.exportPlugin(() => {
    throw new og.Retry('later');
  }, undefined, { entries: () => [], log: () => {} });
  assert.throws(() => failing.handle({ payload: '{}' }), (e) => e.tag === 'retry' && e.val === 'later');
  assert.equal(failing.validateConfig(), undefined);
});

test("imports from another global (componentize-js's bindings): that global is warmed, no getter run", () => {
  const context = vm.createContext({});
  // A getter would add `touched` if the warm-up ran it.
  vm.runInContext("Object.defineProperty(globalThis, 'trap', { get() { globalThis.touched = true; return 1; } })", context);
  const names = () => Object.getOwnPropertyNames(vm.runInContext('globalThis', context)).sort();
  const before = names();
  const imports = {
    entries: vm.runInContext("(function () { return [['mode', 'ok']]; })", context),
    log: vm.runInContext('(function () {})', context),
  };
  const plugin = og.exportPlugin((event, config) => [Delivery.json('', { mode: config.get('mode') })], undefined, imports);
  assert.deepEqual(names(), before, 'the other global gained no property');
  const out = plugin.handle({ id: 'e1', source: 's', model: 'm', action: 'a', recordId: undefined, receivedAtMs: 0n, payload: '{}', headers: [] });
  assert.equal(new TextDecoder().decode(out[0].body), '{"mode":"ok"}');
});

