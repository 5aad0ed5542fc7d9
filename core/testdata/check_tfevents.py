#!/usr/bin/python3
"""Independent reader of TensorBoard event files, for core/event_writer_test.

Shares no code with the C++ side: CRCs come from Debian's python3-crc32c and
the Event protos are decoded from the protobuf wire format by hand below
(no generated code), using TensorFlow's field numbers.

Usage: /usr/bin/python3 check_tfevents.py EVENT_FILE [EXPECTED_JSON]
  Without EXPECTED_JSON, prints the decoded events as JSON.
  With it, checks the events against it: {"events": [E, ...]}, each E with
  "step", either "wall_time" (exact) or "wall_time_range" [lo, hi], and one
  of "file_version": str, "scalar": [tag, value], "text": [tag, text].
Exit status: 0 ok, 1 corrupt file or mismatch, 2 missing dependency.
"""
import json
import struct
import sys

try:
    import crc32c
except ImportError:
    sys.stderr.write("check_tfevents.py: cannot import crc32c: install the Debian "
                     "package python3-crc32c (tools/install_deps.sh)\n")
    sys.exit(2)


class Corrupt(Exception):
    pass


def masked_crc(data):
    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecords(blob):
    """Yields (offset, data) per record, checking the length and data CRCs."""
    pos = 0
    while pos < len(blob):
        if len(blob) - pos < 12:
            raise Corrupt(f"offset {pos}: truncated record header")
        length, length_crc = struct.unpack_from("<QI", blob, pos)
        if length_crc != masked_crc(blob[pos:pos + 8]):
            raise Corrupt(f"offset {pos}: length CRC mismatch")
        end = pos + 12 + length
        if end + 4 > len(blob):
            raise Corrupt(f"offset {pos}: truncated record data")
        data = blob[pos + 12:end]
        if struct.unpack_from("<I", blob, end)[0] != masked_crc(data):
            raise Corrupt(f"offset {pos}: data CRC mismatch")
        yield pos, data
        pos = end + 4


# --- protobuf wire format -------------------------------------------------
def varint(buf, pos):
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise Corrupt("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise Corrupt("varint longer than 10 bytes")


def fields(buf):
    """Maps field number -> list of (wire type, raw value) in order."""
    out, pos = {}, 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise Corrupt(f"field {number}: unexpected wire type {wire}")
        if pos > len(buf):
            raise Corrupt(f"field {number}: truncated")
        out.setdefault(number, []).append((wire, value))
    return out


def single(f, number, wire, default=None):
    values = f.get(number, [])
    if len(values) > 1:
        raise Corrupt(f"field {number} repeated")
    if not values:
        return default
    if values[0][0] != wire:
        raise Corrupt(f"field {number}: wire type {values[0][0]}, expected {wire}")
    return values[0][1]


def int64(raw):
    return raw - (1 << 64) if raw >= 1 << 63 else raw


# --- Event / Summary / TensorProto ---------------------------------------
def decode_value(buf):
    v = fields(buf)
    out = {"tag": single(v, 1, 2, b"").decode("utf-8")}
    if 2 in v:  # simple_value, float32
        out["simple_value"] = struct.unpack("<f", single(v, 2, 5))[0]
    if 9 in v:  # metadata
        meta = fields(single(v, 9, 2))
        plugin = fields(single(meta, 1, 2, b""))
        out["plugin_name"] = single(plugin, 1, 2, b"").decode("utf-8")
        out["plugin_content"] = single(plugin, 2, 2, b"").hex()
        out["data_class"] = single(meta, 4, 0, 0)
    if 8 in v:  # tensor
        tensor = fields(single(v, 8, 2))
        shape = fields(single(tensor, 2, 2, b""))
        out["dtype"] = single(tensor, 1, 0, 0)
        out["shape"] = [int64(single(fields(d), 1, 0, 0)) for _, d in shape.get(2, [])]
        out["string_val"] = [s.decode("utf-8") for _, s in tensor.get(8, [])]
    return out


def decode_event(buf):
    f = fields(buf)
    event = {"wall_time": struct.unpack("<d", single(f, 1, 1, bytes(8)))[0],
             "step": int64(single(f, 2, 0, 0))}
    if 3 in f:
        event["file_version"] = single(f, 3, 2).decode("utf-8")
    if 5 in f:
        event["values"] = [decode_value(raw) for _, raw in fields(single(f, 5, 2)).get(1, [])]
    return event


# --- checks ---------------------------------------------------------------
def as_float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check_event(i, got, want):
    def expect(what, actual, expected):
        if actual != expected:
            raise Corrupt(f"event {i}: {what} is {actual!r}, expected {expected!r}")

    expect("step", got["step"], want["step"])
    if "wall_time" in want:
        expect("wall_time", got["wall_time"], want["wall_time"])
    else:
        lo, hi = want["wall_time_range"]
        if not lo <= got["wall_time"] <= hi:
            raise Corrupt(f"event {i}: wall_time {got['wall_time']} not in [{lo}, {hi}]")
    if "file_version" in want:
        expect("file_version", got.get("file_version"), want["file_version"])
        return
    values = got.get("values", [])
    expect("number of summary values", len(values), 1)
    value = values[0]
    if "scalar" in want:
        tag, number = want["scalar"]
        expect("tag", value["tag"], tag)
        expect("simple_value", value.get("simple_value"), as_float32(number))
    else:
        tag, text = want["text"]
        expect("tag", value["tag"], tag)
        expect("plugin_name", value.get("plugin_name"), "text")
        expect("plugin_content", value.get("plugin_content"), "")
        expect("data_class (DATA_CLASS_TENSOR)", value.get("data_class"), 2)
        expect("dtype (DT_STRING)", value.get("dtype"), 7)
        expect("shape", value.get("shape"), [])
        expect("string_val", value.get("string_val"), [text])


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    if crc32c.crc32c(b"123456789") != 0xE3069283:
        sys.stderr.write("check_tfevents.py: the crc32c module does not compute CRC32C\n")
        return 2
    with open(argv[1], "rb") as f:
        blob = f.read()
    try:
        events = [decode_event(data) for _, data in tfrecords(blob)]
        if len(argv) == 2:
            print(json.dumps(events, indent=1, ensure_ascii=False))
            return 0
        with open(argv[2], encoding="utf-8") as f:
            wanted = json.load(f)["events"]
        if len(events) != len(wanted):
            raise Corrupt(f"{len(events)} events, expected {len(wanted)}")
        for i, (got, want) in enumerate(zip(events, wanted)):
            check_event(i, got, want)
    except Corrupt as e:
        sys.stderr.write(f"check_tfevents.py: {argv[1]}: {e}\n")
        return 1
    print(f"check_tfevents.py: {argv[1]}: {len(events)} events OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
