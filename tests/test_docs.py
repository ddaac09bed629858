"""Every command the README and docs/ show exists, with every option they give it: each line of
a code block that runs a `dcgan-*` command is checked against that command's own --help."""

import importlib
import re
from pathlib import Path

import pytest
import tomllib
import typer
from conftest import HAS_TORCH
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
README_LIMIT = 12_000  # characters: the front door stays short; records live in docs/

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="dcgan-train's and dcgan-export's help needs torch")


def _command_lines() -> list[tuple[str, str]]:
    """(page, line) for each code-block line that runs a dcgan-* command."""
    found = []
    for page in PAGES:
        in_block = False
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                in_block = not in_block
                continue
            code = line.split(" #")[0].strip().removeprefix("$ ")
            for part in re.split(r"&&|;|\|", code) if in_block else []:
                words = part.split()
                while words and (words[0] in ("time", "nice", "env") or "=" in words[0]):
                    words = words[1:]  # FOO=1 dcgan-... and the like
                if words and words[0].split("/")[-1] in SCRIPTS:
                    found.append((page.name, " ".join(words)))
    return found


def _app(script: str) -> typer.Typer:
    module, _, name = SCRIPTS[script].partition(":")
    return importlib.import_module(module).app


def _help(script: str, words: list[str]) -> str:
    app = _app(script)
    sub = [words[1]] if len(app.registered_commands) > 1 and len(words) > 1 else []
    result = CliRunner().invoke(app, [*sub, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"},
                                prog_name=script)
    assert result.exit_code == 0, f"{script} {' '.join(sub)} --help: {result.output}"
    return result.output


def test_the_pages_show_commands():
    assert len(_command_lines()) > 20


@pytest.mark.parametrize("page, line", _command_lines())
def test_documented_command_exists_with_its_options(page, line):
    words = line.split()
    script = words[0].split("/")[-1]
    text = _help(script, words)
    for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
        assert option in text, f"{page}: `{line}` uses {option}, which `{script} --help` does not list"


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text()) <= README_LIMIT


def test_relative_links_resolve():
    """Every relative link and image of the README, docs/ and reference/ names a file that is there."""
    broken = []
    results = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    for page in [*PAGES, ROOT / "reference" / "README.md", *results]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if path and not re.match(r"[a-z]+:", path) and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
