"""Discord's documented limits that the OpenAPI spec does not express (or expresses more loosely).

Each check returns `Issue`s with a path into the body, a Discord error code and message; the REST layer turns
them into 400 50035 Invalid Form Body with Discord's error tree, merged with the spec's issues.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .models import MessageFlag

CONTENT_LIMIT = 2000
EMBEDS_LIMIT = 10
EMBED_TOTAL_LIMIT = 6000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELDS_LIMIT = 25
EMBED_FIELD_NAME_LIMIT = 256
EMBED_FIELD_VALUE_LIMIT = 1024
EMBED_FOOTER_LIMIT = 2048
EMBED_AUTHOR_LIMIT = 256
ACTION_ROWS_LIMIT = 5
ROW_COMPONENTS_LIMIT = 5
V2_COMPONENTS_LIMIT = 40
BUTTON_LABEL_LIMIT = 80
CUSTOM_ID_LIMIT = 100
MODAL_TITLE_LIMIT = 45
MODAL_COMPONENTS_LIMIT = 5
TEXT_INPUT_LIMIT = 4000
TEXT_INPUT_LABEL_LIMIT = 45
PLACEHOLDER_LIMIT = 100
COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$", re.UNICODE)
COMMAND_DESCRIPTION_LIMIT = 100
OPTIONS_LIMIT = 25
CHOICES_LIMIT = 25
CHOICE_NAME_LIMIT = 100
CHOICE_VALUE_LIMIT = 100
NONCE_LENGTH_LIMIT = 25
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Path = tuple[str | int, ...]

KEYWORD_CODES = {
    "maxLength": "BASE_TYPE_MAX_LENGTH",
    "minLength": "BASE_TYPE_MIN_LENGTH",
    "maxItems": "BASE_TYPE_BAD_LENGTH",
    "minItems": "BASE_TYPE_BAD_LENGTH",
    "required": "BASE_TYPE_REQUIRED",
    "type": "BASE_TYPE_INVALID",
    "enum": "BASE_TYPE_CHOICES",
    "maximum": "NUMBER_TYPE_MAX",
    "minimum": "NUMBER_TYPE_MIN",
}


@dataclass(frozen=True)
class Issue:
    path: Path
    keyword: str  # Discord's error code inside the tree, e.g. BASE_TYPE_MAX_LENGTH
    message: str

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.path) or "<body>"
        return f"{where}: {self.message}"


def _too_long(path: Path, value: Any, limit: int) -> list[Issue]:
    if isinstance(value, str) and len(value) > limit:
        return [Issue(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")]
    return []


def _length_between(path: Path, value: Any, low: int, high: int) -> list[Issue]:
    if isinstance(value, (str, list)) and not low <= len(value) <= high:
        return [Issue(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")]
    return []


def _text(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


# --- messages ------------------------------------------------------------------------------------------------


def check_message(body: dict[str, Any], *, base: Path = ()) -> list[Issue]:
    """Limits on a message body: channel create/edit, webhook execute/edit, interaction callback `data`."""
    issues = _too_long((*base, "content"), body.get("content"), CONTENT_LIMIT)
    embeds = body.get("embeds")
    if isinstance(embeds, list):
        issues += check_embeds(embeds, base=(*base, "embeds"))
    components = body.get("components")
    if isinstance(components, list):
        v2 = bool((body.get("flags") or 0) & MessageFlag.IS_COMPONENTS_V2)
        issues += check_components(components, base=(*base, "components"), v2=v2)
    return issues


def check_embeds(embeds: list[Any], *, base: Path) -> list[Issue]:
    issues = []
    if len(embeds) > EMBEDS_LIMIT:
        issues.append(Issue(base, "BASE_TYPE_MAX_LENGTH", f"Must be {EMBEDS_LIMIT} or fewer in length."))
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            continue
        at = (*base, index)
        issues += _too_long((*at, "title"), embed.get("title"), EMBED_TITLE_LIMIT)
        issues += _too_long((*at, "description"), embed.get("description"), EMBED_DESCRIPTION_LIMIT)
        total += _text(embed.get("title")) + _text(embed.get("description"))
        footer = embed.get("footer") if isinstance(embed.get("footer"), dict) else {}
        author = embed.get("author") if isinstance(embed.get("author"), dict) else {}
        issues += _too_long((*at, "footer", "text"), footer.get("text"), EMBED_FOOTER_LIMIT)
        issues += _too_long((*at, "author", "name"), author.get("name"), EMBED_AUTHOR_LIMIT)
        total += _text(footer.get("text")) + _text(author.get("name"))
        fields = embed.get("fields") or []
        if len(fields) > EMBED_FIELDS_LIMIT:
            issues.append(
                Issue((*at, "fields"), "BASE_TYPE_MAX_LENGTH", f"Must be {EMBED_FIELDS_LIMIT} or fewer in length.")
            )
        for f_index, item in enumerate(fields):
            if isinstance(item, dict):
                issues += _too_long((*at, "fields", f_index, "name"), item.get("name"), EMBED_FIELD_NAME_LIMIT)
                issues += _too_long((*at, "fields", f_index, "value"), item.get("value"), EMBED_FIELD_VALUE_LIMIT)
                total += _text(item.get("name")) + _text(item.get("value"))
    if total > EMBED_TOTAL_LIMIT:
        issues.append(Issue(base, "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {EMBED_TOTAL_LIMIT}"))
    return issues


def check_components(components: list[Any], *, base: Path, v2: bool) -> list[Issue]:
    issues: list[Issue] = []
    custom_ids: dict[str, Path] = {}

    def note_custom_id(component: dict[str, Any], at: Path) -> None:
        custom_id = component.get("custom_id")
        if custom_id is None:
            return
        issues.extend(_too_long((*at, "custom_id"), custom_id, CUSTOM_ID_LIMIT))
        if custom_id in custom_ids:
            issues.append(
                Issue((*at, "custom_id"), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
            )
        custom_ids[custom_id] = at

    if v2:
        count = 0

        def walk(items: Iterable[Any], at: Path) -> None:
            nonlocal count
            for index, component in enumerate(items):
                if not isinstance(component, dict):
                    continue
                count += 1
                note_custom_id(component, (*at, index))
                walk(component.get("components") or [], (*at, index, "components"))
                if isinstance(component.get("accessory"), dict):
                    count += 1
                    note_custom_id(component["accessory"], (*at, index, "accessory"))

        walk(components, base)
        if count > V2_COMPONENTS_LIMIT:
            issues.append(Issue(base, "BASE_TYPE_MAX_LENGTH", f"Must be {V2_COMPONENTS_LIMIT} or fewer in length."))
        return issues

    issues += _length_between(base, components, 0, ACTION_ROWS_LIMIT)
    for index, row in enumerate(components):
        at = (*base, index)
        if not isinstance(row, dict):
            continue
        if row.get("type") != 1:
            issues.append(Issue((*at, "type"), "UNION_TYPE_CHOICES", "Top-level components must be action rows"))
            continue
        children = row.get("components") or []
        issues += _length_between((*at, "components"), children, 1, ROW_COMPONENTS_LIMIT)
        selects = [c for c in children if isinstance(c, dict) and c.get("type") in (3, 5, 6, 7, 8)]
        if selects and len(children) > 1:
            issues.append(
                Issue(
                    (*at, "components"),
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
            )
        for c_index, child in enumerate(children):
            if not isinstance(child, dict):
                continue
            issues += _too_long((*at, "components", c_index, "label"), child.get("label"), BUTTON_LABEL_LIMIT)
            note_custom_id(child, (*at, "components", c_index))
    return issues


def check_nonce(body: dict[str, Any]) -> list[Issue]:
    """`nonce` on a channel message create: a string of at most 25 characters or a 64-bit integer.

    Discord reports these with its own codes (not the generic BASE_TYPE_* ones); null or absent is fine.
    """
    nonce = body.get("nonce")
    if nonce is None:
        return []
    if isinstance(nonce, str):
        if len(nonce) > NONCE_LENGTH_LIMIT:
            return [Issue(("nonce",), "NONCE_TYPE_TOO_LONG", f"Must be {NONCE_LENGTH_LIMIT} or fewer characters long.")]
        return []
    if isinstance(nonce, int) and not isinstance(nonce, bool):
        if nonce > INT64_MAX:
            return [Issue(("nonce",), "NUMBER_TYPE_MAX", f"int value should be less than or equal to {INT64_MAX}.")]
        if nonce < INT64_MIN:
            return [Issue(("nonce",), "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {INT64_MIN}.")]
        return []
    return [Issue(("nonce",), "NONCE_TYPE_INVALID_TYPE", "This field must be a string or integer.")]


def is_empty_message(body: dict[str, Any], *, files: int) -> bool:
    return not (
        body.get("content")
        or body.get("embeds")
        or body.get("components")
        or body.get("sticker_ids")
        or body.get("poll")
        or files
    )


# --- modals ---------------------------------------------------------------------------------------------------


def text_inputs(components: list[Any]) -> list[dict[str, Any]]:
    """Text inputs of a modal, whether laid out in action rows (type 1) or labels (type 18)."""
    found: list[dict[str, Any]] = []
    for component in components:
        if not isinstance(component, dict):
            continue
        if component.get("type") == 4:
            found.append(component)
        inner = list(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            inner.append(component["component"])
        found.extend(text_inputs(inner))
    return found


def check_modal(data: dict[str, Any], *, base: Path = ("data",)) -> list[Issue]:
    issues = _length_between((*base, "title"), data.get("title"), 1, MODAL_TITLE_LIMIT)
    issues += _length_between((*base, "custom_id"), data.get("custom_id"), 1, CUSTOM_ID_LIMIT)
    components = data.get("components") or []
    issues += _length_between((*base, "components"), components, 1, MODAL_COMPONENTS_LIMIT)
    for index, component in enumerate(components):
        if not isinstance(component, dict):
            continue
        at: Path = (*base, "components", index)
        inputs = (
            [((*at, "components", i), c) for i, c in enumerate(component.get("components") or [])]
            if component.get("type") == 1
            else [((*at, "component"), component.get("component"))]
            if component.get("type") == 18
            else []
        )
        if component.get("type") == 18:
            issues += _too_long((*at, "label"), component.get("label"), TEXT_INPUT_LABEL_LIMIT)
        for where, item in inputs:
            if not isinstance(item, dict) or item.get("type") != 4:
                continue
            issues += _too_long((*where, "value"), item.get("value"), TEXT_INPUT_LIMIT)
            issues += _too_long((*where, "label"), item.get("label"), TEXT_INPUT_LABEL_LIMIT)
            issues += _too_long((*where, "placeholder"), item.get("placeholder"), PLACEHOLDER_LIMIT)
            for key, low in (("min_length", 0), ("max_length", 1)):
                value = item.get(key)
                if isinstance(value, int) and not low <= value <= TEXT_INPUT_LIMIT:
                    issues.append(
                        Issue(
                            (*where, key),
                            "NUMBER_TYPE_MAX",
                            f"int value should be less than or equal to {TEXT_INPUT_LIMIT}.",
                        )
                    )
    return issues


# --- application commands -------------------------------------------------------------------------------------


def check_commands(commands: list[Any]) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        if not isinstance(command, dict):
            continue
        kind = command.get("type") or 1
        key = (kind, str(command.get("name")))
        if key in seen:
            issues.append(
                Issue(
                    (index, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
                )
            )
        seen.add(key)
        issues += check_command(command, base=(index,))
    return issues


def check_command(command: dict[str, Any], *, base: Path = ()) -> list[Issue]:
    kind = command.get("type") or 1
    issues: list[Issue] = []
    name = command.get("name")
    if kind == 1 and isinstance(name, str) and (not COMMAND_NAME.match(name) or name != name.lower()):
        issues.append(Issue((*base, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
    if kind == 1:
        issues += _length_between(
            (*base, "description"), command.get("description") or "", 1, COMMAND_DESCRIPTION_LIMIT
        )
    for locale, text in (command.get("description_localizations") or {}).items():
        issues += _too_long((*base, "description_localizations", locale), text, COMMAND_DESCRIPTION_LIMIT)
    issues += _check_options(command.get("options") or [], base=(*base, "options"))
    return issues


def _check_options(options: list[Any], *, base: Path) -> list[Issue]:
    issues: list[Issue] = []
    if len(options) > OPTIONS_LIMIT:
        issues.append(Issue(base, "BASE_TYPE_MAX_LENGTH", f"Must be {OPTIONS_LIMIT} or fewer in length."))
    names: set[str] = set()
    optional_seen = False
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            continue
        at = (*base, index)
        name = option.get("name")
        if isinstance(name, str) and (not COMMAND_NAME.match(name) or name != name.lower()):
            issues.append(Issue((*at, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
        if name in names:
            issues.append(
                Issue((*at, "name"), "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME", "Option names must be unique")
            )
        names.add(str(name))
        issues += _length_between((*at, "description"), option.get("description") or "", 1, COMMAND_DESCRIPTION_LIMIT)
        for locale, text in (option.get("description_localizations") or {}).items():
            issues += _too_long((*at, "description_localizations", locale), text, COMMAND_DESCRIPTION_LIMIT)
        if option.get("type") in (1, 2):
            issues += _check_options(option.get("options") or [], base=(*at, "options"))
            continue
        if option.get("required"):
            if optional_seen:
                issues.append(
                    Issue(
                        (*at, "required"),
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
                )
        else:
            optional_seen = True
        choices = option.get("choices") or []
        if len(choices) > CHOICES_LIMIT:
            issues.append(
                Issue((*at, "choices"), "BASE_TYPE_MAX_LENGTH", f"Must be {CHOICES_LIMIT} or fewer in length.")
            )
        for c_index, choice in enumerate(choices):
            if isinstance(choice, dict):
                issues += _length_between((*at, "choices", c_index, "name"), choice.get("name"), 1, CHOICE_NAME_LIMIT)
                issues += _too_long((*at, "choices", c_index, "value"), choice.get("value"), CHOICE_VALUE_LIMIT)
    return issues


def issues_to_tree(issues: Iterable[Any]) -> dict[str, Any]:
    """Discord's error tree from issues with `.path`, `.keyword` (or code) and `.message`; duplicates dropped."""
    tree: dict[str, Any] = {}
    seen: set[tuple[Path, str]] = set()
    for issue in issues:
        code = KEYWORD_CODES.get(issue.keyword, issue.keyword if issue.keyword.isupper() else "BASE_TYPE_INVALID")
        key = (tuple(issue.path), issue.message)
        if key in seen:
            continue
        seen.add(key)
        node = tree
        for part in issue.path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": issue.message})
    return tree


__all__ = [
    "CONTENT_LIMIT",
    "Issue",
    "check_command",
    "check_commands",
    "check_components",
    "check_embeds",
    "check_message",
    "check_modal",
    "check_nonce",
    "is_empty_message",
    "issues_to_tree",
    "text_inputs",
]
