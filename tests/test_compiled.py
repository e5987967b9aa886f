"""WeasyPrint compiled with Cython (reports.compiled): every kind of document comes out the same
to the byte as from the pure Python source, and a compiled module is used only while its source
is the one it was built from, on the interpreter it was built for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from reports import compiled, cythonize
from reports.compiled import CompiledFinder, CompiledLoader, interpreter, load_manifest, sha256
from tests.test_markup import DOCUMENTS

ROOT = Path(__file__).resolve().parent.parent

# renders every .html of a folder to <name>.<mode>.pdf and prints the compiled modules it ran
RENDER = """
import json, sys
from pathlib import Path
from reports import compiled, cythonize
from reports.render import html_to_pdf
folder, mode = Path(sys.argv[1]), sys.argv[2]
for page in sorted(folder.glob("*.html")):
    page.with_suffix(f".{mode}.pdf").write_bytes(html_to_pdf(page.read_text(encoding="utf-8")))
print(json.dumps(compiled.active()))
"""


def _render(folder: Path, mode: str, pure: bool) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE}
    if pure:
        env[compiled.PURE] = "1"
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
        pytest.skip(f"no WeasyPrint compiled for this interpreter in {compiled.DIRECTORY}")
    for k, html in enumerate(DOCUMENTS.values()):
        (tmp_path / f"doc{k:02d}.html").write_text(html, encoding="utf-8")
    assert _render(tmp_path, "pure", pure=True) == []  # KAOHE_PURE_PYTHON: the source only
    ran = _render(tmp_path, "compiled", pure=False)
    # a notice and a bulletin import every compiled module (the user-agent stylesheets beside
    # weasyprint/css/__init__.py are read through the compiled package)
    assert ran == sorted(compiled.MODULES)
    pages = sorted(tmp_path.glob("*.html"))
    assert len(pages) == len(DOCUMENTS) >= 10
    for page in pages:
        pure, fast = page.with_suffix(".pure.pdf"), page.with_suffix(".compiled.pdf")
        assert pure.read_bytes() == fast.read_bytes(), f"{page.name} differs when compiled"


def _manifest(tmp_path: Path, source: Path, digest: str) -> dict:
    return {
        **interpreter(),
        "modules": {
            "kaohe_probe": {
                "binary": "kaohe_probe.so",
                "source": str(source),
                "sha256": digest,
                "package": False,
            }
        },
    }


def test_a_compiled_module_is_used_only_while_its_source_is_unchanged(tmp_path):
    source = tmp_path / "kaohe_probe.py"
    source.write_text("X = 1\n")
    (tmp_path / "kaohe_probe.so").write_bytes(b"")  # only found, never loaded here
    finder = CompiledFinder(tmp_path, _manifest(tmp_path, source, sha256(source)))
    spec = finder.find_spec("kaohe_probe")
    assert spec is not None and isinstance(spec.loader, CompiledLoader)
    assert spec.origin == str(tmp_path / "kaohe_probe.so")
    assert finder.find_spec("kaohe_other") is None  # not in the manifest: Python's own finders

    source.write_text("X = 2\n")  # the package was upgraded or patched after the build
    assert finder.find_spec("kaohe_probe") is None
    assert finder.stale == ["kaohe_probe"]
    source.unlink()
    assert finder.find_spec("kaohe_probe") is None


def test_a_build_for_another_interpreter_is_not_used(tmp_path):
    source = tmp_path / "kaohe_probe.py"
    source.write_text("X = 1\n")
    manifest = _manifest(tmp_path, source, sha256(source))
    (tmp_path / compiled.MANIFEST).write_text(json.dumps(manifest))
    assert load_manifest(tmp_path) == manifest
    (tmp_path / compiled.MANIFEST).write_text(json.dumps(manifest | {"python": "3.12.0 (other)"}))
    assert load_manifest(tmp_path) is None
    (tmp_path / compiled.MANIFEST).write_text("{not json")
    assert load_manifest(tmp_path) is None


def test_a_machine_without_a_compiler_is_told_so_before_anything_is_built(tmp_path, monkeypatch):
    real = sysconfig.get_config_var
    fake = {"CC": "kaohe-no-cc -pthread"}
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: fake.get(name) or real(name))
    with pytest.raises(SystemExit, match=r"here: no C compiler \(kaohe-no-cc; on Debian"):
        cythonize.build(tmp_path / "compiled")
    assert not (tmp_path / "compiled").exists()
