#!/usr/bin/env python3
"""Generate src/fhir/r4_elements.txt from the official FHIR R4 core package.

Reads hl7.fhir.r4.core-4.0.1.tgz directly (no extraction) and writes a
tab-separated table of the R4 base types and their elements.
Lines starting with '#' are comments.  Record kinds, in this order:

  P  name  json                       primitive type; json is boolean|number|string
  R  name  abstract                   resource type; abstract is 0|1
  C  name  abstract                   complex data type; abstract is 0|1
  E  owner  name  min  max  types     child element of `owner`
  B  path  code1,code2,...            codes of a required binding to a `code` element
  S  type  name1,name2,...            top-level elements of a resource type marked
                                      isSummary (for `_summary=true`)

E: `owner` is a type name (Patient) or the dotted path of an inline
BackboneElement/Element (Patient.contact); `max` is 0, 1 or *; `types` lists
FHIR type codes in definition order (FHIRPath System.* mapped back to FHIR
names), or is `@Path` for an inline structure or a contentReference, `Path`
being an owner with its own E lines.  Primitives get no E lines.  E lines are
grouped by owner, in snapshot (= XML) order.  B lines appear only when the
ValueSet is enumerable completely and exactly from the package (explicit
concepts, complete CodeSystems, resolvable imports; no filter, no exclude).

Usage: scripts/gen-r4-tables.py [--package PATH] [--out PATH]
"""
import argparse
import json
import os
import sys
import tarfile

DEFAULT_PACKAGE = '/work/shared/data/fhir-r4/hl7.fhir.r4.core-4.0.1.tgz'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, 'src', 'fhir', 'r4_elements.txt')

KINDS = ('primitive-type', 'complex-type', 'resource')
NUMBER_PRIMITIVES = {'integer', 'positiveInt', 'unsignedInt', 'decimal'}
SYSTEM_PREFIX = 'http://hl7.org/fhirpath/System.'
FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type'
SYSTEM_TYPES = {'String': 'string', 'Boolean': 'boolean', 'Integer': 'integer',
                'Decimal': 'decimal', 'Date': 'date', 'DateTime': 'dateTime',
                'Time': 'time'}
RESOURCE_PREFIXES = ('StructureDefinition', 'ValueSet', 'CodeSystem')


def fail(msg):
    sys.exit('gen-r4-tables: error: ' + msg)


def load_package(path):
    """Return (package.json, {prefix: {key: resource}}) from the tarball."""
    found = {p: {} for p in RESOURCE_PREFIXES}
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
                if res.get('resourceType') != prefix:
                    continue
                is_sd = prefix == 'StructureDefinition'
                # base definitions only: specializations and the roots
                if is_sd and (res.get('kind') not in KINDS or (
                        res.get('derivation') != 'specialization'
                        and 'baseDefinition' in res)):
                    continue
                key = res['type'] if is_sd else res.get('url')
                if key in found[prefix]:
                    fail('duplicate %s %s' % (prefix, key))
                found[prefix][key] = res
    if manifest is None:
        fail('package/package.json not found in ' + path)
    return manifest, found


def type_code(t, path):
    """FHIR type code of an ElementDefinition.type entry (System.* mapped back)."""
    code = t['code']
    if not code.startswith(SYSTEM_PREFIX):
        return code
    for ext in t.get('extension', []):
        if ext.get('url') == FHIR_TYPE_EXT:
            value = ext.get('valueUrl') or ext.get('valueUri')
            if value:
                return value.rsplit('/', 1)[-1]
    mapped = SYSTEM_TYPES.get(code[len(SYSTEM_PREFIX):])
    if mapped is None:
        fail('cannot map type %s of %s' % (code, path))
    return mapped


class Expander:
    """Enumerates ValueSet codes when that is possible completely and exactly."""

    def __init__(self, valuesets, codesystems):
        self.valuesets = valuesets
        self.codesystems = codesystems
        self.skipped = {}  # ValueSet url -> reason it cannot be enumerated

    def expand(self, url, stack=()):
        """List of codes (definition order, deduplicated) or None."""
        compose = self.valuesets.get(url, {}).get('compose')
        reason = ('ValueSet missing or without compose' if compose is None
                  else 'has exclude' if compose.get('exclude') else None)
        codes = []
        for inc in [] if reason else compose.get('include', []):
            got = self.include(inc, stack + (url,))
            if isinstance(got, str):
                reason = got
                break
            codes.extend(got)
        if not reason and not codes:
            reason = 'empty'
        if reason:
            self.skipped.setdefault(url, reason)
            return None
        return list(dict.fromkeys(codes))

    def include(self, inc, stack):
        """Codes of one compose.include, or a string giving why not."""
        if inc.get('filter'):
            return 'has filter'
        if inc.get('valueSet'):
            if inc.get('system') or inc.get('concept'):
                return 'import combined with system (intersection)'
            codes = []
            for ref in inc['valueSet']:
                ref = ref.split('|', 1)[0]
                got = None if ref in stack else self.expand(ref, stack)
                if got is None:
                    return 'unresolvable import ' + ref
                codes.extend(got)
            return codes
        system = inc.get('system')
        if not system:
            return 'include without system'
        if inc.get('concept'):
            return [c['code'] for c in inc['concept']]
        cs = self.codesystems.get(system)
        if cs is None:
            return 'CodeSystem not in package: ' + system
        if cs.get('content') != 'complete':
            return 'CodeSystem content=%s: %s' % (cs.get('content'), system)
        if inc.get('version') not in (None, cs.get('version')):
            return 'CodeSystem version mismatch: ' + system
        return list(walk_concepts(cs.get('concept', [])))


def walk_concepts(concepts):
    for c in concepts:
        yield c['code']
        yield from walk_concepts(c.get('concept', []))


def element_records(sd, expander, quirks):
    """(E records grouped by owner in first-seen order, B records) for one type."""
    elements = sd['snapshot']['element']
    parents = {e['path'].rsplit('.', 1)[0] for e in elements if '.' in e['path']}
    groups, bindings = {}, []
    for e in elements:
        path = e['path']
        if '.' not in path:
            continue  # the root element itself
        owner, name = path.rsplit('.', 1)
        codes = [type_code(t, path) for t in e.get('type', [])]
        if path in parents:
            if codes not in (['BackboneElement'], ['Element']):
                fail('%s has children but type %s' % (path, codes))
            types = '@' + path
        elif not codes:
            ref = e.get('contentReference', '')
            if not ref.startswith('#'):
                fail('%s has neither type nor local contentReference' % path)
            types = '@' + ref[1:]
        else:
            types = ','.join(codes)
        mx = '*' if e['max'] == '*' or int(e['max']) > 1 else str(int(e['max']))
        groups.setdefault(owner, []).append(
            ('E', owner, name, str(int(e['min'])), mx, types))
        binding = e.get('binding', {})
        if (binding.get('strength') == 'required' and 'code' in codes
                and not name.endswith('[x]') and binding.get('valueSet')):
            vs_url = binding['valueSet'].split('|', 1)[0]
            values = expander.expand(vs_url)
            if values is None:
                quirks.append('no B for %s: %s (%s)' % (
                    path, vs_url, expander.skipped.get(vs_url)))
            elif any(ch in v for v in values for ch in ',\t\n\r'):
                quirks.append('no B for %s: code contains separator' % path)
            else:
                bindings.append(('B', path, ','.join(values)))
    return [rec for recs in groups.values() for rec in recs], bindings


def sanity_check(records):
    def check(cond, msg):
        if not cond:
            fail('sanity check failed: ' + msg)
    kinds = {}
    for rec in records:
        kinds.setdefault(rec[0], []).append(rec)
    concrete = [r[1] for r in kinds['R'] if r[2] == '0']
    print('concrete resource types: %d' % len(concrete))
    check(len(concrete) >= 140, 'only %d concrete resource types' % len(concrete))
    types = {(r[1], r[2]): r[5] for r in kinds['E']}
    for name in ('name', 'gender', 'birthDate', 'contact'):
        check(('Patient', name) in types, 'Patient.%s missing' % name)
    obs = types.get(('Observation', 'value[x]'), '').split(',')
    check('Quantity' in obs and 'string' in obs, 'Observation.value[x] types %s' % obs)
    for owner, name, want in (('Questionnaire.item', 'item', '@Questionnaire.item'),
                              ('Bundle.entry', 'resource', 'Resource'),
                              ('Extension', 'url', 'uri')):
        check(types.get((owner, name)) == want, '%s.%s should be %s' % (owner, name, want))
    check(('Extension', 'value[x]') in types, 'Extension.value[x] missing')
    # every type code must be a known type, every @ref an owner with elements
    known = {r[1] for r in kinds['P'] + kinds['R'] + kinds['C']}
    owners = {r[1] for r in kinds['E']}
    for r in kinds['E']:
        for t in r[5].split(','):
            ok = t[1:] in owners if t.startswith('@') else t in known
            check(ok, 'unknown type %s on %s.%s' % (t, r[1], r[2]))
    return {k: len(v) for k, v in kinds.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--package', default=DEFAULT_PACKAGE, help='FHIR R4 core .tgz')
    ap.add_argument('--out', default=DEFAULT_OUT, help='output file')
    args = ap.parse_args()

    manifest, found = load_package(args.package)
    sds = found['StructureDefinition']
    expander = Expander(found['ValueSet'], found['CodeSystem'])
    by_kind = {k: sorted(n for n, sd in sds.items() if sd['kind'] == k) for k in KINDS}

    records, bindings, quirks = [], [], []
    for name in by_kind['primitive-type']:
        records.append(('P', name, 'boolean' if name == 'boolean' else
                        'number' if name in NUMBER_PRIMITIVES else 'string'))
    for kind, tag in (('resource', 'R'), ('complex-type', 'C')):
        for name in by_kind[kind]:
            records.append((tag, name, '1' if sds[name].get('abstract') else '0'))
    for name in by_kind['resource'] + by_kind['complex-type']:
        elems, binds = element_records(sds[name], expander, quirks)
        records.extend(elems)
        bindings.extend(binds)
    records.extend(bindings)
    for name in by_kind['resource']:
        summary = [e['path'].split('.', 1)[1]
                   for e in sds[name]['snapshot']['element']
                   if e['path'].count('.') == 1 and e.get('isSummary')]
        if summary:
            records.append(('S', name, ','.join(summary)))
    counts = sanity_check(records)

    header = ('# Generated from %s %s by scripts/gen-r4-tables.py.\n'
              '# Do not edit by hand; re-run the script instead.\n'
              % (manifest.get('name'), manifest.get('version')))
    text = header + ''.join('\t'.join(rec) + '\n' for rec in records)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8', newline='\n') as f:
        f.write(text)

    for q in quirks:
        print('note: ' + q, file=sys.stderr)
    print('wrote %s (%d bytes): %s' % (args.out, len(text.encode('utf-8')), ', '.join(
        '%s=%d' % (k, counts.get(k, 0)) for k in 'PRCEB')))


if __name__ == '__main__':
    main()
