#!/usr/bin/env python3
"""Convert the FHIRPath R4 test suite (tests-fhir-r4.xml) into JSON for
`hearth-fhirpath-suite`: one object per test with its group, name, input file,
expression, whether the expression is meant to be invalid, and the expected
outputs as (type, value).

Usage: bench/fhirpath-suite-to-json.py SUITE.xml OUT.json
"""
import json
import sys
import xml.etree.ElementTree as ET


def main():
    suite, out = sys.argv[1], sys.argv[2]
    root = ET.parse(suite).getroot()
    tests = []
    for group in root.iter('group'):
        for t in group.iter('test'):
            expr = t.find('expression')
            tests.append({
                'group': group.get('name'),
                'name': t.get('name'),
                'input': t.get('inputfile') or group.get('inputfile'),
                'expression': (expr.text or '') if expr is not None else '',
                'invalid': expr is not None and expr.get('invalid') is not None,
                'predicate': t.get('predicate') == 'true',
                'outputs': [{'type': o.get('type'), 'value': o.text or ''}
                            for o in t.findall('output')],
            })
    with open(out, 'w', encoding='utf-8') as f:
        json.dump(tests, f, indent=1)
    print('%d tests written to %s' % (len(tests), out))


if __name__ == '__main__':
    main()
