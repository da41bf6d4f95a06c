"""The documentation stays true to the code, cheaply: every `kubesim ...` command shown in docs/ is one
the CLI accepts (the subcommand exists and click parses its options and arguments), every pytest option
of the plugin named (`--kubesim-*`, or an ini key written as `kubesim_name = ...` in backticks) exists,
and every relative link in docs/ and the README resolves.

Commands are taken from ```console blocks (lines starting with `$ `), ```sh blocks (every line) and
inline code that starts with `kubesim `. Shell around them (pipes, `$(...)`, `;`, heredocs) is cut
away; variables like `$VIP:80` are plain words to click, which is all this needs."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from kubesim import cli, pytest_plugin

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# The commands whose arguments are another program's: only kubesim's own options are checked.
PASSTHROUGH = {"kubectl", "proxy"}
# shlex (punctuation_chars) gives runs of these as one token: `);`, `|`, `<<`...
SHELL_PUNCTUATION = set("();<>|&")
FENCE = re.compile(r"^\s*```(\S*)\s*$")
INLINE = re.compile(r"`(kubesim [^`]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Shown:
    page: Path
    line: int
    text: str
    exact: bool  # a command to run as written (a console or sh line), not a usage pattern in prose

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}: {self.text}"


def _commands(page: Path) -> list[Shown]:
    found: list[Shown] = []
    language: str | None = None
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language == "console" and line.startswith("$ "):
            found.append(Shown(page, number, line[2:], exact=True))
        elif language in ("sh", "bash", "shell") and line.strip() and not line.lstrip().startswith("#"):
            found.append(Shown(page, number, line.split(" #")[0], exact=True))
        elif language is not None and line.lstrip().startswith("kubesim "):
            found.append(Shown(page, number, line.strip(), exact=False))  # a synopsis in a plain block
        elif language is None:
            found += [Shown(page, number, m.group(1), exact=False) for m in INLINE.finditer(line)]
    return found


def _operator(token: str) -> bool:
    return set(token) <= SHELL_PUNCTUATION


def _invocations(shell: str) -> list[list[str]]:
    """The argument lists of every `kubesim` in a shell line, each cut at the first shell operator."""
    lexer = shlex.shlex(shell.replace("$(", " ( "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:  # unbalanced quotes: a broken example
        raise AssertionError(f"cannot split {shell!r}: {exc}") from None
    calls: list[list[str]] = []
    for i, token in enumerate(tokens):
        if token == "kubesim" and (i == 0 or _operator(tokens[i - 1]) or tokens[i - 1] == "sudo"):
            args: list[str] = []
            for arg in tokens[i + 1:]:
                if _operator(arg):
                    break
                args.append(arg)
            calls.append(args)
    return calls


ALL_SHOWN = [shown for page in PAGES for shown in _commands(page)]
INVOCATIONS = [(shown, args) for shown in ALL_SHOWN for args in _invocations(shown.text)]


def test_the_docs_show_commands() -> None:
    # The extraction itself can fail silently (a fence style it does not know): make sure it finds them.
    assert PAGES, f"no pages under {DOCS}"
    assert len([s for s, _ in INVOCATIONS if s.exact]) > 50, "expected the tutorials' commands"


def _declared_options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"-h", "--help"}


@pytest.mark.parametrize(("shown", "args"), INVOCATIONS, ids=[str(s) for s, _ in INVOCATIONS])
def test_every_kubesim_command_exists_with_its_options(shown: Shown, args: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert args, f"{shown}: `kubesim` without a subcommand"
    name, rest = args[0], args[1:]
    command = cli.main.commands.get(name)
    assert command is not None, f"{shown}: no subcommand {name!r} (there are: {', '.join(sorted(cli.main.commands))})"
    if name in PASSTHROUGH:
        rest = [a for a in rest if a.split("=")[0] == "--name"]
    if not shown.exact:
        # A usage pattern (`kubesim capture NODE [-i IFACE] [FILTER]`): its option names must exist.
        words = [w.strip("[]") for w in rest]
        words = words[:words.index("--")] if "--" in words else words
        unknown = [w for w in words if w.startswith("-") and w.split("=")[0] not in _declared_options(command)]
        assert not unknown, f"{shown}: `kubesim {name}` has no option {', '.join(unknown)}"
        return
    monkeypatch.chdir(REPO)  # files the commands name (examples/echo.yaml) are relative to the checkout
    try:
        command.make_context(name, list(rest), parent=click.Context(cli.main, info_name="kubesim"))
    except click.ClickException as exc:
        pytest.fail(f"{shown}: kubesim would refuse it: {exc.format_message()}", pytrace=False)


class _Options:
    """Records the options kubesim's pytest plugin declares (pytest's parser, reduced to what it calls)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def getgroup(self, *_: object) -> _Options:
        return self

    def addoption(self, *names: str, **_: object) -> None:
        self.names.update(names)

    def addini(self, name: str, *_: object, **__: object) -> None:
        self.names.add(name)


def test_every_pytest_option_named_exists() -> None:
    declared = _Options()
    pytest_plugin.pytest_addoption(declared)  # type: ignore[arg-type]
    named = {(page, option) for page in PAGES
             for option in re.findall(r"--kubesim-[a-z-]+|(?<=`)kubesim_[a-z_]+(?= *=)", page.read_text())}
    unknown = sorted(f"{page.relative_to(REPO)}: {option}" for page, option in named if option not in declared.names)
    assert not unknown, f"the pytest plugin has no such option: {unknown}"


LINKED = [(page, target) for page in [*PAGES, REPO / "README.md"]
          for target in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", target)]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize(("page", "target"), LINKED, ids=[f"{p.relative_to(REPO)}->{t}" for p, t in LINKED])
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{page.relative_to(REPO)}: link {target!r}: no {resolved}"
    assert REPO in resolved.parents or resolved == REPO, f"{page.relative_to(REPO)}: {target!r} leaves the repository"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), f"{page.relative_to(REPO)}: no heading #{anchor} in {path or 'this page'}"
