// Writes small GGUF v3 files for the browser tests: metadata as [key, type, value] with the types
// below, tensors as [name, dims, ggml type id, data bytes (or a byte count of zeros), offset?],
// data 32-aligned.
// A tiny valid LLaMA (1 layer, width 64, Q8_0) whose metadata and tensors a test then spoils.

const TYPES = { u8: 0, i32: 5, u32: 4, f32: 6, bool: 7, str: 8, arr: 9 };

class Writer {
  constructor() { this.buf = Buffer.alloc(1 << 16); this.len = 0; }
  room(n) {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  u32(v) { this.room(4); this.buf.writeUInt32LE(v, this.len); this.len += 4; }
  u64(v) { this.room(8); this.buf.writeBigUInt64LE(BigInt(v), this.len); this.len += 8; }
  f32(v) { this.room(4); this.buf.writeFloatLE(v, this.len); this.len += 4; }
  bytes(b) { this.room(b.length); this.buf.set(b, this.len); this.len += b.length; }
  str(s) { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.bytes(b); }
  // One value of a scalar type (no type id).
  scalar(type, v) {
    switch (type) {
      case 'u8': this.bytes([v]); break;
      case 'bool': this.bytes([v ? 1 : 0]); break;
      case 'i32': this.room(4); this.buf.writeInt32LE(v, this.len); this.len += 4; break;
      case 'u32': this.u32(v); break;
      case 'f32': this.f32(v); break;
      case 'str': this.str(v); break;
      default: throw new Error(`type ${type}`);
    }
  }
  out() { return this.buf.subarray(0, this.len); }
}

// `cut`: the file ends after that many bytes (a header that declares more data than follows).
// A tensor's optional 5th field is its data offset, overriding the next free one (to overlap).
export function gguf(metadata, tensors, { cut = Infinity } = {}) {
  const w = new Writer();
  w.bytes(Buffer.from('GGUF'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, type, value] of metadata) {
    w.str(key);
    if (type.startsWith('arr_')) {
      const elem = type.slice(4);
      w.u32(TYPES.arr);
      w.u32(TYPES[elem]);
      w.u64(value.length);
      if (elem === 'u8') w.bytes(value);
      else for (const v of value) w.scalar(elem, v);
    } else {
      w.u32(TYPES[type]);
      w.scalar(type, value);
    }
  }
  let next = 0;
  const placed = [];
  for (const [name, dims, ty, data, at] of tensors) {
    const size = typeof data === 'number' ? data : data.length;
    const offset = at ?? next;
    w.str(name);
    w.u32(dims.length);
    for (const d of dims) w.u64(d);
    w.u32(ty);
    w.u64(offset);
    if (typeof data !== 'number') placed.push([offset, data]);
    next = Math.max(next, offset + Math.ceil(size / 32) * 32);
  }
  const head = w.out();
  const start = Math.ceil(head.length / 32) * 32;
  const file = Buffer.alloc(Math.min(start + next, cut));
  head.copy(file, 0);
  for (const [off, bytes] of placed) if (start + off < file.length) bytes.copy(file, start + off);
  return file;
}

const Q8_0 = 8;
const q8 = (rows, cols) => (rows * cols / 32) * 34;

// The tiny LLaMA's metadata (a byte-level vocabulary of 32 one-letter tokens) and tensors.
export function tinyLlama(dim = 64, ffn = 128, vocab = 32) {
  const tokens = Array.from({ length: 32 }, (_, i) => String.fromCharCode(97 + (i % 26)).repeat(1 + Math.floor(i / 26)));
  const metadata = [
    ['general.architecture', 'str', 'llama'],
    ['llama.block_count', 'u32', 1],
    ['llama.context_length', 'u32', 256],
    ['llama.embedding_length', 'u32', 64],
    ['llama.feed_forward_length', 'u32', 128],
    ['llama.attention.head_count', 'u32', 4],
    ['llama.attention.head_count_kv', 'u32', 2],
    ['llama.attention.layer_norm_rms_epsilon', 'f32', 1e-5],
    ['tokenizer.ggml.model', 'str', 'gpt2'],
    ['tokenizer.ggml.tokens', 'arr_str', tokens],
    ['tokenizer.ggml.merges', 'arr_str', []],
    ['tokenizer.ggml.token_type', 'arr_i32', tokens.map(() => 1)],
  ];
  const tensors = [
    ['token_embd.weight', [64, 32], Q8_0, q8(32, 64)],
    ['output_norm.weight', [64], 0, 256],
    ['blk.0.attn_norm.weight', [64], 0, 256],
    ['blk.0.attn_q.weight', [64, 64], Q8_0, q8(64, 64)],
    ['blk.0.attn_k.weight', [64, 32], Q8_0, q8(32, 64)],
    ['blk.0.attn_v.weight', [64, 32], Q8_0, q8(32, 64)],
    ['blk.0.attn_output.weight', [64, 64], Q8_0, q8(64, 64)],
    ['blk.0.ffn_norm.weight', [64], 0, 256],
    ['blk.0.ffn_gate.weight', [64, 128], Q8_0, q8(128, 64)],
    ['blk.0.ffn_up.weight', [64, 128], Q8_0, q8(128, 64)],
    ['blk.0.ffn_down.weight', [128, 64], Q8_0, q8(64, 128)],
  ];
  return { metadata, tensors };
}
