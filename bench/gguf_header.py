#!/usr/bin/env python3
# gguf_header.py FILE: prints the byte length of FILE's GGUF header (metadata and tensor index, up
# to the aligned start of the tensor data): what `webllama random-model --like` reads, so that
# `make device-kit` carries only that much of a model.
import struct
import sys

# Value types by id: struct format of the fixed-size ones; 8 string, 9 array.
FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def header_len(f):
    def read(fmt):
        n = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, f.read(n))[0]

    def string():
        return f.read(read("Q"))

    def value(ty):
        if ty in FIXED:
            return read(FIXED[ty])
        if ty == 8:
            return string()
        if ty == 9:
            inner, n = read("I"), read("Q")
            if inner in FIXED:  # skipped whole
                f.seek(n * struct.calcsize(FIXED[inner]), 1)
                return None
            return [value(inner) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {ty}")

    if f.read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    version, n_tensors, n_kv = read("I"), read("Q"), read("Q")
    if version < 2:
        raise ValueError(f"GGUF version {version} is not supported")
    alignment = 32
    for _ in range(n_kv):
        key = string()
        v = value(read("I"))
        if key == b"general.alignment":
            alignment = v
    for _ in range(n_tensors):
        string()
        n_dims = read("I")
        f.seek(8 * n_dims + 4 + 8, 1)  # dims, type, offset
    return -(-f.tell() // alignment) * alignment


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        print(header_len(f))
