#!/usr/bin/env python3
"""Compares a server's per-type resource counts with the bundles loaded into it.

    HEARTH_AUTH=admin:PASSWORD bench/check-import-counts.py BUNDLE_DIR --base http://127.0.0.1:8080/fhir

Counts, per resource type, the entries of the transaction/batch bundles in
BUNDLE_DIR (`*.json`, `*.json.gz`) that create or update a resource, asks the
server for `GET [base]/[type]?_summary=count` of each type (signed in with HTTP
Basic as `HEARTH_AUTH`, `user:password`), and prints both.
Exits non-zero when any type differs (the check of `hearth import`, issue
acceptance: the counts must match exactly).
"""

import argparse
import base64
import gzip
import json
import os
import sys
import urllib.request
from collections import Counter


def bundles(d):
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        if name.endswith(".json.gz"):
            with gzip.open(path, "rb") as f:
                yield json.load(f)
        elif name.endswith(".json"):
            with open(path, "rb") as f:
                yield json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--base", default="http://127.0.0.1:8080/fhir")
    args = ap.parse_args()
    expected = Counter()
    for b in bundles(args.dir):
        for e in b.get("entry", []):
            method = e.get("request", {}).get("method")
            if method in ("POST", "PUT"):
                expected[e["resource"]["resourceType"]] += 1
    bad = 0
    print(f"{'type':32} {'bundles':>9} {'server':>9}")
    for t in sorted(expected):
        url = f"{args.base}/{t}?_summary=count"
        req = urllib.request.Request(url)
        if os.environ.get("HEARTH_AUTH"):
            token = base64.b64encode(os.environ["HEARTH_AUTH"].encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req) as r:
            got = json.load(r)["total"]
        mark = "" if got == expected[t] else "  <-- differs"
        bad += got != expected[t]
        print(f"{t:32} {expected[t]:9} {got:9}{mark}")
    total = sum(expected.values())
    print(f"{'all':32} {total:9}")
    if bad:
        print(f"{bad} types differ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
