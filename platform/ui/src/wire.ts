/**
 * Kernel WebSocket wire formats: the `v1.kernel.websocket.jupyter.org`
 * binary framing and the legacy JSON framing, behind one pair of functions.
 *
 * v1 frame: a little-endian uint64 count N, then N uint64 offsets, then the
 * parts [channel, header, parent_header, metadata, content, ...buffers];
 * part i spans offsets[i]..offsets[i+1].
 */

export const V1_PROTOCOL = 'v1.kernel.websocket.jupyter.org';

export type Channel = 'shell' | 'iopub' | 'stdin' | 'control';

export interface MessageHeader {
  msg_id: string;
  msg_type: string;
  session: string;
  username: string;
  date: string;
  version: string;
  [key: string]: unknown;
}

export interface KernelMessage {
  channel: Channel | string;
  header: MessageHeader;
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: any;
  buffers?: ArrayBuffer[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

/** Encode a message in the v1 binary framing. */
export function encodeV1(msg: KernelMessage): ArrayBuffer {
  const parts: Uint8Array[] = [
    encoder.encode(msg.channel),
    encoder.encode(JSON.stringify(msg.header)),
    encoder.encode(JSON.stringify(msg.parent_header ?? {})),
    encoder.encode(JSON.stringify(msg.metadata ?? {})),
    encoder.encode(JSON.stringify(msg.content ?? {})),
    ...(msg.buffers ?? []).map((b) => new Uint8Array(b)),
  ];
  const count = parts.length + 1;
  const tableSize = 8 * (1 + count);
  const total = tableSize + parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(count), true);
  let offset = tableSize;
  view.setBigUint64(8, BigInt(offset), true);
  parts.forEach((part, i) => {
    out.set(part, offset);
    offset += part.byteLength;
    view.setBigUint64(8 * (i + 2), BigInt(offset), true);
  });
  return out.buffer;
}

/** Decode a v1 binary frame; throws a clear error on a malformed one. */
export function decodeV1(data: ArrayBuffer): KernelMessage {
  const view = new DataView(data);
  if (data.byteLength < 8) throw new Error('v1 frame too short');
  const count = Number(view.getBigUint64(0, true));
  if (count < 6 || 8 * (1 + count) > data.byteLength) throw new Error(`v1 frame has a bad offset count (${count})`);
  const offsets: number[] = [];
  for (let i = 0; i < count; i++) offsets.push(Number(view.getBigUint64(8 * (i + 1), true)));
  for (let i = 1; i < count; i++) {
    if (offsets[i] < offsets[i - 1] || offsets[i] > data.byteLength) throw new Error('v1 frame has bad offsets');
  }
  const bytes = new Uint8Array(data);
  const text = (i: number) => decoder.decode(bytes.subarray(offsets[i], offsets[i + 1]));
  const buffers: ArrayBuffer[] = [];
  for (let i = 5; i < count - 1; i++) buffers.push(data.slice(offsets[i], offsets[i + 1]));
  return {
    channel: text(0),
    header: JSON.parse(text(1)),
    parent_header: JSON.parse(text(2)),
    metadata: JSON.parse(text(3)),
    content: JSON.parse(text(4)),
    buffers,
  };
}

/**
 * Legacy framing: JSON text, or (with buffers) a binary frame of a uint32
 * big-endian count, uint32 offsets, the JSON message, then the buffers.
 */
export function encodeLegacy(msg: KernelMessage): string | ArrayBuffer {
  const { buffers, ...rest } = msg;
  if (!buffers || buffers.length === 0) return JSON.stringify(rest);
  const parts = [encoder.encode(JSON.stringify(rest)), ...buffers.map((b) => new Uint8Array(b))];
  const head = 4 * (parts.length + 1);
  const total = head + parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, parts.length);
  let offset = head;
  parts.forEach((part, i) => {
    view.setUint32(4 * (i + 1), offset);
    out.set(part, offset);
    offset += part.byteLength;
  });
  return out.buffer;
}

export function decodeLegacy(data: string | ArrayBuffer): KernelMessage {
  if (typeof data === 'string') return JSON.parse(data);
  const view = new DataView(data);
  const n = view.getUint32(0);
  const offsets: number[] = [];
  for (let i = 0; i < n; i++) offsets.push(view.getUint32(4 * (i + 1)));
  offsets.push(data.byteLength);
  const msg = JSON.parse(decoder.decode(new Uint8Array(data, offsets[0], offsets[1] - offsets[0])));
  msg.buffers = [];
  for (let i = 1; i < n; i++) msg.buffers.push(data.slice(offsets[i], offsets[i + 1]));
  return msg;
}

/** Encode for whichever protocol the server selected ('' = legacy). */
export function encode(msg: KernelMessage, protocol: string): string | ArrayBuffer {
  return protocol === V1_PROTOCOL ? encodeV1(msg) : encodeLegacy(msg);
}

export function decode(data: string | ArrayBuffer, protocol: string): KernelMessage {
  if (protocol === V1_PROTOCOL && typeof data !== 'string') return decodeV1(data);
  return decodeLegacy(data);
}
