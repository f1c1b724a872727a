// Drive a Zasper Hub server with JupyterLab's own client library.
//
// usage: node kernel_client.mjs BASE_URL TOKEN v1|legacy [contents]
// Prints one JSON line with what it observed; exits non-zero on failure.
import services from '@jupyterlab/services';
import WebSocket from 'ws';

const { ServerConnection, KernelManager, SessionManager, KernelSpecManager, ContentsManager } = services;
const [baseUrl, token, protocol, withContents] = process.argv.slice(2);
const opened = [];

// Record the negotiated subprotocol; in legacy mode offer none, so the
// server must fall back to the JSON format.
class RecordingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocol === 'legacy' ? [] : protocols);
    this.addEventListener('open', () => opened.push(this.protocol));
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function execute(kernel, code) {
  const outputs = { stream: '', result: null };
  const future = kernel.requestExecute({ code });
  future.onIOPub = msg => {
    if (msg.header.msg_type === 'stream') outputs.stream += msg.content.text;
    if (msg.header.msg_type === 'execute_result') outputs.result = msg.content.data['text/plain'];
  };
  const reply = await withTimeout(future.done, 60000, `execute ${code}`);
  outputs.status = reply.content.status;
  return outputs;
}

async function main() {
  const serverSettings = ServerConnection.makeSettings({
    baseUrl, wsUrl: baseUrl.replace(/^http/, 'ws'), token, appendToken: true, WebSocket: RecordingWebSocket,
  });
  const report = { protocol };

  const specs = new KernelSpecManager({ serverSettings });
  await specs.ready;
  await specs.refreshSpecs();
  report.defaultSpec = specs.specs.default;

  const kernelManager = new KernelManager({ serverSettings });
  const sessions = new SessionManager({ kernelManager, serverSettings });
  await sessions.ready;
  const session = await sessions.startNew({
    path: `node-${protocol}.ipynb`, type: 'notebook', name: `node-${protocol}.ipynb`, kernel: { name: 'python3' },
  });
  const kernel = session.kernel;
  const info = await withTimeout(kernel.info, 60000, 'kernel info');
  report.implementation = info.implementation;
  report.first = await execute(kernel, 'print("hello from node"); 6 * 7');

  await withTimeout(kernel.restart(), 60000, 'restart');
  report.afterRestart = await execute(kernel, '"restarted"');

  await kernel.interrupt();
  report.sessions = (await sessions.findByPath(`node-${protocol}.ipynb`)) ? 1 : 0;

  if (withContents === 'contents') {
    const contents = new ContentsManager({ serverSettings });
    const path = `saved-${protocol}.ipynb`;
    const nb = {
      nbformat: 4, nbformat_minor: 5, metadata: {},
      cells: [{ cell_type: 'code', id: 'c1', source: 'print(1)', metadata: {}, outputs: [], execution_count: null }],
    };
    await contents.save(path, { type: 'notebook', format: 'json', content: nb });
    const back = await contents.get(path, { content: true });
    report.savedSource = back.content.cells[0].source;
    report.savedType = back.type;
  }

  await session.shutdown();
  sessions.dispose();
  kernelManager.dispose();
  report.opened = opened;
  console.log(JSON.stringify(report));
}

main().then(() => process.exit(0), err => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
