"""The house's floors: every import in pillowd goes down, and no two parts import each other.

The floors are the table in pillowd/__init__.py's docstring (one line a floor: its
number, its parts, what they hold). A part is a package (`page/`) or a module at
pillowd's top level (`messages`); modules inside one package may import each other.
Imports are read with ast, so an import inside a function or under TYPE_CHECKING
counts as much as one at the top: each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pillowd

PACKAGE = Path(pillowd.__file__).resolve().parent
_FLOOR = re.compile(r"^\s*(\d+)\s+((?:[A-Za-z_]\w*/?)(?:,\s*[A-Za-z_]\w*/?)*)(?:\s{2,}|$)")


def floors() -> dict[str, int]:
    """{part: floor} from pillowd/__init__.py's docstring: "pillowd.page", "pillowd.cli"."""
    table = {"pillowd": -1}  # the package itself, its version: under every floor
    for line in (pillowd.__doc__ or "").splitlines():
        match = _FLOOR.match(line)
        if match:
            for name in match.group(2).split(","):
                table["pillowd." + name.strip().rstrip("/")] = int(match.group(1))
    return table


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The part a module belongs to: pillowd.page.routes -> pillowd.page."""
    return ".".join(module.split(".")[:2])


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> list[tuple[str, int]]:
    """(the pillowd module imported, line) for every import in the file at *path*."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names
                      if alias.name.split(".")[0] == "pillowd"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "pillowd":
                continue
            for alias in node.names:
                # `from . import threads` imports the module; `from .x import y` x's name
                wanted = f"{target}.{alias.name}"
                found.append((wanted if _is_module(wanted) else target, node.lineno))
    return found


def edges() -> list[tuple[str, str, str]]:
    """(importing part, imported part, "file:line") for each import between two parts."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = part_of(module_name(path))
        for target, line in imports(path):
            other = part_of(target)
            if other != own:
                found.append((own, other, f"{path.relative_to(PACKAGE.parent)}:{line}"))
    return found


def parts() -> set[str]:
    return {part_of(module_name(p)) for p in PACKAGE.rglob("*.py")}


def test_every_part_has_a_floor_and_every_floor_a_part():
    table = floors()
    assert len(table) > 10, "no floor table in pillowd/__init__.py's docstring"
    missing = sorted(parts() - set(table))
    assert not missing, (f"{missing} have no floor: add each to the table in "
                         "pillowd/__init__.py's docstring, at the floor of what it imports")
    gone = sorted(set(table) - parts())
    assert not gone, f"the table in pillowd/__init__.py names parts that are not there: {gone}"


def test_imports_only_go_down():
    table = floors()
    wrong = [f"{where}: {own} (floor {table[own]}) imports {other} (floor {table[other]})"
             for own, other, where in edges()
             if own in table and other in table and table[other] >= table[own]]
    assert not wrong, ("a part may import only parts on lower floors "
                       "(pillowd/__init__.py); these do not:\n" + "\n".join(wrong))


def test_no_two_parts_import_each_other():
    pairs = {(own, other): where for own, other, where in edges()}
    both = sorted(f"{a} <-> {b} ({pairs[(a, b)]}, {pairs[(b, a)]})"
                  for a, b in pairs if a < b and (b, a) in pairs)
    assert not both, "these parts import each other:\n" + "\n".join(both)


def test_the_top_level_is_the_core_only():
    # The core (the words at the bottom, the wiring at the top) and nothing else:
    # a new concern gets a package, not a thirteenth neighbour.
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= 12, f"{len(top)} modules at pillowd's top level: {top}"
