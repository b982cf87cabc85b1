// Starts firebase-tools' Cloud Storage emulator (GCS JSON API) on 127.0.0.1
// for the gcs sink's integration test, without the Java rules runtime, which
// firebase-tools would otherwise download: the JSON API goes through the
// emulator's admin storage layer, which never consults security rules.
//
//   FIREBASE_TOOLS_PREFIX=/var/cache/engine-test/firebase node gcs-emu.js PORT
//
// FIREBASE_TOOLS_PREFIX is the directory firebase-tools@15.34.2 was installed
// into with npm (tests/servers/gcs-emu.sh does that). Prints one line
// "GCS emulator on http://127.0.0.1:PORT" once it listens; stops on
// SIGTERM/SIGINT.
'use strict';
const path = require('path');

const prefix = process.env.FIREBASE_TOOLS_PREFIX || process.cwd();
let pkg;
try {
  pkg = require.resolve('firebase-tools/package.json', { paths: [prefix] });
} catch (e) {
  console.error(`gcs-emu: firebase-tools is not installed under ${prefix} (npm i firebase-tools@15.34.2 there)`);
  process.exit(2);
}
const base = path.join(path.dirname(pkg), 'lib', 'emulator');
const { StorageEmulator } = require(path.join(base, 'storage', 'index'));
const { EmulatorRegistry } = require(path.join(base, 'registry'));

const port = Number(process.argv[2] || 9199);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`gcs-emu: invalid port '${process.argv[2]}'`);
  process.exit(2);
}
const emu = new StorageEmulator({ projectId: 'demo-test', host: '127.0.0.1', port, rules: [], auto_download: false });
// No rules runtime (a Java download); the GCS JSON API does not need it.
emu._rulesRuntime.start = async () => {};
emu._rulesManager = { start: async () => {}, stop: async () => {}, getRuleset: () => undefined };

let stopping = false;
async function stop(sig) {
  if (stopping) return;
  stopping = true;
  try {
    await EmulatorRegistry.stopAll();
  } catch (e) {
    console.error(`gcs-emu: error while stopping on ${sig}: ${e && e.message ? e.message : e}`);
  }
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

EmulatorRegistry.start(emu)
  .then(() => console.log(`GCS emulator on http://127.0.0.1:${port}`))
  .catch((e) => {
    console.error(`gcs-emu: unable to start the storage emulator on 127.0.0.1:${port}: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  });
