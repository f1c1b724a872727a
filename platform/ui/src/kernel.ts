/**
 * A kernel connection over the Jupyter kernel WebSocket.
 *
 * Offers the v1 binary subprotocol and falls back to the legacy JSON framing
 * when the server selects none.  The connection reconnects by itself with
 * backoff, keeps one client session id so the server can replay output
 * produced while it was away, and keeps per-request handlers across
 * reconnects so that replayed output lands in the right cell.
 */

import { kernels } from './api';
import { url } from './config';
import { Channel, KernelMessage, V1_PROTOCOL, decode, encode } from './wire';

export type KernelStatus = 'connecting' | 'starting' | 'idle' | 'busy' | 'restarting' | 'dead' | 'disconnected' | 'unknown';

export interface ExecuteHandlers {
  onIopub?: (msg: KernelMessage) => void;
  onReply?: (msg: KernelMessage) => void;
  onStdin?: (msg: KernelMessage) => void;
  /** The kernel went idle after this request (the idle status message). */
  onIdle?: (msg: KernelMessage) => void;
  onDone?: () => void;
}

interface Pending extends ExecuteHandlers {
  replied: boolean;
  idle: boolean;
}

export function uuid(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return crypto.randomUUID().replace(/-/g, '');
  return Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
}

const MAX_BACKOFF_MS = 8000;

export class KernelConnection {
  readonly clientId = uuid();
  status: KernelStatus = 'connecting';
  protocol = '';
  private ws: WebSocket | null = null;
  private pending = new Map<string, Pending>();
  private outbox: (string | ArrayBuffer)[] = [];
  private outboxMsgs: KernelMessage[] = [];
  private listeners = new Set<(status: KernelStatus, detail: string) => void>();
  private disposed = false;
  private attempts = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private triedLegacy = false;
  detail = '';
  /** The server no longer knows this kernel (404). */
  lost = false;
  /**
   * Sees every incoming message first (the widget manager: comms, and output
   * captured by Output widgets).  True means "consumed": the message is not
   * routed to its request's handlers.  It may hold messages and hand them
   * back later, in order, through `route`.
   */
  interceptor: ((msg: KernelMessage) => boolean) | null = null;

  constructor(
    public kernelId: string,
    public username = 'zasper',
  ) {
    this.connect();
  }

  onStatus(fn: (status: KernelStatus, detail: string) => void): () => void {
    this.listeners.add(fn);
    fn(this.status, this.detail);
    return () => this.listeners.delete(fn);
  }

  private setStatus(status: KernelStatus, detail = ''): void {
    this.status = status;
    this.detail = detail;
    for (const fn of this.listeners) fn(status, detail);
  }

  private socketUrl(): string {
    const loc = window.location;
    const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${loc.host}${url(`api/kernels/${this.kernelId}/channels`)}?session_id=${this.clientId}`;
  }

  private connect(): void {
    if (this.disposed) return;
    this.setStatus('connecting', this.attempts ? `reconnecting (attempt ${this.attempts})` : 'connecting');
    let ws: WebSocket;
    try {
      ws = this.triedLegacy ? new WebSocket(this.socketUrl()) : new WebSocket(this.socketUrl(), [V1_PROTOCOL]);
    } catch (e) {
      this.scheduleReconnect(`cannot open socket: ${(e as Error).message}`);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.protocol = ws.protocol;
      this.attempts = 0;
      this.setStatus('unknown', 'connected');
      // Re-encode queued messages for the protocol actually selected.
      const queued = this.outboxMsgs;
      this.outboxMsgs = [];
      this.outbox = [];
      this.sendRaw(this.makeMessage('shell', 'kernel_info_request', {}));
      for (const m of queued) this.sendRaw(m);
    };
    ws.onmessage = (ev) => this.handle(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.disposed) return;
      if (!opened && !this.triedLegacy && this.attempts === 0) {
        // Some servers refuse the subprotocol offer outright; retry plain.
        this.triedLegacy = true;
      }
      this.scheduleReconnect(ev.reason || `connection closed (${ev.code})`);
    };
  }

  private scheduleReconnect(reason: string): void {
    if (this.disposed) return;
    this.attempts++;
    const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(this.attempts, 6));
    this.setStatus('disconnected', `${reason}; retrying in ${Math.round(delay / 100) / 10}s`);
    this.timer = setTimeout(async () => {
      this.timer = null;
      try {
        await kernels.get(this.kernelId);
      } catch (e: any) {
        if (e?.status === 404) {
          this.lost = true;
          this.abandonPending();
          this.setStatus('dead', 'kernel no longer exists on the server');
          return;
        }
        // Server unreachable: keep trying.
        this.scheduleReconnect(e?.message || 'server unreachable');
        return;
      }
      this.connect();
    }, delay);
  }

  /** Reconnect immediately (user asked, or after a restart). */
  reconnectNow(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const old = this.ws;
    this.ws = null;
    old?.close();
    this.attempts = 0;
    this.connect();
  }

  private handle(data: string | ArrayBuffer): void {
    let msg: KernelMessage;
    try {
      msg = decode(data, this.protocol);
    } catch (e) {
      console.warn('Dropping undecodable kernel message', e);
      return;
    }
    if (this.interceptor?.(msg)) return;
    this.route(msg);
  }

  /** Deliver a message to status tracking and its request's handlers. */
  route(msg: KernelMessage): void {
    const parentId = (msg.parent_header as any)?.msg_id as string | undefined;
    if (msg.channel === 'iopub' && msg.header.msg_type === 'status') {
      const state = msg.content.execution_state as KernelStatus;
      // Status for our own requests and the kernel's own (restart) alike.
      this.setStatus(state, '');
      if (state === 'restarting' || state === 'dead') return;
    }
    if (!parentId) return;
    const p = this.pending.get(parentId);
    if (!p) return;
    if (msg.channel === 'iopub') {
      if (msg.header.msg_type === 'status' && msg.content.execution_state === 'idle') {
        p.idle = true;
        p.onIdle?.(msg);
      } else {
        p.onIopub?.(msg);
      }
    } else if (msg.channel === 'shell' || msg.channel === 'control') {
      p.replied = true;
      p.onReply?.(msg);
    } else if (msg.channel === 'stdin') {
      p.onStdin?.(msg);
    }
    if (p.replied && p.idle) {
      this.pending.delete(parentId);
      p.onDone?.();
    }
  }

  makeMessage(channel: Channel, msgType: string, content: unknown, metadata: Record<string, unknown> = {}, buffers: ArrayBuffer[] = []): KernelMessage {
    return {
      channel,
      header: {
        msg_id: uuid(),
        msg_type: msgType,
        session: this.clientId,
        username: this.username,
        date: new Date().toISOString(),
        version: '5.3',
      },
      parent_header: {},
      metadata,
      content,
      buffers,
    };
  }

  private sendRaw(msg: KernelMessage): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(encode(msg, this.protocol));
    } else {
      this.outboxMsgs.push(msg);
    }
  }

  /** Send a request; handlers get its iopub output, reply and stdin prompts. */
  send(channel: Channel, msgType: string, content: unknown, handlers: ExecuteHandlers = {}, extra: { metadata?: Record<string, unknown>; buffers?: ArrayBuffer[]; noReply?: boolean } = {}): string {
    const msg = this.makeMessage(channel, msgType, content, extra.metadata, extra.buffers);
    // Comm messages get no shell reply: they are done when the kernel is idle again.
    this.pending.set(msg.header.msg_id, { ...handlers, replied: !!extra.noReply, idle: channel !== 'shell' });
    this.sendRaw(msg);
    return msg.header.msg_id;
  }

  /** A request whose reply is all we want. */
  request(channel: Channel, msgType: string, content: unknown, timeoutMs = 10000): Promise<KernelMessage> {
    return new Promise((resolve, reject) => {
      let id = '';
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${msgType} timed out`));
      }, timeoutMs);
      id = this.send(channel, msgType, content, {
        onReply: (m) => {
          clearTimeout(timer);
          this.pending.delete(id);
          resolve(m);
        },
      });
    });
  }

  execute(code: string, handlers: ExecuteHandlers, allowStdin = true): string {
    return this.send('shell', 'execute_request', { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: allowStdin, stop_on_error: true }, handlers);
  }

  /** Answer an `input_request`. */
  inputReply(value: string, parent: KernelMessage): void {
    const msg = this.makeMessage('stdin', 'input_reply', { value });
    msg.parent_header = parent.header;
    this.sendRaw(msg);
  }

  async interrupt(): Promise<void> {
    await kernels.interrupt(this.kernelId);
  }

  async restart(): Promise<void> {
    this.setStatus('restarting', 'restarting');
    // Requests in flight will never complete on the old process.
    for (const p of this.pending.values()) p.onDone?.();
    this.pending.clear();
    await kernels.restart(this.kernelId);
    this.reconnectNow();
  }

  /** Forget handlers of requests that will never finish (after a restart). */
  abandonPending(): void {
    for (const p of this.pending.values()) p.onDone?.();
    this.pending.clear();
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer) clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    ws?.close();
    this.listeners.clear();
  }
}
