/** Kernel WebSocket codecs: v1 binary framing and legacy JSON. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeLegacy, decodeV1, encodeLegacy, encodeV1, KernelMessage } from '../../platform/ui/src/wire';

function sample(buffers: ArrayBuffer[] = []): KernelMessage {
  return {
    channel: 'shell',
    header: { msg_id: 'm1', msg_type: 'execute_request', session: 's', username: 'u', date: '2024-01-01T00:00:00Z', version: '5.3' },
    parent_header: {},
    metadata: {},
    content: { code: 'print("é")' },
    buffers,
  };
}

test('v1 round trip with and without buffers', () => {
  const buf = new Uint8Array([1, 2, 3, 255]).buffer;
  for (const msg of [sample(), sample([buf])]) {
    const out = decodeV1(encodeV1(msg));
    assert.equal(out.channel, 'shell');
    assert.deepEqual(out.header, msg.header);
    assert.deepEqual(out.content, msg.content);
    assert.equal(out.buffers!.length, msg.buffers!.length);
  }
  const withBuf = decodeV1(encodeV1(sample([buf])));
  assert.deepEqual(Array.from(new Uint8Array(withBuf.buffers![0])), [1, 2, 3, 255]);
});

test('v1 layout: count, offsets, then parts', () => {
  const frame = new DataView(encodeV1(sample()));
  const count = Number(frame.getBigUint64(0, true));
  assert.equal(count, 6);
  assert.equal(Number(frame.getBigUint64(8, true)), 8 * (1 + count));
  const channel = new TextDecoder().decode(new Uint8Array(frame.buffer, 8 * (1 + count), 5));
  assert.equal(channel, 'shell');
});

test('v1 rejects malformed frames clearly', () => {
  assert.throws(() => decodeV1(new ArrayBuffer(4)), /too short/);
  const bad = new DataView(new ArrayBuffer(16));
  bad.setBigUint64(0, 1000n, true);
  assert.throws(() => decodeV1(bad.buffer), /offset count/);
});

test('legacy JSON round trip and binary buffers', () => {
  const text = encodeLegacy(sample());
  assert.equal(typeof text, 'string');
  assert.deepEqual(decodeLegacy(text as string).content, sample().content);
  const bin = encodeLegacy(sample([new Uint8Array([9, 8]).buffer]));
  assert.ok(bin instanceof ArrayBuffer);
  const back = decodeLegacy(bin as ArrayBuffer);
  assert.equal(back.header.msg_id, 'm1');
  assert.deepEqual(Array.from(new Uint8Array(back.buffers![0])), [9, 8]);
});
