// CongoDB (the MongoDB wire-protocol server inside npm @push.rocks/smartmongo)
// for the mongodb source's integration tests; started by congodb.sh.
//
//   node congodb-server.mjs --prefix DIR --port PORT --pidfile FILE
//
// DIR is where congodb.sh installed the package (DIR/node_modules). The pid
// file is written once the server listens. SIGTERM/SIGINT stop it.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const get = (flag, dflt) => (args.indexOf(flag) >= 0 ? args[args.indexOf(flag) + 1] : dflt);
const prefix = get('--prefix', '');
const port = parseInt(get('--port', '27017'), 10);
const pidfile = get('--pidfile', '');
if (!prefix || !Number.isInteger(port)) {
  console.error('usage: congodb-server.mjs --prefix DIR --port PORT [--pidfile FILE]');
  process.exit(2);
}
const entry = path.join(prefix, 'node_modules', '@push.rocks', 'smartmongo', 'dist_ts', 'congodb',
  'index.js');
const { CongoServer } = await import(pathToFileURL(entry).href);
const server = new CongoServer({ host: '127.0.0.1', port, storage: 'memory' });
await server.start();
if (pidfile) fs.writeFileSync(pidfile, String(process.pid));
console.log(`congodb listening on 127.0.0.1:${port} pid ${process.pid}`);
const stop = async () => {
  try {
    await server.stop();
  } finally {
    process.exit(0);
  }
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
