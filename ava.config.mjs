// Two runs (scripts/test): everything but the appliance image first, then the
// image tests on their own. The boot test measures boot-to-READY under QEMU's
// software CPU emulation, which needs the machine's cores to itself.
const image = 'dist/test/image/**/*.test.js';

export default {
  files: process.env.EDGELB_TEST_IMAGE === '1' ? [image] : ['dist/test/**/*.test.js', `!${image}`],
  // ava's timeout is for the whole run: it aborts every file when no test
  // has finished for this long. Some before hooks build images (the OCI node
  // image's mmdebstrap on a fresh machine) for minutes.
  timeout: '10m',
  concurrency: 2,
  workerThreads: false,
};
