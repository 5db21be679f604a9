#!/usr/bin/env python3
"""Writes N-1 renamed copies of the Synthea transaction bundles, for the 10x
scale-up of the search benchmark (docs/performance.md).

    bench/synthea-scale.py ../shared/data/synthea OUT [--copies 9]

Copy k (1..copies) of each bundle goes to OUT/copy-k/, with every UUID in it
(fullUrls, references, identifiers) replaced by a UUID derived from it and k,
so each copy is a set of new patients with the same clinical shape. Loading
the original set and the copies gives (copies + 1) times the resources.
"""

import argparse
import gzip
import os
import re
import uuid

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def renamed(k):
    def sub(m):
        return str(uuid.uuid5(uuid.UUID(m.group(0).decode()), f"copy-{k}")).encode()

    return sub


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--copies", type=int, default=9)
    args = ap.parse_args()
    names = sorted(n for n in os.listdir(args.src) if n.endswith(".json.gz"))
    for k in range(1, args.copies + 1):
        dest = os.path.join(args.out, f"copy-{k}")
        os.makedirs(dest, exist_ok=True)
        for n in names:
            target = os.path.join(dest, n)
            if os.path.exists(target):
                continue
            with gzip.open(os.path.join(args.src, n), "rb") as f:
                text = f.read()
            with gzip.open(target + ".tmp", "wb", compresslevel=1) as f:
                f.write(UUID.sub(renamed(k), text))
            os.replace(target + ".tmp", target)
        print(f"copy {k}: {len(names)} bundles in {dest}", flush=True)


if __name__ == "__main__":
    main()
