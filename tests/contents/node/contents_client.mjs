// Drives the server's contents API with JupyterLab's own client library
// (@jupyterlab/services' ContentsManager), the way JupyterLab does.
// Usage: node contents_client.mjs BASE_URL TOKEN FOLDER — prints one JSON line.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'node', 'package.json'));
const { ContentsManager, ServerConnection } = require('@jupyterlab/services');
const WebSocket = require('ws');

const [baseUrl, token, folder] = process.argv.slice(2);
const serverSettings = ServerConnection.makeSettings({ baseUrl, token, WebSocket, appendToken: false });
const contents = new ContentsManager({ serverSettings });
const out = {};

const created = await contents.newUntitled({ path: folder, type: 'notebook' });
out.untitled = created.path;
const nb = {
  cells: [{ cell_type: 'code', execution_count: null, id: 'a1', metadata: {}, outputs: [], source: 'print("hi from node")\n1 + 1' }],
  metadata: {}, nbformat: 4, nbformat_minor: 5,
};
const saved = await contents.save(created.path, { type: 'notebook', format: 'json', content: nb });
out.savedContentIsNull = saved.content === null;
const read = await contents.get(created.path, { content: true, hash: true });
out.source = read.content.cells[0].source;
out.hashAlgorithm = read.hash_algorithm;
const renamed = await contents.rename(created.path, `${folder}/Renamed é.ipynb`);
out.renamed = renamed.path;
const copy = await contents.copy(renamed.path, folder);
out.copy = copy.path;
const cp = await contents.createCheckpoint(renamed.path);
out.checkpoints = (await contents.listCheckpoints(renamed.path)).map(c => c.id);
await contents.save(renamed.path, { type: 'notebook', format: 'json', content: { ...nb, cells: [] } });
await contents.restoreCheckpoint(renamed.path, cp.id);
out.restoredCells = (await contents.get(renamed.path)).content.cells.length;
await contents.deleteCheckpoint(renamed.path, cp.id);
await contents.save(`${folder}/notes.txt`, { type: 'file', format: 'text', content: 'plain text' });
const listing = await contents.get(folder, { content: true });
out.listing = listing.content.map(m => `${m.type}:${m.name}`).sort();
await contents.delete(copy.path);
try {
  await contents.get(copy.path);
  out.deletedGone = false;
} catch (e) {
  out.deletedGone = e.response?.status === 404;
}
out.downloadUrl = await contents.getDownloadUrl(`${folder}/notes.txt`);
console.log(JSON.stringify(out));
