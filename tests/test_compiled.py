"""WeasyPrint compiled with Cython (reports.compiled): every kind of document comes out the same
to the byte as from the pure Python source, and a compiled module is used only while the source
Python would import is the one it was built from, unchanged, on the interpreter it was built
for, and its binary loads; anything else imports the source."""

from __future__ import annotations

import importlib
import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reports import compiled, cythonize
from reports.compiled import CompiledFinder, CompiledLoader, interpreter, load_manifest, sha256
from tests.test_markup import DOCUMENTS

ROOT = Path(__file__).resolve().parent.parent
# CI sets it: a machine that should compile and did not fails instead of skipping
REQUIRED = os.environ.get("KAOHE_REQUIRE_COMPILED") == "1"


def _no_build(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"KAOHE_REQUIRE_COMPILED=1 but {why}")
    pytest.skip(why)


# renders every .html of a folder to <name>.<mode>.pdf and prints the compiled modules it ran
RENDER = """
import json, sys
from pathlib import Path
from reports import compiled
from reports.render import html_to_pdf
folder, mode = Path(sys.argv[1]), sys.argv[2]
for page in sorted(folder.glob("*.html")):
    page.with_suffix(f".{mode}.pdf").write_bytes(html_to_pdf(page.read_text(encoding="utf-8")))
print(json.dumps(compiled.active()))
"""


def _render(folder: Path, mode: str, pure: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE}
    if pure is not None:
        env[compiled.PURE] = pure
    done = subprocess.run(
        [sys.executable, "-c", RENDER, str(folder), mode],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_document_is_the_same_pdf_compiled_and_from_the_source(tmp_path):
    if load_manifest() is None:
        _no_build(f"no WeasyPrint compiled for this interpreter in {compiled.DIRECTORY}")
    for k, html in enumerate(DOCUMENTS.values()):
        (tmp_path / f"doc{k:02d}.html").write_text(html, encoding="utf-8")
    assert _render(tmp_path, "pure", pure="1") == []  # KAOHE_PURE_PYTHON: the source only
    ran = _render(tmp_path, "compiled", pure="0")
    # a notice and a bulletin import every compiled module (the user-agent stylesheets beside
    # weasyprint/css/__init__.py are read through the compiled package)
    assert ran == sorted(compiled.MODULES)
    pages = sorted(tmp_path.glob("*.html"))
    assert len(pages) == len(DOCUMENTS) >= 10
    for page in pages:
        pure, fast = page.with_suffix(".pure.pdf"), page.with_suffix(".compiled.pdf")
        assert pure.read_bytes() == fast.read_bytes(), f"{page.name} differs when compiled"


# --- a probe package, compiled for real --------------------------------------------------------

PROBE = {
    "kaohe_probe/__init__.py": "def double(x):\n    return [v * 2 for v in x]\n",
    "kaohe_probe/deep.py": "def gen(n):\n    yield from range(n)\n",
    "kaohe_probe/pure.py": "WHO = 'source'\n",
    "kaohe_probe/data.css": "p { color: red }\n",
}


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A package on sys.path with two modules compiled into tmp_path/out and one left pure;
    its modules are forgotten afterwards."""
    if cythonize.toolchain_missing():
        _no_build(f"cannot compile here: no {cythonize.toolchain_missing()}")
    site = tmp_path / "site"
    for name, text in PROBE.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    monkeypatch.syspath_prepend(str(site))
    out = tmp_path / "out"
    manifest = cythonize.build(out, ["kaohe_probe", "kaohe_probe.deep"], jobs=2)
    yield site, out, manifest
    for name in [m for m in sys.modules if m.split(".")[0] == "kaohe_probe"]:
        del sys.modules[name]
    sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "directory", None) != out]


def _import(out: Path, manifest: dict) -> CompiledFinder:
    finder = CompiledFinder(out, manifest)
    sys.meta_path.insert(0, finder)
    importlib.invalidate_caches()
    return finder


def test_a_compiled_package_runs_from_its_binary_with_its_data_and_pure_modules_beside(probe):
    site, out, manifest = probe
    assert sorted(p.name for p in out.parent.iterdir()) == [
        ".out.lock",
        "out",
        "site",
    ]  # swapped in
    assert manifest["modules"]["kaohe_probe"]["package"] is True
    _import(out, manifest)
    import kaohe_probe
    import kaohe_probe.deep
    import kaohe_probe.pure

    assert isinstance(kaohe_probe.__loader__, CompiledLoader)
    assert kaohe_probe.__file__.startswith(str(out)) and kaohe_probe.__file__.endswith(".so")
    assert isinstance(kaohe_probe.deep.__loader__, CompiledLoader)
    assert kaohe_probe.pure.__file__ == str(site / "kaohe_probe" / "pure.py")  # from __path__
    assert kaohe_probe.double([1, 2]) == [2, 4] and list(kaohe_probe.deep.gen(3)) == [0, 1, 2]
    # package data is the installed package's, as weasyprint/html.py reads its stylesheets
    assert (importlib.resources.files(kaohe_probe) / "data.css").read_text() == PROBE[
        "kaohe_probe/data.css"
    ]


def test_a_changed_source_is_imported_instead_of_its_binary(probe):
    site, out, manifest = probe
    (site / "kaohe_probe" / "deep.py").write_text("def gen(n):\n    return 'patched'\n")
    finder = _import(out, manifest)
    import kaohe_probe.deep

    assert kaohe_probe.deep.gen(3) == "patched"
    assert kaohe_probe.deep.__file__ == str(site / "kaohe_probe" / "deep.py")
    assert finder.stale == ["kaohe_probe.deep"]
    assert isinstance(sys.modules["kaohe_probe"].__loader__, CompiledLoader)  # still current


def test_another_installation_of_the_same_name_is_not_given_the_binary(probe, tmp_path):
    site, out, manifest = probe
    other = tmp_path / "other"
    for name, text in PROBE.items():  # the same bytes, installed elsewhere and first on sys.path
        (other / name).parent.mkdir(parents=True, exist_ok=True)
        (other / name).write_text(text)
    sys.path.insert(0, str(other))
    try:
        finder = _import(out, manifest)
        import kaohe_probe

        assert kaohe_probe.__file__ == str(other / "kaohe_probe" / "__init__.py")
        assert finder.find_spec("kaohe_probe.deep", [str(other / "kaohe_probe")]) is None
        assert finder.stale == ["kaohe_probe", "kaohe_probe.deep"]
    finally:
        sys.path.remove(str(other))


def test_a_binary_that_does_not_load_leaves_the_source_to_be_imported(probe):
    site, out, manifest = probe
    binary = out / manifest["modules"]["kaohe_probe.deep"]["binary"]
    binary.write_bytes(binary.read_bytes()[:100])  # truncated, as by a full disk
    finder = _import(out, manifest)
    import kaohe_probe.deep

    assert list(kaohe_probe.deep.gen(2)) == [0, 1]
    assert kaohe_probe.deep.__file__ == str(site / "kaohe_probe" / "deep.py")
    assert finder.stale == ["kaohe_probe.deep"]


def test_a_build_replaces_only_a_build(tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("not a build")
    with pytest.raises(SystemExit, match="is not a build of compiled modules; not replacing it"):
        cythonize.build(keep, ["kaohe_probe"])
    assert (keep / "notes.txt").read_text() == "not a build"


def test_a_machine_without_a_compiler_is_told_so_before_anything_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "kaohe-no-cc -pthread")
    with pytest.raises(SystemExit, match=r"here: no C compiler \(kaohe-no-cc; on Debian"):
        cythonize.build(tmp_path / "compiled")
    assert not (tmp_path / "compiled").exists()


# --- the manifest ------------------------------------------------------------------------------


def _manifest(source: Path) -> dict:
    entry = {"binary": "kaohe_probe.so", "source": str(source), "sha256": sha256(source)}
    return {**interpreter(), "modules": {"kaohe_probe": entry | {"package": False}}}


@pytest.mark.parametrize(
    "damage",
    [
        "null",
        '{"modules": []}',
        "another interpreter",
        "an entry without its source",
        "a hash that is a number",
        "{not json",
    ],
)
def test_a_damaged_manifest_or_one_for_another_interpreter_is_not_used(tmp_path, damage):
    source = tmp_path / "kaohe_probe.py"
    source.write_text("X = 1\n")
    good = _manifest(source)
    (tmp_path / compiled.MANIFEST).write_text(json.dumps(good))
    assert load_manifest(tmp_path) == good
    entry = good["modules"]["kaohe_probe"]
    text = {
        "another interpreter": json.dumps(good | {"python": "3.11.2 (built elsewhere)"}),
        "an entry without its source": json.dumps(
            good | {"modules": {"kaohe_probe": {k: v for k, v in entry.items() if k != "source"}}}
        ),
        "a hash that is a number": json.dumps(
            good | {"modules": {"kaohe_probe": entry | {"sha256": 5}}}
        ),
    }.get(damage, damage)
    (tmp_path / compiled.MANIFEST).write_text(text)
    assert load_manifest(tmp_path) is None


@pytest.mark.parametrize(
    ("value", "on"),
    [(None, True), ("", True), ("0", True), ("1", False), ("true", False), ("YES", False)],
)
def test_kaohe_pure_python_turns_the_compiled_modules_off(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv(compiled.PURE, raising=False)
    else:
        monkeypatch.setenv(compiled.PURE, value)
    assert compiled.enabled() is on


def test_status_says_when_the_build_is_missing(tmp_path):
    current, line = cythonize.status(tmp_path / "none")
    assert not current
    assert line == f"kaohe: no compiled modules for this interpreter in {tmp_path / 'none'}"


def test_the_module_list_compiles_only_installed_sources():
    # every listed module is found where the build looks, so make never stops on a rename
    assert [name for name in compiled.MODULES if not compiled.installed_source(name)] == []
