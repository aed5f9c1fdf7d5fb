"""Every Python block of the README and the guide runs as written (in a fresh namespace and an
empty working directory), so the documentation cannot rot."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: pages whose shell blocks run too (the tutorials: sized to run in the suite); the guide's
#: shell blocks show full-size runs and are documentation of the commands only
SHELL_PAGES = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
#: blocks that train a model for a minute or more: run with `pytest -m slow` (the shell blocks
#: of the tutorials are all slow: each command pays its own start-up and compilation)
SLOW_BLOCKS = {"docs/tutorials/osq.md-0"}


def _blocks():
    for path in DOCS:
        text = path.read_text()
        for i, match in enumerate(re.finditer(r"```python\n(.*?)```", text, re.S)):
            ident = f"{path.relative_to(ROOT)}-{i}"
            marks = [pytest.mark.slow] if ident in SLOW_BLOCKS else []
            yield pytest.param(match.group(1), id=ident, marks=marks)


@pytest.mark.parametrize("code", list(_blocks()))
def test_docs_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def _shell_blocks():
    for path in SHELL_PAGES:
        text = path.read_text()
        for i, match in enumerate(re.finditer(r"```bash\n(.*?)```", text, re.S)):
            ident = f"{path.relative_to(ROOT)}-sh{i}"
            yield pytest.param(match.group(1), id=ident, marks=[pytest.mark.slow])


@pytest.mark.parametrize("script", list(_shell_blocks()))
def test_tutorial_shell_block_runs(script, tmp_path):
    """The tutorials' command-line blocks run as written (bash -e, an empty directory, the
    `sqdiff` and `python` of this interpreter first on PATH)."""
    import os
    import subprocess
    import sys

    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_docs_have_python_blocks():
    assert len(list(_blocks())) >= 3


def test_every_public_name_has_an_api_page():
    """Each name in `sqdiff.__all__` is documented on an API page (`docs/api/*.md`, rendered by
    mkdocstrings): its defining module, or the name itself, has a `:::` directive there."""
    import types

    import sqdiff as sq

    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (\S+)", page.read_text(), re.M))
    missing = []
    for name in sq.__all__:
        obj = getattr(sq, name)
        if name == "__version__":
            continue
        if isinstance(obj, types.ModuleType):
            ok = any(d == obj.__name__ or d.startswith(obj.__name__ + ".") for d in documented)
        else:
            ok = obj.__module__ in documented or f"sqdiff.{name}" in documented
        if not ok:
            missing.append(name)
    assert not missing, f"public names without an API page: {missing}"
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, f"{page} is not in mkdocs.yml's nav"
