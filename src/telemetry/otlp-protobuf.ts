/**
 * OTLP/protobuf encoding of finished spans: the body of an OTLP/HTTP trace export
 * (`ExportTraceServiceRequest`, opentelemetry-proto `trace/v1`).
 *
 * It writes the same bytes as `ProtobufTraceSerializer` from @opentelemetry/otlp-transformer
 * (a test holds them equal), except that the attributes of span-attributes.ts's DOUBLE_ATTRIBUTES are always doubles, and the OTLP/HTTP exporter around it is the SDK's own
 * (endpoint, headers, timeout, compression from `OTEL_EXPORTER_OTLP_*`) over
 * otlp-http-transport.ts (retries, and a deadline for the whole export). It exists
 * because encoding is the largest cost of tracing on the proxy's hot path: with every
 * request traced, the SDK serializer took ~100 µs of CPU per request in the bench's
 * profile (six spans, ~65 attributes), this one ~30 µs. It writes in one pass (no
 * size-estimating pass), encodes each attribute key once and reuses its bytes, and leaves
 * only non-ASCII text and long strings to Buffer's UTF-8 encoder (protobuf-writer.ts has
 * the wire-format primitives).
 */
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { FIXED32, FIXED64, LEN, tag, VARINT, Writer } from './protobuf-writer.js';
import { DOUBLE_ATTRIBUTES } from './span-attributes.js';
import { resourcesSettled, type SpanBatch } from './span-export.js';

type Attributes = Readonly<Record<string, unknown>>;

/** Span flags (trace/v1 SpanFlags): the W3C trace flags plus "is_remote is known" and "is remote". */
const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;

/** `KeyValue.key` (field 1) of each attribute key seen, encoded once. Keys are code constants; the cap guards against unbounded ones. */
const keyBytes = new Map<string, Buffer>();
const MAX_CACHED_KEYS = 4096;

function encodedKey(key: string): Buffer {
  let bytes = keyBytes.get(key);
  if (bytes === undefined) {
    const w = new Writer(8 + 3 * key.length);
    w.uint32(tag(1, LEN));
    w.string(key);
    bytes = Buffer.from(w.buf.subarray(0, w.pos));
    if (keyBytes.size < MAX_CACHED_KEYS) keyBytes.set(key, bytes);
  }
  return bytes;
}

function writeAttributes(w: Writer, field: number, attributes: Attributes | undefined): void {
  if (!attributes) return;
  for (const key of Object.keys(attributes)) {
    w.uint32(tag(field, LEN));
    const kv = w.open(1);
    w.raw(encodedKey(key));
    w.uint32(tag(2, LEN));
    const value = w.open(1);
    const v = attributes[key];
    if (typeof v === 'number' && DOUBLE_ATTRIBUTES.has(key)) {
      w.uint32(tag(4, FIXED64));
      w.double(v);
    } else writeAnyValue(w, v);
    w.close(value, 1);
    w.close(kv, 1);
  }
}

/** `AnyValue`; a value of another type (undefined, null) writes an empty one, as the SDK does. */
function writeAnyValue(w: Writer, v: unknown): void {
  switch (typeof v) {
    case 'string':
      w.uint32(tag(1, LEN));
      w.string(v);
      return;
    case 'boolean':
      w.uint32(tag(2, VARINT));
      w.uint32(v ? 1 : 0);
      return;
    case 'number':
      if (Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 63) {
        w.uint32(tag(3, VARINT));
        w.int64(v);
      } else {
        w.uint32(tag(4, FIXED64));
        w.double(v);
      }
      return;
  }
  if (v instanceof Uint8Array) {
    w.uint32(tag(7, LEN));
    w.uint32(v.length);
    w.raw(v);
  } else if (Array.isArray(v)) {
    w.uint32(tag(5, LEN));
    const list = w.open(1);
    for (const item of v) {
      w.uint32(tag(1, LEN));
      const at = w.open(1);
      writeAnyValue(w, item);
      w.close(at, 1);
    }
    w.close(list, 1);
  } else if (typeof v === 'object' && v !== null) {
    w.uint32(tag(6, LEN));
    const list = w.open(1);
    writeAttributes(w, 1, v as Attributes);
    w.close(list, 1);
  }
}

function writeSpan(w: Writer, span: ReadableSpan): void {
  const ctx = span.spanContext();
  w.uint32(tag(1, LEN));
  w.hexBytes(ctx.traceId);
  w.uint32(tag(2, LEN));
  w.hexBytes(ctx.spanId);
  const traceState = ctx.traceState?.serialize();
  if (traceState) {
    w.uint32(tag(3, LEN));
    w.string(traceState);
  }
  const parent = span.parentSpanContext;
  if (parent?.spanId) {
    w.uint32(tag(4, LEN));
    w.hexBytes(parent.spanId);
  }
  w.uint32(tag(5, LEN));
  w.string(span.name);
  // SpanKind: the proto's values are the API's plus one (0 is "unspecified").
  if (span.kind != null) {
    w.uint32(tag(6, VARINT));
    w.uint32(span.kind + 1);
  }
  w.uint32(tag(7, FIXED64));
  w.time(span.startTime);
  w.uint32(tag(8, FIXED64));
  w.time(span.endTime);
  writeAttributes(w, 9, span.attributes);
  w.uint32(tag(10, VARINT));
  w.uint32(span.droppedAttributesCount);
  for (const event of span.events) {
    w.uint32(tag(11, LEN));
    const at = w.open(1);
    w.uint32(tag(1, FIXED64));
    w.time(event.time);
    w.uint32(tag(2, LEN));
    w.string(event.name);
    writeAttributes(w, 3, event.attributes);
    w.uint32(tag(4, VARINT));
    w.uint32(event.droppedAttributesCount ?? 0);
    w.close(at, 1);
  }
  w.uint32(tag(12, VARINT));
  w.uint32(span.droppedEventsCount);
  for (const link of span.links) {
    w.uint32(tag(13, LEN));
    const at = w.open(1);
    w.uint32(tag(1, LEN));
    w.hexBytes(link.context.traceId);
    w.uint32(tag(2, LEN));
    w.hexBytes(link.context.spanId);
    const linkState = link.context.traceState?.serialize();
    if (linkState) {
      w.uint32(tag(3, LEN));
      w.string(linkState);
    }
    writeAttributes(w, 4, link.attributes);
    w.uint32(tag(5, VARINT));
    w.uint32(link.droppedAttributesCount ?? 0);
    w.uint32(tag(6, FIXED32));
    w.fixed32(flags(link.context.traceFlags, link.context.isRemote));
    w.close(at, 1);
  }
  w.uint32(tag(14, VARINT));
  w.uint32(span.droppedLinksCount);
  w.uint32(tag(15, LEN));
  const status = w.open(1);
  if (span.status.message) {
    w.uint32(tag(2, LEN));
    w.string(span.status.message);
  }
  w.uint32(tag(3, VARINT));
  w.uint32(span.status.code);
  w.close(status, 1);
  w.uint32(tag(16, FIXED32));
  w.fixed32(flags(ctx.traceFlags, parent?.isRemote));
}

function flags(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | HAS_IS_REMOTE | (isRemote ? IS_REMOTE : 0);
}

type Resource = ReadableSpan['resource'];
type Scope = ReadableSpan['instrumentationScope'];

/**
 * Spans encoded one at a time, as they end, into the `ScopeSpans.spans` bytes of their
 * resource and scope (by identity, in first-seen order); `finish` wraps them into one
 * `ExportTraceServiceRequest`. A batch processor keeps these bytes instead of the span
 * objects, so a finished span is garbage at once rather than living on until its batch is
 * sent (long enough to be promoted to the old generation under load).
 *
 * Each span is encoded into a shared scratch buffer and kept as an exact-size copy
 * (`Writer.copyFrom`), so the memory a batch holds is its `bytes`: a growable buffer per
 * batch held up to twice that (doubling, and at the batch boundary the span taken back out
 * had grown it), and the processor's 64 MiB bound did not hold.
 *
 * @example
 * const batch = new SpanBatchEncoder();
 * batch.add(span); // ... more spans
 * const body = batch.finish(); // POST to /v1/traces as application/x-protobuf
 */
export class SpanBatchEncoder implements SpanBatch {
  /** Spans added. */
  count = 0;
  /** Bytes of the spans added, and held (the request adds a little: resource and scope). */
  bytes = 0;
  /** The encoded spans of each resource and scope. */
  readonly #groups = new Map<Resource, Map<Scope, Buffer[]>>();
  /** The span added last, for `undo` (fields, not an object: no allocation per span). */
  #lastSpans: Buffer[] | undefined;
  #lastResource: Resource | undefined;
  #lastScope: Scope | undefined;

  /** Encodes `span` into the batch; returns its size in bytes. */
  add(span: ReadableSpan): number {
    const encoded = encodeSpanField(span);
    let byScope = this.#groups.get(span.resource);
    if (byScope === undefined) this.#groups.set(span.resource, (byScope = new Map()));
    let spans = byScope.get(span.instrumentationScope);
    if (spans === undefined) byScope.set(span.instrumentationScope, (spans = []));
    spans.push(encoded);
    this.count++;
    this.bytes += encoded.length;
    this.#lastSpans = spans;
    this.#lastResource = span.resource; // not the span: it is garbage once encoded
    this.#lastScope = span.instrumentationScope;
    return encoded.length;
  }

  /** Takes the span added last out of the batch again (once). */
  undo(): void {
    const spans = this.#lastSpans;
    const resource = this.#lastResource;
    if (spans === undefined || resource === undefined) return;
    this.#lastSpans = this.#lastResource = undefined;
    this.bytes -= spans.pop()!.length;
    this.count--;
    if (spans.length === 0) {
      // Its resource and scope had no other span: no empty ScopeSpans in the request.
      const byScope = this.#groups.get(resource)!;
      byScope.delete(this.#lastScope!);
      if (byScope.size === 0) this.#groups.delete(resource);
    }
  }

  /**
   * Settles when every resource of the batch has its asynchronous attributes: `finish`
   * reads `resource.attributes`, which leaves out an attribute still pending, and does so
   * until something waited for it. Undefined when none is pending.
   */
  resourcesSettled(): Promise<unknown> | undefined {
    return resourcesSettled(this.#groups.keys());
  }

  /** The `ExportTraceServiceRequest` bytes of every span added. */
  finish(): Uint8Array {
    const w = scratch;
    w.pos = 0;
    for (const [resource, byScope] of this.#groups) {
      w.uint32(tag(1, LEN));
      const rs = w.open(3);
      w.uint32(tag(1, LEN));
      const res = w.open(2);
      writeAttributes(w, 1, resource.attributes as Attributes);
      w.uint32(tag(2, VARINT));
      w.uint32(0);
      w.close(res, 2);
      for (const [scope, spans] of byScope) {
        w.uint32(tag(2, LEN));
        const ss = w.open(3);
        w.uint32(tag(1, LEN));
        const sc = w.open(1);
        w.uint32(tag(1, LEN));
        w.string(scope.name);
        if (scope.version) {
          w.uint32(tag(2, LEN));
          w.string(scope.version);
        }
        const extra = scope as { attributes?: Attributes; droppedAttributesCount?: number };
        writeAttributes(w, 3, extra.attributes);
        if (extra.droppedAttributesCount) {
          w.uint32(tag(4, VARINT));
          w.uint32(extra.droppedAttributesCount);
        }
        w.close(sc, 1);
        for (const encoded of spans) w.raw(encoded);
        if (scope.schemaUrl) {
          w.uint32(tag(3, LEN));
          w.string(scope.schemaUrl);
        }
        w.close(ss, 3);
      }
      const schemaUrl = (resource as { schemaUrl?: string }).schemaUrl;
      if (schemaUrl) {
        w.uint32(tag(3, LEN));
        w.string(schemaUrl);
      }
      w.close(rs, 3);
    }
    const out = new Uint8Array(w.pos);
    out.set(w.buf.subarray(0, w.pos));
    releaseLargeScratch();
    return out;
  }
}

/**
 * Where every span and request is encoded before it is copied out (the batch keeps a copy of
 * each span, the exporter sends a copy of the request): one buffer, grown to the largest.
 */
let scratch = new Writer(64 * 1024);
const SCRATCH_KEPT_BYTES = 4 * 1024 * 1024;

/** Does not keep a rare huge span's or batch's buffer. */
function releaseLargeScratch(): void {
  if (scratch.buf.length > SCRATCH_KEPT_BYTES) scratch = new Writer(64 * 1024);
}

/** `ScopeSpans.spans` (field 2) holding `span`, as an exact-size copy. */
function encodeSpanField(span: ReadableSpan): Buffer {
  const w = scratch;
  w.pos = 0;
  w.uint32(tag(2, LEN));
  const at = w.open(2);
  writeSpan(w, span);
  w.close(at, 2);
  const encoded = w.copyFrom(0);
  releaseLargeScratch();
  return encoded;
}

/**
 * `ExportTraceServiceRequest` bytes for `spans`.
 *
 * @example
 * const body = encodeTraceExportRequest(spans); // POST to /v1/traces as application/x-protobuf
 */
export function encodeTraceExportRequest(spans: readonly ReadableSpan[]): Uint8Array {
  const batch = new SpanBatchEncoder();
  for (const span of spans) batch.add(span);
  return batch.finish();
}
