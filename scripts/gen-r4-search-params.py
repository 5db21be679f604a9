#!/usr/bin/env python3
"""Generate src/fhir/r4_search_params.txt from the official FHIR R4 core package.

Reads hl7.fhir.r4.core-4.0.1.tgz directly (no extraction) and writes a
tab-separated table of the R4 SearchParameters and compartment definitions.
Lines starting with '#' are comments.  Record kinds, in this order:

  S  id  url  code  type  bases  targets  modifiers  comparators
     multipleOr  multipleAnd  expression      one per SearchParameter
  K  param-id  index  definition-url  expression  definition-id
                                              one per composite component
  M  compartment  resource  params            one per compartment resource

S: every SearchParameter in the package, sorted by id.  bases, targets,
modifiers and comparators are comma-separated lists in definition order, or
`-` when absent; multipleOr/multipleAnd are 1, 0 or `-` (absent); expression
is the FHIRPath expression with tabs/newlines turned into spaces and runs of
spaces collapsed, or `-` when the parameter has none.
K: sorted by (param-id, index); index is 0-based in component order;
definition-id is the id of the SearchParameter whose url is definition-url,
or `-` when no such parameter is in the package.
M: sorted by (compartment, resource); compartment is the CompartmentDefinition
code (Patient, Encounter, ...); params is the comma-separated `param` list, or
`-` when the resource type is not in the compartment.  The example
CompartmentDefinition (id `example`, code Device) is skipped: it is an
illustration and clashes with the real Device compartment.

Usage: scripts/gen-r4-search-params.py [--package PATH] [--out PATH]
"""
import argparse
import collections
import json
import os
import re
import sys
import tarfile

DEFAULT_PACKAGE = '/work/shared/data/fhir-r4/hl7.fhir.r4.core-4.0.1.tgz'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, 'src', 'fhir', 'r4_search_params.txt')

RESOURCE_PREFIXES = ('SearchParameter', 'CompartmentDefinition')
SKIPPED_COMPARTMENTS = {'example'}  # CompartmentDefinition ids


def fail(msg):
    sys.exit('gen-r4-search-params: error: ' + msg)


def load_package(path):
    """Return (package.json, {prefix: [resource, ...]}) from the tarball."""
    found = {p: [] for p in RESOURCE_PREFIXES}
    manifest = None
    with tarfile.open(path, 'r:gz') as tar:
        for member in tar:
            base = member.name[len('package/'):]
            if (not member.isfile() or not member.name.startswith('package/')
                    or '/' in base or not base.endswith('.json')):
                continue
            prefix = base.split('-', 1)[0]
            if base == 'package.json':
                manifest = json.load(tar.extractfile(member))
            elif prefix in found:
                res = json.load(tar.extractfile(member))
                if res.get('resourceType') == prefix:
                    found[prefix].append(res)
    if manifest is None:
        fail('package/package.json not found in ' + path)
    return manifest, found


def one_line(expr, where):
    """Collapse whitespace of a FHIRPath expression onto one line."""
    out = re.sub(' +', ' ', re.sub('[\t\r\n]', ' ', expr)).strip()
    if '\t' in out or not out:
        fail('bad expression on %s: %r' % (where, expr))
    return out


def join_list(values, where):
    for v in values:
        if not isinstance(v, str) or not v or any(c in v for c in ',\t\r\n '):
            fail('list item %r on %s cannot be comma-joined' % (v, where))
    return ','.join(values) if values else '-'


def flag(value):
    return '-' if value is None else '1' if value else '0'


def search_records(params, quirks):
    """S records (sorted by id) and K records (sorted by id, index)."""
    by_id, by_url = {}, {}
    for sp in params:
        for key, index in (('id', by_id), ('url', by_url)):
            if sp[key] in index:
                fail('duplicate SearchParameter %s %s' % (key, sp[key]))
            index[sp[key]] = sp
    s_recs, k_recs, unresolved = [], [], 0
    for sid in sorted(by_id):
        sp = by_id[sid]
        s_recs.append(('S', sid, sp['url'], sp['code'], sp['type'],
                       join_list(sp.get('base', []), sid),
                       join_list(sp.get('target', []), sid),
                       join_list(sp.get('modifier', []), sid),
                       join_list(sp.get('comparator', []), sid),
                       flag(sp.get('multipleOr')), flag(sp.get('multipleAnd')),
                       one_line(sp['expression'], sid) if 'expression' in sp else '-'))
        if (sp['type'] == 'composite') != bool(sp.get('component')):
            fail('%s: type %s with %d components' % (sid, sp['type'], len(sp.get('component', []))))
        for i, comp in enumerate(sp.get('component', [])):
            target = by_url.get(comp['definition'])
            if target is None:
                unresolved += 1
                quirks.append('%s component %d: unresolved %s' % (sid, i, comp['definition']))
            k_recs.append(('K', sid, str(i), comp['definition'],
                           one_line(comp['expression'], '%s component %d' % (sid, i)),
                           target['id'] if target else '-'))
    return s_recs, k_recs, unresolved


def compartment_records(defs, quirks):
    """M records sorted by (compartment code, resource type)."""
    recs = {}
    for cd in defs:
        if cd['id'] in SKIPPED_COMPARTMENTS:
            quirks.append('skipped CompartmentDefinition/%s (code %s, %d resources)'
                          % (cd['id'], cd['code'], len(cd.get('resource', []))))
            continue
        for res in cd.get('resource', []):
            key = (cd['code'], res['code'])
            if key in recs:
                fail('duplicate compartment entry %s/%s' % key)
            recs[key] = ('M',) + key + (join_list(res.get('param', []), '%s/%s' % key),)
    return [recs[k] for k in sorted(recs)]


def sanity_check(records):
    def check(cond, msg):
        if not cond:
            fail('sanity check failed: ' + msg)
    kinds = collections.defaultdict(list)
    for rec in records:
        check(all(f and not any(c in f for c in '\t\r\n') for f in rec), 'bad field in %r' % (rec,))
        kinds[rec[0]].append(rec)
    s_lines, k_lines, m_lines = kinds['S'], kinds['K'], kinds['M']
    check(len(s_lines) >= 1380, 'only %d S lines' % len(s_lines))
    check(any(r[3] == 'patient' and 'Observation' in r[5].split(',') for r in s_lines),
          'no patient parameter on Observation')
    by_id = {r[1]: r for r in s_lines}
    rid = by_id.get('Resource-id')
    check(rid is not None and rid[3:6] == ('_id', 'token', 'Resource'), 'Resource-id is %r' % (rid,))
    per_param = collections.Counter(r[1] for r in k_lines)
    check(all(by_id[p][4] == 'composite' for p in per_param), 'K line on a non-composite')
    check(any(r[4] == 'composite' and per_param[r[1]] >= 2 for r in s_lines),
          'no composite parameter with >= 2 components')
    compartments = {r[1] for r in m_lines}
    for code in ('Patient', 'Encounter', 'RelatedPerson', 'Practitioner', 'Device'):
        check(code in compartments, 'no M lines for compartment ' + code)
    obs = {r[2]: r[3] for r in m_lines if r[1] == 'Patient'}.get('Observation', '').split(',')
    check('subject' in obs and 'performer' in obs, 'M Patient Observation params %s' % obs)
    return kinds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--package', default=DEFAULT_PACKAGE, help='FHIR R4 core .tgz')
    ap.add_argument('--out', default=DEFAULT_OUT, help='output file')
    args = ap.parse_args()

    manifest, found = load_package(args.package)
    quirks = []
    s_recs, k_recs, unresolved = search_records(found['SearchParameter'], quirks)
    m_recs = compartment_records(found['CompartmentDefinition'], quirks)
    records = s_recs + k_recs + m_recs
    kinds = sanity_check(records)

    header = ('# Generated from %s %s by scripts/gen-r4-search-params.py.\n'
              '# Do not edit by hand; re-run the script instead.\n'
              % (manifest.get('name'), manifest.get('version')))
    text = header + ''.join('\t'.join(rec) + '\n' for rec in records)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8', newline='\n') as f:
        f.write(text)

    for q in quirks:
        print('note: ' + q, file=sys.stderr)
    types = collections.Counter(r[4] for r in s_recs)
    print('wrote %s (%d bytes): %s' % (args.out, len(text.encode('utf-8')), ', '.join(
        '%s=%d' % (k, len(kinds[k])) for k in 'SKM')))
    print('types: ' + ', '.join('%s=%d' % kv for kv in sorted(types.items())))
    print('expressions: %d, no expression: %d, no base: %d, unresolved component definitions: %d'
          % (sum(r[11] != '-' for r in s_recs), sum(r[11] == '-' for r in s_recs),
             sum(r[5] == '-' for r in s_recs), unresolved))


if __name__ == '__main__':
    main()
