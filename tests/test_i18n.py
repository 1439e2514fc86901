"""The message catalogue: complete in every language, formats cleanly, resolves locales sensibly."""

from __future__ import annotations

import ast
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.i18n import CATALOGUE, EN, CatalogueTranslator, resolve_locale, t
from bot.upstream.types import FailureKind
from tests.discord_double import DiscordDouble
from tests.fixtures.discord import BotHarness


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("locale", sorted(CATALOGUE))
def test_every_language_has_every_key_with_the_same_placeholders(locale: str) -> None:
    table = CATALOGUE[locale]
    assert sorted(set(EN) - set(table)) == [], f"missing in {locale}"
    assert sorted(set(table) - set(EN)) == [], f"only in {locale}"
    differing = [key for key, template in table.items() if placeholders(template) != placeholders(EN[key])]
    assert differing == [], f"placeholders differ from English in {locale}"


def test_command_descriptions_fit_discord_limits() -> None:
    for table in CATALOGUE.values():
        for key, text in table.items():
            if key.startswith("cmd."):
                assert 1 <= len(text) <= 100, key


def test_locale_resolution_falls_back_to_guild_then_english() -> None:
    assert resolve_locale(discord.Locale.chinese, discord.Locale.american_english) == "zh-CN"
    assert resolve_locale(discord.Locale.french, discord.Locale.chinese) == "zh-CN"
    assert resolve_locale(discord.Locale.french, None) == "en"
    assert resolve_locale("en-GB") == "en"


def test_t_formats_and_survives_missing_values() -> None:
    assert t("quota.concurrency_user", "zh-CN", running=2) == "你已有 2 个视频在生成中,请等待完成。"
    assert "{running}" in t("quota.concurrency_user", "en")  # a missing value doesn't raise
    assert t("no.such.key", "en") == "no.such.key"


async def test_translator_localizes_by_key() -> None:
    translator = CatalogueTranslator()
    text = discord.app_commands.locale_str("Generate a video from a prompt", key="cmd.sora.description")
    context = discord.app_commands.TranslationContext(
        discord.app_commands.TranslationContextLocation.command_description, None
    )
    assert await translator.translate(text, discord.Locale.chinese, context) == "根据提示词生成视频"
    assert await translator.translate(text, discord.Locale.american_english, context) is None
    assert not re.search(r"[A-Za-z]{4,}", CATALOGUE["zh-CN"]["cmd.sora.description"])


# --- every key the code uses exists in every language ------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "cogs").rglob("*.py")])
# Catalogue helpers, by the module that defines them: name -> position of the key among the positional arguments.
HELPERS: dict[str, dict[str, int]] = {
    "bot.i18n": {"t": 0, "cmd": 1},
    "cogs._quota_text": {"text": 0},
    "bot.validation": {"InvalidRequest": 0},
}
# Keys that arrive in a value the scan can't follow; each is looked up from keys found elsewhere.
FOLLOWED_ELSEWHERE = {
    "problem.key": "an InvalidRequest's key: the literal keys given to InvalidRequest(...) are checked",
}


@dataclass(frozen=True)
class KeyUse:
    where: str  # file:line
    key: str | None  # a literal key
    pattern: str | None = None  # an f-string key, as a regular expression
    values: frozenset[str] | None = None  # keyword values given (None: unknown, e.g. **values)
    text: str | None = None  # cmd(...)'s English text


@dataclass
class Module:
    path: Path
    tree: ast.Module
    helpers: dict[str, int] = field(default_factory=dict)  # local name -> key position
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)


def load_modules(root: Path, paths: list[Path]) -> list[Module]:
    modules = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = Module(path, tree)
        dotted = ".".join(path.relative_to(root).with_suffix("").parts)
        module.helpers.update(HELPERS.get(dotted, {}))
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                module.parents[child] = node
            if isinstance(node, ast.ImportFrom) and node.module in HELPERS:
                for alias in node.names:
                    if alias.name in HELPERS[node.module]:
                        module.helpers[alias.asname or alias.name] = HELPERS[node.module][alias.name]
        modules.append(module)
    return modules


def enclosing_function(module: Module, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    while node in module.parents:
        node = module.parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node
    return None


def key_expressions(
    modules: list[Module], module: Module, expression: ast.expr, depth: int = 0
) -> list[ast.expr | str]:
    """The literal expressions a key expression can take: constants, f-strings, or (unfollowable) its source."""
    if isinstance(expression, ast.Constant | ast.JoinedStr) or depth > 3:
        return [expression]
    if isinstance(expression, ast.IfExp):
        return [
            *key_expressions(modules, module, expression.body, depth),
            *key_expressions(modules, module, expression.orelse, depth),
        ]
    if ast.unparse(expression) in FOLLOWED_ELSEWHERE:
        return [ast.unparse(expression)]
    table = dict_looked_up(expression)
    if table is not None:  # TABLE[x] or TABLE.get(x): every value of a module-level dict literal
        for node in module.tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(target, ast.Name) and target.id == table for target in targets):
                    return [
                        found
                        for value in node.value.values
                        for found in key_expressions(modules, module, value, depth + 1)
                    ]
    if isinstance(expression, ast.Attribute):  # job.failure_key: whatever is assigned to a `.failure_key`
        found = attribute_values(modules, expression.attr, depth + 1)
        if found:
            return found
    if isinstance(expression, ast.Name):
        function = enclosing_function(module, expression)
        if function is not None:
            found: list[ast.expr | str] = []
            for node in ast.walk(function):
                if isinstance(node, ast.Assign) and any(
                    isinstance(target, ast.Name) and target.id == expression.id for target in node.targets
                ):
                    found += key_expressions(modules, module, node.value, depth + 1)
            parameters = [argument.arg for argument in function.args.args]
            if expression.id in parameters:
                found += parameter_values(modules, function.name, parameters, expression.id, depth + 1)
            if found:
                return found
    return [ast.unparse(expression)]


def dict_looked_up(expression: ast.expr) -> str | None:
    if isinstance(expression, ast.Subscript) and isinstance(expression.value, ast.Name):
        return expression.value.id
    if (
        isinstance(expression, ast.Call)
        and isinstance(expression.func, ast.Attribute)
        and expression.func.attr == "get"
        and isinstance(expression.func.value, ast.Name)
    ):
        return expression.func.value.id
    return None


def attribute_values(modules: list[Module], attribute: str, depth: int) -> list[ast.expr | str]:
    """Every value assigned to an attribute called `attribute` (or given as a class field's default)."""
    found: list[ast.expr | str] = []
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            named = any(
                (isinstance(target, ast.Attribute) and target.attr == attribute)
                or (isinstance(target, ast.Name) and target.id == attribute and isinstance(node, ast.AnnAssign))
                for target in targets
            )
            if named and not (isinstance(value, ast.Constant) and value.value is None):
                found += key_expressions(modules, module, value, depth)
    return found


def parameter_values(
    modules: list[Module], function_name: str, parameters: list[str], name: str, depth: int
) -> list[ast.expr | str]:
    """What the callers of `function_name` pass as its parameter `name`."""
    index = parameters.index(name) - (1 if parameters[:1] in (["self"], ["cls"]) else 0)
    found: list[ast.expr | str] = []
    for module in modules:
        for call in ast.walk(module.tree):
            if not isinstance(call, ast.Call):
                continue
            callee = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
            if callee != function_name:
                continue
            given = [keyword.value for keyword in call.keywords if keyword.arg == name]
            if not given and 0 <= index < len(call.args):
                given = [call.args[index]]
            for value in given:
                found += key_expressions(modules, module, value, depth)
    return found


def key_uses(root: Path = ROOT, paths: list[Path] = SOURCES) -> tuple[list[KeyUse], list[str]]:
    """Every catalogue key used in `paths` (bot/ and cogs/), and the key expressions the scan could not follow."""
    modules = load_modules(root, paths)
    uses: list[KeyUse] = []
    unfollowed: list[str] = []
    for module in modules:
        for call in ast.walk(module.tree):
            if not isinstance(call, ast.Call):
                continue
            if isinstance(call.func, ast.Name) and call.func.id in module.helpers:
                position: int | None = module.helpers[call.func.id]
            elif isinstance(call.func, ast.Attribute | ast.Name) and ast.unparse(call.func).endswith("locale_str"):
                position = None
            else:
                continue
            key_argument = next((keyword.value for keyword in call.keywords if keyword.arg == "key"), None)
            if key_argument is None and position is not None and len(call.args) > position:
                key_argument = call.args[position]
            if key_argument is None:
                continue
            where = f"{module.path.relative_to(root)}:{call.lineno}"
            spread = any(keyword.arg is None for keyword in call.keywords)
            values = None if spread else frozenset(k.arg for k in call.keywords if k.arg and k.arg != "key")
            english = call.args[0].value if position == 1 and isinstance(call.args[0], ast.Constant) else None
            for expression in key_expressions(modules, module, key_argument):
                if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
                    uses.append(KeyUse(where, expression.value, values=values, text=english))
                elif isinstance(expression, ast.JoinedStr):
                    parts = [
                        re.escape(part.value) if isinstance(part, ast.Constant) else r"[^.]+"
                        for part in expression.values
                    ]
                    uses.append(KeyUse(where, None, pattern="".join(parts)))
                elif str(expression) not in FOLLOWED_ELSEWHERE and position is not None:
                    unfollowed.append(f"{where}: {expression}")
    return uses, unfollowed


USES, UNFOLLOWED = key_uses()


SAMPLE_MODULE = """
from bot.i18n import cmd, t
from bot.validation import InvalidRequest
from cogs._quota_text import text as words

ANSWERS = {1: "sample.from_dict"}


class Job:
    failure_key: str | None = None


def answer(job: Job, flag: bool, outcome: int, kind: str) -> list[object]:
    key = "sample.assigned" if flag else "sample.assigned_other"
    job.failure_key = "sample.attribute"
    return [
        t("sample.literal", "en", value=1),
        words("sample.other_helper"),
        cmd("Text", "sample.command"),
        InvalidRequest("sample.invalid", limit=3),
        t(key),
        t(ANSWERS.get(outcome)),
        t(job.failure_key),
        t(f"sample.{kind}"),
        reply(job, "sample.parameter"),
        t(job.unknowable),
    ]


def reply(job: Job, key: str) -> str:
    return t(key)
"""


def test_the_scan_follows_keys_through_helpers_variables_parameters_dicts_and_attributes(tmp_path: Path) -> None:
    (tmp_path / "bot").mkdir()
    sample = tmp_path / "bot" / "sample.py"
    sample.write_text(SAMPLE_MODULE, encoding="utf-8")
    uses, unfollowed = key_uses(tmp_path, [sample])
    assert {use.key for use in uses} - {None} == {
        "sample.literal",
        "sample.other_helper",
        "sample.command",
        "sample.invalid",
        "sample.assigned",
        "sample.assigned_other",
        "sample.from_dict",
        "sample.attribute",
        "sample.parameter",
    }
    assert [use.pattern for use in uses if use.pattern] == [r"sample\.[^.]+"]
    literal_use = next(use for use in uses if use.key == "sample.literal")
    assert literal_use.values == {"value"} and literal_use.where == "bot/sample.py:17"
    assert next(use for use in uses if use.key == "sample.command").text == "Text"
    assert unfollowed == ["bot/sample.py:26: job.unknowable"]


def test_the_scan_follows_every_key_in_the_code() -> None:
    assert len(USES) > 100
    assert UNFOLLOWED == [], "keys the scan can't follow (make them literal, or explain in FOLLOWED_ELSEWHERE)"


@pytest.mark.parametrize("locale", sorted(CATALOGUE))
def test_every_key_used_in_code_exists(locale: str) -> None:
    table = CATALOGUE[locale]
    missing = sorted({f"{use.key} ({use.where})" for use in USES if use.key is not None and use.key not in table})
    assert not missing, f"{locale} lacks {len(missing)} key(s) used in code: " + ", ".join(missing)
    unmatched = sorted(
        f"{use.pattern} ({use.where})"
        for use in USES
        if use.pattern is not None and not any(re.fullmatch(use.pattern, key) for key in table)
    )
    assert not unmatched, f"{locale} has no key for: " + ", ".join(unmatched)


def test_every_failure_kind_has_a_sentence() -> None:
    for locale, table in CATALOGUE.items():
        assert [kind for kind in FailureKind if f"failed.{kind}" not in table] == [], locale


def test_calls_give_every_value_their_sentence_needs() -> None:
    problems = sorted(
        f"{use.key} needs {sorted(placeholders(EN[use.key]) - use.values)} ({use.where})"
        for use in USES
        if use.key in EN and use.values is not None and not placeholders(EN[use.key]) <= use.values
    )
    assert not problems, "; ".join(problems)


def test_command_texts_in_code_match_the_catalogue() -> None:
    differing = sorted(
        f"{use.key} ({use.where})" for use in USES if use.text is not None and EN.get(use.key or "") != use.text
    )
    assert not differing, "cmd(text, key): text differs from the English catalogue: " + ", ".join(differing)


def test_no_key_is_written_twice() -> None:
    """A repeated key in a dict literal silently replaces the first one."""
    tree = ast.parse((ROOT / "bot" / "i18n.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [key.value for key in node.keys if isinstance(key, ast.Constant)]
            assert sorted({key for key in keys if keys.count(key) > 1}) == []


@pytest.mark.parametrize("locale", sorted(CATALOGUE))
def test_every_template_formats(locale: str) -> None:
    """Formatting every sentence with numbers for its values works (`{hour:02d}` needs a number)."""
    for template in CATALOGUE[locale].values():
        template.format(**dict.fromkeys(placeholders(template), 7))


# --- failed slash commands are answered in the member's language --------------------------------------------------


class RefusedHere(app_commands.CheckFailure):
    """A check of ours: its text is already the member's sentence."""


class Failing(commands.Cog):
    """Commands that fail each way a slash command can."""

    @app_commands.command(name="broken", description="Raises")
    async def broken(self, interaction: discord.Interaction[SoraBot]) -> None:
        raise RuntimeError("a bug")

    @app_commands.command(name="gated", description="Its check fails")
    @app_commands.check(lambda interaction: False)
    async def gated(self, interaction: discord.Interaction[SoraBot]) -> None:
        raise AssertionError("the check lets nobody in")

    @app_commands.command(name="ours", description="Our own check fails")
    async def ours(self, interaction: discord.Interaction[SoraBot]) -> None:
        raise RefusedHere(t("error.guild_only", "zh-CN"))

    @app_commands.command(name="busy", description="One use a minute")
    # Keyed by the bot instance too: the cooldown lives on the command object, shared by every test's bot.
    @app_commands.checks.dynamic_cooldown(
        lambda interaction: app_commands.Cooldown(1, 60.0), key=lambda i: (i.client.jobs.owner, i.user.id)
    )
    async def busy(self, interaction: discord.Interaction[SoraBot]) -> None:
        await interaction.response.send_message("done", ephemeral=True)

    @app_commands.command(name="managers", description="Manage Server only")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def managers(self, interaction: discord.Interaction[SoraBot]) -> None:
        raise AssertionError("the member can't manage the server")


@pytest.mark.parametrize("discord_locale", ["zh-CN", "en-US"])
async def test_failed_commands_are_answered_in_the_members_language(
    bot_harness: BotHarness, discord_double: DiscordDouble, discord_locale: str
) -> None:
    locale = resolve_locale(discord_locale)
    await bot_harness.start(setup=lambda bot: bot.add_cog(Failing()))
    member = discord_double.add_member(name="mei")

    async def answer(command: str) -> tuple[str, int]:
        handle = await discord_double.slash(command, user=member, locale=discord_locale)
        message = await handle.wait_original()
        assert message.ephemeral, message.content
        return message.content, handle.id

    content, interaction_id = await answer("broken")
    assert content == t("error.command_failed", locale, reference=interaction_id)
    assert (await answer("gated"))[0] == t("error.check_failed", locale)
    assert (await answer("ours"))[0] == t("error.guild_only", "zh-CN")
    assert (await answer("busy"))[0] == "done"
    assert (await answer("busy"))[0] == t("error.cooldown", locale, seconds=60)
    manage_server = t("permission.manage_guild", locale)
    assert (await answer("managers"))[0] == t("error.member_missing_permissions", locale, permissions=manage_server)
