// A JavaScript plugin that misbehaves on command (the subscription's `mode`), for the tests
// of the plugins' virtual WASI in gateway/tests/plugin_host/wasi.rs:
// - `observe`: one JSON delivery with what the plugin saw: two readings of Date.now() and of
//   performance.now(), two crypto.getRandomValues() reads, and a console.log line;
// - `loop`: loops forever.

import { get } from 'odoo-gateway:plugin/config@0.1.0';

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

export function handle(event) {
  const mode = get('mode');
  if (mode === 'loop') {
    for (;;) {}
  }
  if (mode !== 'observe') return [];
  const date = [Date.now()];
  const performanceNow = [performance.now()];
  let spin = 0;
  for (let i = 0; i < 100000; i++) spin += i;
  date.push(Date.now());
  performanceNow.push(performance.now());
  const random = [hex(crypto.getRandomValues(new Uint8Array(16))), hex(crypto.getRandomValues(new Uint8Array(16)))];
  console.log(`observed ${event.id} after ${spin}`);
  const body = JSON.stringify({ date, performance: performanceNow, random });
  return [{ destination: '', contentType: 'application/json', body: new TextEncoder().encode(body), headers: [] }];
}

export function validateConfig() {}
