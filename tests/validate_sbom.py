#!/usr/bin/env python3
"""Validate kiln's SBOMs with the reference validators.

    tests/validate_sbom.py FILE...

Each FILE is an SPDX 2.3 JSON document (validated with spdx-tools, exactly
what `pyspdxtools -i FILE` does) or a CycloneDX 1.6 JSON BOM (validated with
cyclonedx-python-lib's JsonStrictValidator against the official 1.6 schema);
the format is read from the document itself. On top of the validators it
checks what kiln promises and the validators do not: the declared versions,
a CONTAINER package / container component for the image, and that every
Debian package carries a pkg:deb purl (a Go module a pkg:golang one, a wheel a pkg:pypi one, a crate a pkg:cargo one).

Prints every problem and exits 1 if there is one, 2 if the validators are not
installed (pip install spdx-tools 'cyclonedx-python-lib[json-validation]').
"""

import json
import sys


def validate_spdx(path, doc):
    try:
        from spdx_tools.spdx.parser.error import SPDXParsingError
        from spdx_tools.spdx.parser.parse_anything import parse_file
        from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    except ImportError as e:
        print(f"{path}: spdx-tools is not installed ({e})", file=sys.stderr)
        sys.exit(2)
    problems = []
    if doc.get("spdxVersion") != "SPDX-2.3":
        problems.append(f"spdxVersion is {doc.get('spdxVersion')!r}, not 'SPDX-2.3'")
    try:
        parsed = parse_file(path)
    except SPDXParsingError as e:
        return problems + [f"spdx-tools cannot parse it: {m}" for m in e.get_messages()]
    for m in validate_full_spdx_document(parsed, "SPDX-2.3"):
        problems.append(f"spdx-tools: {m.validation_message} (in {m.context.spdx_id or m.context.parent_id})")
    packages = doc.get("packages", [])
    if not any(p.get("primaryPackagePurpose") == "CONTAINER" for p in packages):
        problems.append("no package with primaryPackagePurpose CONTAINER (the image)")
    for p in packages:
        if p.get("SPDXID", "").startswith("SPDXRef-Package-deb-"):
            purls = [r["referenceLocator"] for r in p.get("externalRefs", []) if r.get("referenceType") == "purl"]
            if not any(u.startswith("pkg:deb/debian/") for u in purls):
                problems.append(f"package {p.get('name')} has no pkg:deb purl")
    return problems


def validate_cdx(path, doc, text):
    try:
        from cyclonedx.schema import SchemaVersion
        from cyclonedx.validation.json import JsonStrictValidator
    except ImportError as e:
        print(f"{path}: cyclonedx-python-lib is not installed ({e})", file=sys.stderr)
        sys.exit(2)
    problems = []
    if doc.get("specVersion") != "1.6":
        problems.append(f"specVersion is {doc.get('specVersion')!r}, not '1.6'")
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    try:
        errors = validator.validate_str(text, all_errors=True)
    except TypeError:
        # cyclonedx-python-lib before 9 reports the first error only.
        errors = validator.validate_str(text)
        errors = [errors] if errors else []
    for e in errors or []:
        problems.append(f"CycloneDX 1.6 schema: {e}")
    if doc.get("metadata", {}).get("component", {}).get("type") != "container":
        problems.append("metadata.component is not a container (the image)")
    if not str(doc.get("serialNumber", "")).startswith("urn:uuid:"):
        problems.append("serialNumber is not a urn:uuid")
    # Debian packages and the modules an application was built from are
    # libraries; each carries the purl of its ecosystem.
    for c in doc.get("components", []):
        if c.get("type") == "library" and not str(c.get("purl", "")).startswith(("pkg:deb/debian/", "pkg:golang/", "pkg:pypi/", "pkg:cargo/")):
            problems.append(f"component {c.get('name')} has no pkg:deb, pkg:golang, pkg:pypi or pkg:cargo purl")
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = False
    for path in argv[1:]:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            doc = json.loads(text)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read JSON: {e}")
            failed = True
            continue
        if "spdxVersion" in doc:
            kind, problems = "SPDX", validate_spdx(path, doc)
        elif doc.get("bomFormat") == "CycloneDX":
            kind, problems = "CycloneDX", validate_cdx(path, doc, text)
        else:
            kind, problems = "?", ["neither an SPDX document nor a CycloneDX BOM"]
        for p in problems:
            print(f"{path}: {p}")
        if problems:
            failed = True
        else:
            print(f"{path}: valid {kind}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
