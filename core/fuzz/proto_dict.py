#!/usr/bin/env python3
"""Prints a libFuzzer dictionary for text protos of the given .proto files.

Every field name (as `name:` and `name {`) and every enum value, sorted,
with a comment naming the files. The fuzz targets' *.dict files are made
with it (their first line says how):
  core/fuzz/proto_dict.py configs/experiment.proto ... > configs/fuzz/config_loader.dict
"""
import re
import sys

FIELD = re.compile(r"^\s*(?:optional|required|repeated)?\s*(?:map<[^>]+>|[A-Za-z_][\w.]*)\s+"
                   r"([a-z_][a-z0-9_]*)\s*=\s*\d+")
ENUM_VALUE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*-?\d+\s*;")


def main(paths):
    fields, enums = set(), set()
    for path in paths:
        for line in open(path):
            line = line.split("//")[0]
            m = FIELD.match(line)
            if m and not line.strip().startswith(("option ", "reserved ", "extensions ")):
                fields.add(m.group(1))
                continue
            m = ENUM_VALUE.match(line)
            if m:
                enums.add(m.group(1))
    print("# libFuzzer dictionary, made by core/fuzz/proto_dict.py " + " ".join(paths))
    for f in sorted(fields):
        print(f'"{f}:"')
        print(f'"{f} {{"')
    for e in sorted(enums):
        print(f'"{e}"')


if __name__ == "__main__":
    main(sys.argv[1:])
