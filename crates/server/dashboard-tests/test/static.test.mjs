/**
 * Source checks of the dashboard folder: nothing parses HTML from strings,
 * nothing is loaded from another origin, every JS file starts with a module
 * doc comment, and every local import resolves.
 */

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dashboard');
const files = readdirSync(dir).filter((f) => /\.(js|html|css|svg)$/.test(f));
const read = (f) => readFileSync(path.join(dir, f), 'utf8');

test('no HTML parsing sinks in the dashboard code', () => {
  for (const f of files.filter((x) => x.endsWith('.js'))) {
    const src = read(f);
    for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'DOMParser', 'eval(', 'new Function', 'createContextualFragment']) {
      assert.ok(!src.includes(sink), `${f} uses ${sink}`);
    }
  }
});

test('nothing refers to another origin (no CDN, no external font)', () => {
  for (const f of files) {
    const urls = read(f).match(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s'"`)]*/gi) || [];
    const foreign = urls.filter((u) => !u.includes('www.w3.org/2000/svg'));
    assert.deepEqual(foreign, [], `${f} refers to ${foreign.join(', ')}`);
  }
});

test('every module starts with a doc comment and its imports exist', () => {
  for (const f of files.filter((x) => x.endsWith('.js'))) {
    const src = read(f);
    assert.ok(src.startsWith('/**'), `${f} has no module doc comment`);
    for (const [, spec] of src.matchAll(/from '(\.\/[^']+)'/g)) assert.ok(existsSync(path.join(dir, spec)), `${f} imports missing ${spec}`);
  }
});

test('index.html loads only local assets under a strict CSP', () => {
  const html = read('index.html');
  assert.match(html, /Content-Security-Policy" content="default-src 'self'; script-src 'self'; style-src 'self'/);
  for (const [, ref] of html.matchAll(/(?:src|href)="([^"]+)"/g)) assert.ok(existsSync(path.join(dir, ref)), `index.html refers to missing ${ref}`);
});
