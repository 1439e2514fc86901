"""Request bodies checked against Discord's public OpenAPI 3.1 spec with jsonschema.

`payload_json` of multipart bodies is decoded by the caller and checked against the route's JSON schema.
The spec is loaded once per process. Where the spec is stricter than Discord itself (documented below), the
loaded copy is relaxed so that the check matches what Discord accepts; everything else is taken as is.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:discord:openapi"
ENV_VAR = "DISCORD_OPENAPI_SPEC"


def default_spec_path() -> Path:
    """`$DISCORD_OPENAPI_SPEC`, else `../shared/discord-api-spec/openapi.json` next to the repository."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "discord-api-spec" / "openapi.json"


# Where the spec is stricter than Discord: Discord takes snowflakes as JSON integers as well as strings
# (discord.py sends `attachments[].id` as the integer index of the file part), and permission bitsets as
# decimal strings (the docs type `default_member_permissions` as "?string"; discord.py sends a string).
# A message's `nonce` is left to `rules.check_nonce`, which answers with Discord's own NONCE_TYPE_* codes.
_SNOWFLAKE = {"anyOf": [{"type": "string", "pattern": "^(0|[1-9][0-9]*)$"}, {"type": "integer", "minimum": 0}]}
_PERMISSIONS = {"anyOf": [{"type": ["integer", "null"], "minimum": 0}, {"type": "string", "pattern": "^[0-9]+$"}]}


def _relax(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    schemas = spec["components"]["schemas"]
    schemas["SnowflakeType"] = _SNOWFLAKE

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict) and "default_member_permissions" in props:
                props["default_member_permissions"] = _PERMISSIONS
            if isinstance(props, dict) and "enforce_nonce" in props:  # request bodies only, not responses
                props["nonce"] = {}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schemas)
    return spec


@dataclass(frozen=True)
class SpecIssue:
    path: tuple[str | int, ...]
    keyword: str
    message: str

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.path) or "<body>"
        return f"{where}: {self.message}"


class OpenAPISpec:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.raw = spec
        self.spec = _relax(spec)
        self.registry: Registry = Registry().with_resource(
            SPEC_URI, Resource.from_contents(self.spec, default_specification=DRAFT202012)
        )
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}

    @classmethod
    @functools.cache
    def load(cls, path: str | None = None) -> OpenAPISpec:
        file = Path(path) if path else default_spec_path()
        if not file.is_file():
            raise FileNotFoundError(
                f"Discord OpenAPI spec not found at {file}; set {ENV_VAR} to the path of openapi.json"
            )
        return cls(json.loads(file.read_text(encoding="utf-8")))

    def has_operation(self, method: str, template: str) -> bool:
        return method.lower() in self.spec["paths"].get(template, {})

    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        return self.spec["paths"].get(template, {}).get(method.lower())

    def _validator(self, method: str, template: str) -> Draft202012Validator | None:
        key = (method.lower(), template)
        if key not in self._validators:
            validator = None
            operation = self.operation(method, template)
            content = ((operation or {}).get("requestBody") or {}).get("content") or {}
            if "application/json" in content:
                pointer = "/".join(
                    part.replace("~", "~0").replace("/", "~1")
                    for part in ("paths", template, method.lower(), "requestBody", "content", "application/json")
                )
                schema = {"$ref": f"{SPEC_URI}#/{pointer}/schema"}
                validator = Draft202012Validator(schema, registry=self.registry)
            self._validators[key] = validator
        return self._validators[key]

    def validate(self, method: str, template: str, body: Any) -> list[SpecIssue]:
        """Issues with `body` for this operation; [] when valid or when the operation takes no JSON body."""
        validator = self._validator(method, template)
        if validator is None:
            return []
        issues = []
        for error in validator.iter_errors(body):
            for leaf in _leaves(error):
                issues.append(SpecIssue(tuple(leaf.absolute_path), str(leaf.validator), _message(leaf)))
        return issues


def _leaves(error: ValidationError) -> list[ValidationError]:
    """For anyOf/oneOf failures, the errors of the branch that matched best (its errors lie deepest)."""
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0] if sub.schema_path else None, []).append(sub)

    candidates = [[leaf for sub in errors for leaf in _leaves(sub)] for errors in branches.values()]

    def score(leaves: list[ValidationError]) -> tuple[int, int]:
        return (min(len(e.absolute_path) for e in leaves), -len(leaves))

    best = max(candidates, key=score)
    if score(best)[0] <= len(error.absolute_path) and all(e.validator in ("type", "const", "enum") for e in best):
        # Every branch failed on its basic shape: the union's own summary reads better.
        return [error]
    return best


def _message(error: ValidationError) -> str:
    limit = error.validator_value
    match error.validator:
        case "maxLength" | "maxItems":
            return f"Must be {limit} or fewer in length."
        case "minLength" | "minItems":
            return f"Must be {limit} or more in length."
        case "required":
            return "This field is required"
        case "maximum":
            return f"int value should be less than or equal to {limit}."
        case "minimum":
            return f"int value should be greater than or equal to {limit}."
    return reprlib.repr(error.message) if len(error.message) > 300 else error.message


__all__ = ["OpenAPISpec", "SpecIssue", "default_spec_path"]
