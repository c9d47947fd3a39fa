// A SIGHUP while `edgelb run` starts: with no handler yet its default action
// ended the process, which systemd counts as a clean exit (no restart).
// Real signals to this test's own process: without a listener it would die.
import test from 'ava';
import { holdHangups } from '../../src/cli/signals.js';
import { silentLogger } from '../../src/log/logger.js';

const hup = async () => {
  process.kill(process.pid, 'SIGHUP');
  await new Promise((r) => setTimeout(r, 100)); // signals arrive on the event loop
};

test.serial('a SIGHUP while starting is held, then replayed once as a reload; after release the reload handler is the only one', async (t) => {
  const before = process.listenerCount('SIGHUP');
  const h = holdHangups(silentLogger());
  await hup();
  await hup();
  let reloads = 0;
  const reload = () => { reloads++; };
  h.release(reload);
  t.is(reloads, 1, 'two hangups while starting: one reload once up');
  t.is(process.listenerCount('SIGHUP'), before, 'the holding listener is gone');
  process.on('SIGHUP', reload);
  t.teardown(() => process.off('SIGHUP', reload));
  await hup();
  t.is(reloads, 2);
});

test.serial('no SIGHUP while starting: no reload at release', (t) => {
  const h = holdHangups(silentLogger());
  let reloads = 0;
  h.release(() => { reloads++; });
  t.is(reloads, 0);
});
