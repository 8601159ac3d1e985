"""Validates docs/openapi.json against the OpenAPI specification
(openapi-spec-validator, PyPI). Exits non-zero with each error on failure."""
import sys

from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator
from openapi_spec_validator.readers import read_from_filename

path = sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json"
document, _ = read_from_filename(path)
version = str(document.get("openapi", ""))
validator = (OpenAPIV31SpecValidator if version.startswith("3.1") else OpenAPIV30SpecValidator)(document)
errors = list(validator.iter_errors())
for error in errors:
    print(f"{path}: {error.message}", file=sys.stderr)
print(f"{path}: OpenAPI {version}, {len(errors)} errors")
sys.exit(1 if errors else 0)
