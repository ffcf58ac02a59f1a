/**
 * Decodes an OTLP/protobuf `ExportTraceServiceRequest` into the shape of its OTLP/JSON
 * encoding (the fields the tests read), so the receiver treats both encodings alike.
 * A plain protobuf wire reader: field numbers from opentelemetry-proto `trace/v1`.
 */

type Fields = Map<number, Array<number | bigint | Uint8Array>>;

/** Every field of one message: varints as bigint, fixed64 as bigint, fixed32 as number, LEN as bytes. */
function fields(buf: Uint8Array): Fields {
  const out: Fields = new Map();
  let pos = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >>> 3;
    let value: number | bigint | Uint8Array;
    switch (key & 7) {
      case 0:
        value = varint();
        break;
      case 1:
        value = new DataView(buf.buffer, buf.byteOffset + pos, 8).getBigUint64(0, true);
        pos += 8;
        break;
      case 2: {
        const n = Number(varint());
        value = buf.subarray(pos, pos + n);
        pos += n;
        break;
      }
      case 5:
        value = new DataView(buf.buffer, buf.byteOffset + pos, 4).getUint32(0, true);
        pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${key & 7}`);
    }
    let list = out.get(field);
    if (!list) out.set(field, (list = []));
    list.push(value);
  }
  return out;
}

const text = (b: unknown) => Buffer.from(b as Uint8Array).toString('utf8');
const hex = (b: unknown) => Buffer.from(b as Uint8Array).toString('hex');
const all = (f: Fields, n: number) => (f.get(n) ?? []) as Uint8Array[];
const one = (f: Fields, n: number) => f.get(n)?.[0];

/** int64 varint (two's complement) as a JS number. */
const int64 = (v: bigint) => Number(BigInt.asIntN(64, v));

function anyValue(buf: Uint8Array): Record<string, unknown> {
  const f = fields(buf);
  if (f.has(1)) return { stringValue: text(one(f, 1)) };
  if (f.has(2)) return { boolValue: one(f, 2) === 1n };
  if (f.has(3)) return { intValue: int64(one(f, 3) as bigint) };
  if (f.has(4)) {
    const view = new DataView(new ArrayBuffer(8));
    view.setBigUint64(0, one(f, 4) as bigint, true);
    return { doubleValue: view.getFloat64(0, true) };
  }
  if (f.has(5)) return { arrayValue: { values: all(fields(one(f, 5) as Uint8Array), 1).map(anyValue) } };
  return {};
}

function attributes(list: Uint8Array[]): Array<{ key: string; value: Record<string, unknown> }> {
  return list.map((kv) => {
    const f = fields(kv);
    return { key: text(one(f, 1)), value: anyValue((one(f, 2) as Uint8Array | undefined) ?? new Uint8Array()) };
  });
}

function span(buf: Uint8Array): Record<string, unknown> {
  const f = fields(buf);
  const status = f.has(15) ? fields(one(f, 15) as Uint8Array) : undefined;
  return {
    traceId: hex(one(f, 1)),
    spanId: hex(one(f, 2)),
    parentSpanId: f.has(4) ? hex(one(f, 4)) : undefined,
    name: text(one(f, 5)),
    kind: Number(one(f, 6) ?? 0n),
    startTimeUnixNano: String(one(f, 7)),
    endTimeUnixNano: String(one(f, 8)),
    attributes: attributes(all(f, 9)),
    status: status && { code: Number(one(status, 3) ?? 0n), message: status.has(2) ? text(one(status, 2)) : undefined },
  };
}

/** The request's `resourceSpans`, as OTLP/JSON would carry them. */
export function decodeTraceExportRequest(body: Uint8Array): { resourceSpans: unknown[] } {
  return {
    resourceSpans: all(fields(body), 1).map((rsBytes) => {
      const rs = fields(rsBytes);
      const resource = rs.has(1) ? fields(one(rs, 1) as Uint8Array) : new Map();
      return {
        resource: { attributes: attributes(all(resource as Fields, 1)) },
        scopeSpans: all(rs, 2).map((ssBytes) => {
          const ss = fields(ssBytes);
          const scope = ss.has(1) ? fields(one(ss, 1) as Uint8Array) : new Map();
          return { scope: { name: text(one(scope as Fields, 1) ?? new Uint8Array()) }, spans: all(ss, 2).map(span) };
        }),
      };
    }),
  };
}
