// datapath.secondChanceSeconds (docs/second-chance.md): default, bounds,
// and an error that names the key.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { parseConfig, loadConfigFile } from '../../src/config/load.js';

const minimal = readFileSync('config/minimal.yaml', 'utf8');

test('datapath.secondChanceSeconds defaults to 600 and takes 0 (off)', (t) => {
  t.is(loadConfigFile('config/minimal.yaml').datapath.secondChanceSeconds, 600);
  const withDp = /^datapath:/m.test(minimal) ? minimal.replace(/^datapath:\n/m, 'datapath:\n  secondChanceSeconds: 0\n') : `${minimal}\ndatapath:\n  secondChanceSeconds: 0\n`;
  t.is(parseConfig(withDp, 'x.yaml').datapath.secondChanceSeconds, 0);
});

test('a bad datapath.secondChanceSeconds is refused, naming the key', (t) => {
  for (const bad of ['-1', '86401', '1.5', 'soon']) {
    const text = /^datapath:/m.test(minimal) ? minimal.replace(/^datapath:\n/m, `datapath:\n  secondChanceSeconds: ${bad}\n`) : `${minimal}\ndatapath:\n  secondChanceSeconds: ${bad}\n`;
    const e = t.throws(() => parseConfig(text, 'x.yaml'));
    t.regex(e!.message + JSON.stringify(e), /datapath\.secondChanceSeconds/, bad);
  }
});
