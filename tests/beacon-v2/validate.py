#!/usr/bin/env python3
"""Validates a JSON document (stdin) against one of the Beacon v2 framework's
schemas in this directory, resolving the schemas' relative references to the
files beside them. Prints every error and exits 1 if there are any.

Usage: validate.py framework/json/responses/beaconCountResponse.json < response.json
"""
import json
import pathlib
import sys

import jsonschema

here = pathlib.Path(__file__).resolve().parent
path = (here / sys.argv[1]).resolve()
schema = json.loads(path.read_text())
instance = json.load(sys.stdin)

try:
    # jsonschema 4.18 and later: references through a registry.
    from referencing import Registry, Resource

    def retrieve(uri):
        return Resource.from_contents(json.loads(pathlib.Path(uri.removeprefix("file://")).read_text()))

    schema = dict(schema, **{"$id": path.as_uri()})
    validator = jsonschema.Draft202012Validator(schema, registry=Registry(retrieve=retrieve))
except ImportError:
    # Older releases (Debian's): a resolver with the file's URI as its base.
    resolver = jsonschema.RefResolver(base_uri=path.as_uri(), referrer=schema)
    validator = jsonschema.Draft202012Validator(schema, resolver=resolver)

errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
for e in errors:
    print(f"{e.message} at /{'/'.join(str(p) for p in e.absolute_path)}")
sys.exit(1 if errors else 0)
