// Drops the proxy-wasm callbacks an AssemblyScript filter does not implement from its module's
// exports, so Envoy does not call them.
//
// Why: proxy-wasm-cpp-host (src/context.cc) looks every callback up once and, for each stream
// event, skips the call when the module does not export it (`if (!wasm_->on_response_body_)
// return Continue`). The runtime (vendor/proxy-runtime-0.1.8-wasmxds/assembly/exports.ts)
// exports all of them, so every request paid for calls into V8 that only ran a default method:
// on a direct_response request, proxy_on_response_body, proxy_on_done and proxy_on_log, three
// of seven VM entries. Envoy's behaviour for a missing export is the default method's: Continue,
// nothing logged, true from onDone.
//
// Which callbacks a filter implements is read from its own sources (every file asc read that is
// not the runtime or asc's library): a callback is kept if any of them names it, one of the
// methods it dispatches to, or a runtime call that needs it (httpCall for the HTTP call response
// and for RootContext.onDone, which answers pending calls). Any mention counts, comments too: a
// spurious one only keeps a callback; overriding a method without naming it is impossible.
// The functions stay in the module, only unexported, so nothing else changes.

/** Export -> identifiers whose presence in the filter's sources means it is used. */
export const TRIMMABLE_CALLBACKS: Readonly<Record<string, readonly string[]>> = {
  proxy_on_request_headers: ["onRequestHeaders"],
  proxy_on_request_body: ["onRequestBody"],
  proxy_on_request_trailers: ["onRequestTrailers"],
  proxy_on_request_metadata: ["onRequestMetadata"],
  proxy_on_response_headers: ["onResponseHeaders"],
  proxy_on_response_body: ["onResponseBody"],
  proxy_on_response_trailers: ["onResponseTrailers"],
  proxy_on_response_metadata: ["onResponseMetadata"],
  proxy_on_log: ["onLog"],
  // RootContext.onDone logs and answers pending HTTP calls with "no response".
  proxy_on_done: ["onDone", "httpCall"],
  proxy_on_tick: ["onTick"],
  proxy_on_queue_ready: ["onQueueReady"],
  // The runtime's handler is empty (a TODO upstream).
  proxy_on_foreign_function: [],
  proxy_on_http_call_response: ["onHttpCallResponse", "httpCall"],
  proxy_on_grpc_receive_initial_metadata: ["on_grpc_receive_initial_metadata"],
  proxy_on_grpc_receive_trailing_metadata: ["on_grpc_trailing_metadata"],
  proxy_on_grpc_receive: ["on_grpc_receive"],
  proxy_on_grpc_close: ["on_grpc_close"],
};

/**
 * The same for a Rust filter on the `proxy-wasm` crate, whose dispatcher exports every callback
 * and runs the trait's default method for the ones a filter does not override (Continue, true
 * from on_done): the trait method names (Context, RootContext, HttpContext). gRPC callbacks are
 * kept whenever the filter names gRPC at all (unary responses and stream events share them).
 */
export const RUST_TRIMMABLE_CALLBACKS: Readonly<Record<string, readonly string[]>> = {
  proxy_on_request_headers: ["on_http_request_headers"],
  proxy_on_request_body: ["on_http_request_body"],
  proxy_on_request_trailers: ["on_http_request_trailers"],
  proxy_on_response_headers: ["on_http_response_headers"],
  proxy_on_response_body: ["on_http_response_body"],
  proxy_on_response_trailers: ["on_http_response_trailers"],
  proxy_on_log: ["on_log"],
  proxy_on_done: ["on_done"],
  proxy_on_tick: ["on_tick", "set_tick_period"],
  proxy_on_queue_ready: ["on_queue_ready"],
  proxy_on_foreign_function: ["on_foreign_function"],
  proxy_on_http_call_response: ["on_http_call_response", "dispatch_http_call"],
  proxy_on_grpc_receive_initial_metadata: ["\\w*grpc\\w*"],
  proxy_on_grpc_receive_trailing_metadata: ["\\w*grpc\\w*"],
  proxy_on_grpc_receive: ["\\w*grpc\\w*"],
  proxy_on_grpc_close: ["\\w*grpc\\w*"],
};

/** The trimmable exports none of `sources` uses (the export's own name counts as a use). */
export function unusedCallbacks(sources: readonly string[], callbacks = TRIMMABLE_CALLBACKS): string[] {
  const mentions = (word: string) => {
    const re = new RegExp(`\\b${word}\\b`);
    return sources.some((s) => re.test(s));
  };
  return Object.entries(callbacks)
    .filter(([name, uses]) => !mentions(name) && !uses.some(mentions))
    .map(([name]) => name);
}

const EXPORT_SECTION = 7;

/**
 * `wasm` with the named exports removed from its export section (other sections byte for byte).
 * Names not exported are ignored. Throws on a malformed module (asc's own output never is).
 */
export function removeExports(wasm: Uint8Array, names: readonly string[]): Uint8Array {
  const drop = new Set(names);
  if (drop.size === 0) return wasm;
  if (wasm.length < 8 || wasm[0] !== 0 || wasm[1] !== 0x61 || wasm[2] !== 0x73 || wasm[3] !== 0x6d) {
    throw new Error("removeExports: not a Wasm binary");
  }
  const out: Uint8Array[] = [wasm.subarray(0, 8)];
  let pos = 8;
  while (pos < wasm.length) {
    const id = wasm[pos]!;
    const [size, sizeLen] = readU32(wasm, pos + 1);
    const bodyStart = pos + 1 + sizeLen;
    const bodyEnd = bodyStart + size;
    if (bodyEnd > wasm.length) throw new Error(`removeExports: section ${id} at ${pos} runs past the end`);
    if (id === EXPORT_SECTION) {
      const body = filterExports(wasm.subarray(bodyStart, bodyEnd), drop);
      out.push(Uint8Array.of(id), encodeU32(body.length), body);
    } else {
      out.push(wasm.subarray(pos, bodyEnd));
    }
    pos = bodyEnd;
  }
  const total = out.reduce((n, part) => n + part.length, 0);
  const result = new Uint8Array(total);
  let at = 0;
  for (const part of out) {
    result.set(part, at);
    at += part.length;
  }
  return result;
}

/** An export section body without the entries named in `drop`. */
function filterExports(body: Uint8Array, drop: ReadonlySet<string>): Uint8Array {
  const [count, countLen] = readU32(body, 0);
  const kept: Uint8Array[] = [];
  const decoder = new TextDecoder();
  let pos = countLen;
  for (let i = 0; i < count; i++) {
    const start = pos;
    const [nameLen, nameLenLen] = readU32(body, pos);
    const name = decoder.decode(body.subarray(pos + nameLenLen, pos + nameLenLen + nameLen));
    pos += nameLenLen + nameLen + 1; // the kind byte
    const [, indexLen] = readU32(body, pos);
    pos += indexLen;
    if (!drop.has(name)) kept.push(body.subarray(start, pos));
  }
  if (pos !== body.length) throw new Error(`removeExports: export section has ${body.length - pos} trailing bytes`);
  const head = encodeU32(kept.length);
  const result = new Uint8Array(head.length + kept.reduce((n, k) => n + k.length, 0));
  result.set(head, 0);
  let at = head.length;
  for (const k of kept) {
    result.set(k, at);
    at += k.length;
  }
  return result;
}

/** LEB128 u32 at `pos`: [value, bytes read]. */
function readU32(bytes: Uint8Array, pos: number): [number, number] {
  let value = 0;
  for (let i = 0; i < 5; i++) {
    const b = bytes[pos + i];
    if (b === undefined) throw new Error(`removeExports: truncated LEB128 at ${pos}`);
    value += (b & 0x7f) * 2 ** (7 * i);
    if ((b & 0x80) === 0) return [value, i + 1];
  }
  throw new Error(`removeExports: LEB128 at ${pos} longer than 5 bytes`);
}

function encodeU32(value: number): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  do {
    let b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    bytes.push(b);
  } while (v !== 0);
  return Uint8Array.from(bytes);
}
