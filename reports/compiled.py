"""WeasyPrint's busiest modules compiled with Cython, used only while their source is unchanged.

WeasyPrint, and pydyf, cssselect2 and tinycss2 under it, are pure Python: 85 % of a notice's
rendering is the interpreter running them. Cython compiles the same source, unchanged, into C
extension modules that run the same code without the interpreter's dispatch: a quarter notice
takes about a quarter fewer instructions (README, Speed), and the PDF is the same to the byte
(test_compiled renders notices and a bulletin both ways and compares them).

reports.cythonize builds them (`make` does, once per virtualenv). They live apart from the
installed packages, in `<virtualenv>/kaohe-compiled` (or KAOHE_COMPILED_DIR), with a manifest of
the SHA-256 of each module's source. `install()` (run when `reports` is imported, so before any
rendering) puts a finder in front of Python's own that loads a compiled module only while its
source file still has that hash, on the interpreter it was built for. Any other module, an
upgraded WeasyPrint, a changed interpreter or a missing build: the installed source is imported
as before. `KAOHE_PURE_PYTHON=1` turns the compiled modules off.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from collections.abc import Sequence
from importlib.readers import FileReader
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)

# what a quarter notice spends its time in (cProfile over WeasyPrint 70), not the whole package:
# the rest (SVG, grid, flex, images, fonts' embedding) is a fifth of the instructions saved and
# would double the build's time. layout/preferred.py does not compile (a starred argument in a
# list display, Cython 3.3); with table-layout: fixed the notices do not use it.
MODULES = (
    "weasyprint.anchors",
    "weasyprint.css",
    "weasyprint.css.computed_values",
    "weasyprint.css.functions",
    "weasyprint.document",
    "weasyprint.draw",
    "weasyprint.draw.border",
    "weasyprint.draw.color",
    "weasyprint.draw.text",
    "weasyprint.formatting_structure.boxes",
    "weasyprint.formatting_structure.build",
    "weasyprint.layout",
    "weasyprint.layout.background",
    "weasyprint.layout.block",
    "weasyprint.layout.float",
    "weasyprint.layout.inline",
    "weasyprint.layout.page",
    "weasyprint.layout.percent",
    "weasyprint.layout.table",
    "weasyprint.matrix",
    "weasyprint.pdf.stream",
    "weasyprint.stacking",
    "weasyprint.text.ffi",
    "weasyprint.text.fonts",
    "weasyprint.text.line_break",
    "cssselect2",
    "cssselect2.tree",
    "pydyf",
    "tinycss2.color4",
)
# in the virtualenv, beside what it was compiled from; KAOHE_COMPILED_DIR where that is not
# writable (the Docker image's site-packages belong to root)
DIRECTORY = Path(os.environ.get("KAOHE_COMPILED_DIR") or Path(sys.prefix) / "kaohe-compiled")
MANIFEST = "manifest.json"
PURE = "KAOHE_PURE_PYTHON"


def interpreter() -> dict[str, str]:
    """What a compiled module is bound to: the exact interpreter and its extension ABI."""
    return {"python": sys.version, "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX")}


def installed_source(name: str) -> tuple[Path, bool] | None:
    """The installed source file of module `name` and whether it is a package, found by path
    from its top-level package (nothing is imported)."""
    top, _, rest = name.partition(".")
    spec = importlib.machinery.PathFinder.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations)), *rest.split(".") if rest else ())
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the finder --------------------------------------------------------------------------------


class CompiledLoader(importlib.machinery.ExtensionFileLoader):
    """An extension module whose package data (WeasyPrint's user-agent stylesheets beside
    css/__init__.py) is read from its installed source's folder, not from the build's."""

    def __init__(self, name: str, path: str, source: Path) -> None:
        super().__init__(name, path)
        self.source = source

    def get_resource_reader(self, name: str | None = None) -> FileReader:
        return FileReader(SimpleNamespace(path=str(self.source)))  # type: ignore[arg-type]


class CompiledFinder:
    """A meta path finder for the modules of one manifest whose source is unchanged."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = directory
        self.modules: dict[str, dict[str, Any]] = manifest["modules"]
        self.stale: list[str] = []

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        entry = self.modules.get(name)
        if entry is None:
            return None
        source, binary = Path(entry["source"]), self.directory / entry["binary"]
        try:
            current = source.is_file() and binary.is_file() and sha256(source) == entry["sha256"]
        except OSError:
            current = False
        if not current:
            self.stale.append(name)
            log.warning("compiled %s is not of the installed source; importing the source", name)
            return None
        return importlib.util.spec_from_file_location(
            name,
            binary,
            loader=CompiledLoader(name, str(binary), source),
            submodule_search_locations=[str(source.parent)] if entry["package"] else None,
        )


def load_manifest(directory: Path = DIRECTORY) -> dict[str, Any] | None:
    """The manifest of `directory` if it was built for this interpreter, else None."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    same = all(manifest.get(key) == value for key, value in interpreter().items())
    return manifest if same and isinstance(manifest.get("modules"), dict) else None


def install(directory: Path = DIRECTORY) -> CompiledFinder | None:
    """Put the compiled modules of `directory` in front of the installed source, once per
    process; None when there are none for this interpreter or KAOHE_PURE_PYTHON is set."""
    for finder in sys.meta_path:
        if isinstance(finder, CompiledFinder):
            return finder
    if os.environ.get(PURE, "").strip() not in ("", "0"):
        return None
    manifest = load_manifest(directory)
    if manifest is None:
        return None
    finder = CompiledFinder(directory, manifest)
    sys.meta_path.insert(0, finder)
    return finder


def active() -> list[str]:
    """The modules of this process that run compiled."""
    return sorted(
        name
        for name, module in sys.modules.items()
        if isinstance(getattr(module, "__loader__", None), CompiledLoader)
    )
