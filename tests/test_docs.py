"""The documentation keeps its promises: links resolve, commands exist, every key is documented.

- every relative link and image in README.md and docs/*.md names a file of the
  repository, and every #anchor a heading of the file it points into (GitHub's
  heading ids);
- every command in README's shell blocks names something that exists: a make target
  of the Makefile, a file of the repository, a `pillowd` subcommand with options the
  CLI's own parser accepts, an extra of pyproject.toml for `pip install -e`;
- README opens with the two set-up commands, and `.ci/run` calls its test command;
- every config key the settings' schema reads is in docs/configuration.md, in the
  section of its table.

The checks are functions of a repository root, so the tests at the end can run them
on a small broken tree and see each one fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import re
import shlex
import tomllib
import types
import typing
from pathlib import Path

import pytest

from pillowd import cli, settings

ROOT = Path(__file__).resolve().parent.parent

# Commands of the system, not of this repository: README may use them as they are.
SYSTEM_COMMANDS = {"curl", "export", "journalctl", "scp", "systemctl"}
SHELL_BLOCKS = {"sh", "bash", "shell", "console"}

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


# -- Markdown ------------------------------------------------------------------

def markdown_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def blocks_and_prose(text: str) -> tuple[list[tuple[str, int, str]], list[tuple[int, str]]]:
    """The fenced code blocks (language, first line number, body) and the lines
    outside them (number, line)."""
    blocks, prose = [], []
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence, language, start, body = m.group(1), m.group(2).lower(), number + 1, []
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) \
                and not line.strip().strip(fence[0]):
            blocks.append((language, start, "\n".join(body)))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append((number, line))
    return blocks, prose


def slug(heading: str) -> str:
    """GitHub's id for a heading: its text, lower-cased, without punctuation,
    spaces as hyphens."""
    text = _CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)      # a link: its text
    text = re.sub(r"<[^>]+>", "", text)                           # inline HTML
    text = re.sub(r"[*_]{1,3}(\S(?:.*?\S)?)[*_]{1,3}", r"\1", text)  # emphasis
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's id in a Markdown text; a repeated one gets -1, -2, ..."""
    seen: dict[str, int] = {}
    ids = set()
    for _, line in blocks_and_prose(text)[1]:
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


def links(text: str) -> list[tuple[int, str]]:
    """Every link and image target outside code, with its line number."""
    found = []
    for number, line in blocks_and_prose(text)[1]:
        line = _CODE_SPAN.sub("", line)
        found += [(number, m.group(1)) for m in _LINK.finditer(line)]
        found += [(number, m.group(1)) for m in _HTML_LINK.finditer(line)]
    return found


def link_problems(root: Path) -> list[str]:
    problems = []
    for md in markdown_files(root):
        where = md.relative_to(root)
        for number, target in links(md.read_text(encoding="utf-8")):
            if _SCHEME.match(target):
                continue                       # http(s), mailto: not ours to check
            path, _, anchor = target.partition("#")
            file = (md.parent / path).resolve() if path else md.resolve()
            if not file.is_relative_to(root.resolve()):
                problems.append(f"{where}:{number}: {target}: outside the repository")
            elif not file.exists():
                problems.append(f"{where}:{number}: {target}: no such file")
            elif anchor and file.suffix != ".md":
                problems.append(f"{where}:{number}: {target}: an anchor into a file "
                                "that has no headings")
            elif anchor and anchor not in anchors(file.read_text(encoding="utf-8")):
                problems.append(f"{where}:{number}: {target}: no heading #{anchor} in "
                                f"{file.relative_to(root.resolve())}")
    return problems


# -- README's commands ---------------------------------------------------------

def shell_commands(text: str) -> list[tuple[int, list[str]]]:
    """The commands of the Markdown's shell blocks, split into words as the shell
    would (comments, quotes, `\\` continuations, `&&`, `|`, `;`, redirections)."""
    commands = []
    for language, start, body in blocks_and_prose(text)[0]:
        if language not in SHELL_BLOCKS:
            continue
        lines = body.splitlines()
        offset = 0
        while offset < len(lines):
            first, line = offset, lines[offset]
            while line.endswith("\\") and offset + 1 < len(lines):
                offset += 1                    # a continued line: one command
                line = line[:-1] + " " + lines[offset]
            offset += 1
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words, skip = [], False
            for word in lexer:
                if skip:
                    skip = False
                elif word in ("<", ">", ">>", "2>", "&>"):
                    skip = True                # a redirection and its file
                elif word in ("&&", "||", ";", "|", "&"):
                    if words:
                        commands.append((start + first, words))
                    words = []
                else:
                    words.append(word)
            if words:
                commands.append((start + first, words))
    return commands


def make_targets(root: Path) -> set[str]:
    targets = set()
    for line in (root / "Makefile").read_text().splitlines():
        m = re.match(r"^([^\s:=#$][^:=#$]*):(?!=)", line)
        if m:
            targets.update(m.group(1).split())
    return targets


def pillowd_problem(args: list[str]) -> str | None:
    """Why the CLI's own parser refuses *args*, or None."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            cli._parser().parse_args(args)
    except SystemExit as exit:
        if exit.code:
            return stderr.getvalue().strip().splitlines()[-1]
    return None


def command_problem(root: Path, words: list[str]) -> str | None:
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]                      # VAR=value before the command
    if words[:1] == ["sudo"]:
        words = words[1:]
    if not words:
        return None
    program, args = words[0], words[1:]
    name = program.removeprefix(".venv/bin/")
    if program.startswith(".venv/bin/") and name not in ("pillowd", "python", "pip"):
        return f"{program}: the virtual environment has no such command"
    if name == "make":
        missing = [a for a in args if not a.startswith("-") and "=" not in a
                   and a not in make_targets(root)]
        return f"make: no target {', '.join(missing)} in the Makefile" if missing else None
    if name == "pillowd":
        why = pillowd_problem(args)
        return f"pillowd {' '.join(args)}: {why}" if why else None
    if name in ("python", "python3"):
        if args[:1] == ["-m"]:
            return None if importlib.util.find_spec(args[1]) else f"no module {args[1]}"
        return None if args and (root / args[0]).is_file() else \
            f"{program} {' '.join(args)}: no such script"
    if name == "pip":
        return pip_problem(root, args)
    if "/" in program:
        return None if (root / program).is_file() else f"{program}: no such file"
    if program in SYSTEM_COMMANDS:
        return None
    return f"{program}: neither in the repository nor a known system command"


def pip_problem(root: Path, args: list[str]) -> str | None:
    """pillowd is not on a package index: README installs it from the checkout."""
    if args[:1] != ["install"]:
        return f"pip {' '.join(args)}: only `pip install` is expected"
    extras = tomllib.loads((root / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    for spec in (a for a in args[1:] if not a.startswith("-")):
        m = re.fullmatch(r"(\.|\./[^\[\]]*)(?:\[([\w,-]+)\])?", spec)
        if not m:
            return (f"pip install {spec}: not a path of the checkout (pillowd is not on "
                    "a package index: `.venv/bin/pip install -e '.[extra]'`)")
        unknown = [e for e in (m.group(2) or "").split(",") if e and e not in extras]
        if unknown:
            return f"pip install {spec}: no extra {', '.join(unknown)} in pyproject.toml"
    return None


def readme_command_problems(root: Path) -> list[str]:
    text = (root / "README.md").read_text(encoding="utf-8")
    return [f"README.md:{number}: {why}" for number, words in shell_commands(text)
            if (why := command_problem(root, words))]


# -- Config keys ---------------------------------------------------------------

def _dataclass_of(hint) -> type | None:
    """The dataclass a field holds, also when it is optional (`X | None`)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
    return hint if dataclasses.is_dataclass(hint) else None


def _keys(cls: type, section: str) -> dict[str, set[str]]:
    """The keys of one table: scalar fields are keys; a field holding a dataclass
    is flattened into the table (an actuator's limits) when it has a default, and a
    table of its own ([actuators.vibration]) when it is optional."""
    found: dict[str, set[str]] = {section: set()}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = _dataclass_of(hints[f.name])
        if inner is None:
            found[section].add(f.name)
        elif f.default is None:
            found.update(_keys(inner, f"{section}.{f.name}"))
        else:
            found[section] |= _keys(inner, section)[section]
    return found


def config_keys() -> dict[str, set[str]]:
    """Every section and its keys, from the settings' schema (pillowd.settings)."""
    sections: dict[str, set[str]] = {}
    hints = typing.get_type_hints(settings.Settings)
    for f in dataclasses.fields(settings.Settings):
        hint = hints[f.name]
        if typing.get_origin(hint) is dict:     # [scenes.NAME]
            scene = typing.get_args(hint)[1]
            sections[f"{f.name}.NAME"] = {s.name for s in dataclasses.fields(scene)
                                          if s.name not in ("name", "params")}
        elif (inner := _dataclass_of(hint)) is not None:
            sections.update(_keys(inner, f.name))
    return {name: keys for name, keys in sections.items() if keys}  # not [actuators]


def documented_keys(text: str) -> dict[str, str]:
    """docs/configuration.md's text under each heading that names a section in
    backticks (`[queue]`); a heading that names none ends it, unless it is deeper."""
    sections: dict[str, list[str]] = {}
    current, level = None, 0
    for _, line in blocks_and_prose(text)[1]:
        m = _HEADING.match(line)
        if m:
            named = re.search(r"`\[([\w.*]+)\]`", m.group(2))
            if named:
                current, level = named.group(1), len(m.group(1))
                sections.setdefault(current, [])
                continue
            if len(m.group(1)) <= level:
                current = None
        if current:
            sections[current].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def config_key_problems(root: Path, sections: dict[str, set[str]]) -> list[str]:
    doc = root / "docs" / "configuration.md"
    documented = documented_keys(doc.read_text(encoding="utf-8"))
    problems = []
    for section, keys in sorted(sections.items()):
        if section not in documented:
            problems.append(f"docs/configuration.md: no heading for [{section}]")
            continue
        problems += [f"docs/configuration.md: [{section}] {key} is not documented"
                     for key in sorted(keys) if f"`{key}`" not in documented[section]]
    return problems


# -- The repository's documents -------------------------------------------------

def test_every_relative_link_and_anchor_resolves():
    assert link_problems(ROOT) == []


def test_every_command_readme_prints_names_something_that_exists():
    commands = shell_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert ["make", "test"] in [words for _, words in commands]   # the parser finds them
    assert readme_command_problems(ROOT) == []


def test_readme_opens_with_the_two_set_up_commands_and_ci_runs_its_test_command():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks, _ = blocks_and_prose(text)
    language, start, body = blocks[0]
    first_section = next(n for n, line in enumerate(text.splitlines(), 1)
                         if line.startswith("## "))
    assert start < first_section, "the set-up commands come before any section"
    setup = [words for _, words in shell_commands(f"```{language}\n{body}\n```")]
    assert setup == [["make", "run"], ["make", "test"]]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.MULTILINE), "CI runs README's test command"


def test_every_config_key_is_in_docs_configuration():
    sections = config_keys()
    assert {"queue", "leds", "actuators.servo", "scenes.NAME"} <= set(sections)
    assert "cooldown_seconds" in sections["actuators.warmer"]   # limits, flattened
    assert config_key_problems(ROOT, sections) == []


# -- The checks, on a tree that breaks each rule ----------------------------------

def _tree(root: Path, readme: str, docs: dict[str, str]) -> Path:
    (root / "docs").mkdir()
    (root / "README.md").write_text(readme)
    for name, text in docs.items():
        (root / "docs" / name).write_text(text)
    (root / "Makefile").write_text((ROOT / "Makefile").read_text())
    (root / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (root / "install.sh").write_text("#!/bin/sh\n")
    return root


def test_a_broken_link_or_anchor_is_found(tmp_path):
    root = _tree(tmp_path, readme=(
        "# Title\n\n[fine](docs/a.md#a-heading-1) [fine too](#title)\n"
        "[gone](docs/missing.md) and ![gone](docs/missing.png)\n"
        "[bad anchor](docs/a.md#no-such-heading) [self](#nowhere)\n"
        '<img src="docs/nope.png" alt="">\n'
        "`[in code](docs/ignored.md)` and [out](../../etc/passwd)\n"
        "```\n[in a block](docs/ignored.md)\n```\n"
        "[web](https://example.org/missing)\n"),
        docs={"a.md": "# A heading\n\n## A heading\n\n```sh\n# not a heading\n```\n"})
    assert link_problems(root) == [
        "README.md:4: docs/missing.md: no such file",
        "README.md:4: docs/missing.png: no such file",
        "README.md:5: docs/a.md#no-such-heading: no heading #no-such-heading in docs/a.md",
        "README.md:5: #nowhere: no heading #nowhere in README.md",
        "README.md:6: docs/nope.png: no such file",
        "README.md:7: ../../etc/passwd: outside the repository",
    ]


def test_slugs_are_githubs():
    assert slug("3. On each Pi: `sudo ./install.sh`, `sudo pillowd join DIR`") == \
        "3-on-each-pi-sudo-installsh-sudo-pillowd-join-dir"
    assert slug("`[scenes.NAME]`: what messages ask for") == \
        "scenesname-what-messages-ask-for"
    assert slug("A hostile LAN: the server and its limits") == \
        "a-hostile-lan-the-server-and-its-limits"


def test_a_command_that_names_nothing_is_found(tmp_path):
    root = _tree(tmp_path, readme=(
        "```sh\n"
        "make run     # fine\n"
        "make rn\n"
        "sudo ./install.sh --uninstall && ./uninstall.sh\n"
        ".venv/bin/pillowd send hug --from Alice --state-dir .state\n"
        ".venv/bin/pillowd sned hug\n"
        "PILLOWD_X=1 .venv/bin/pillowd send hug --colour red \\\n    --state-dir .state\n"
        "pip install 'pillowd[owner]'\n"
        ".venv/bin/pip install -e '.[owner]'\n"
        ".venv/bin/pip install -e '.[ownr]'\n"
        ".venv/bin/python bench/nothing.py\n"
        "frobnicate --now | journalctl -f\n"
        "```\n"
        "```json\n{\"scene\": \"hug\"}\n```\n"), docs={})
    problems = readme_command_problems(root)
    assert [p.split(": ", 2)[:2] for p in problems] == [
        ["README.md:3", "make"],
        ["README.md:4", "./uninstall.sh"],
        ["README.md:6", "pillowd sned hug"],
        ["README.md:7", "pillowd send hug --colour red --state-dir .state"],
        ["README.md:9", "pip install pillowd[owner]"],
        ["README.md:11", "pip install .[ownr]"],
        ["README.md:12", ".venv/bin/python bench/nothing.py"],
        ["README.md:13", "frobnicate"],
    ]


def test_an_undocumented_config_key_is_found(tmp_path):
    root = _tree(tmp_path, readme="# x\n", docs={"configuration.md": (
        "# Config\n\n## `[queue]`\n\n| `name` | x |\n\n### Azure\n\n`backend`\n\n"
        "## Elsewhere\n\n`poll_min_seconds`\n")})
    sections = {"queue": {"name", "backend", "poll_min_seconds"}, "mqtt": {"host"}}
    assert config_key_problems(root, sections) == [
        "docs/configuration.md: no heading for [mqtt]",
        "docs/configuration.md: [queue] poll_min_seconds is not documented",
    ]


@pytest.mark.parametrize("line, words", [
    ('curl -H "A: $T" http://x/api/hug', ["curl", "-H", "A: $T", "http://x/api/hug"]),
    ("a && b # c", None),
    ("scp -r x host: < in.txt", ["scp", "-r", "x", "host:"]),
])
def test_shell_lines_split_as_the_shell_would(line, words):
    commands = [w for _, w in shell_commands(f"```sh\n{line}\n```\n")]
    assert commands == ([words] if words else [["a"], ["b"]])
