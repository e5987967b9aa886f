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

import ctypes
import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import sysconfig
from collections.abc import Sequence
from importlib.resources.readers import FileReader
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)

# what a quarter notice spends its time in (cProfile over WeasyPrint 70), not the whole of the
# four packages: compiling all of them saved nothing more (376 M instructions a notice against
# 375 M) for three times the build's time. layout/preferred.py does not compile (a starred
# argument in a list display, Cython 3.3); with table-layout: fixed the notices do not use it.
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
# in the virtualenv, beside what it was compiled from; KAOHE_COMPILED_DIR puts it elsewhere
DIRECTORY = Path(
    os.environ.get("KAOHE_COMPILED_DIR") or Path(sys.prefix) / "kaohe-compiled"
).absolute()
MANIFEST = "manifest.json"
PURE = "KAOHE_PURE_PYTHON"
ENTRY = {"binary": str, "source": str, "sha256": str, "package": bool}


def interpreter() -> dict[str, str]:
    """What a compiled module is bound to: the exact interpreter and its extension ABI."""
    return {"python": sys.version, "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX")}


def module_file(name: str, package: bool, suffix: str) -> Path:
    """Where module `name` lies below the folder of its top-level package: a package's
    __init__, or a file named after the module (".py" for the source, EXT_SUFFIX compiled)."""
    parts = name.split(".")
    return Path(*parts, "__init__" + suffix) if package else Path(*parts[:-1], parts[-1] + suffix)


def installed_source(name: str) -> tuple[Path, bool] | None:
    """The installed source file of module `name` and whether it is a package, found by path
    from its top-level package (nothing is imported)."""
    spec = importlib.machinery.PathFinder.find_spec(name.partition(".")[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).parent
    for package in (True, False):
        if (root / module_file(name, package, ".py")).is_file():
            return root / module_file(name, package, ".py"), package
    return None


def sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.read_bytes()).hexdigest()


def enabled() -> bool:
    """False when KAOHE_PURE_PYTHON asks for the installed source only (1, true, yes, on)."""
    return os.environ.get(PURE, "").strip().lower() not in ("1", "true", "yes", "on")


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
    """A meta path finder for the modules of one manifest: a module is taken compiled only when
    the import system would import the very source file it was built from (the same folder on
    the parent package's path), that file still has the hash it had, and its binary loads;
    otherwise Python's own finders import the source."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = directory
        self.modules: dict[str, dict[str, Any]] = manifest["modules"]
        self.stale: list[str] = []

    def _refuse(self, name: str, why: str) -> None:
        if name not in self.stale:
            self.stale.append(name)
            log.warning("compiled %s not used (%s); importing its source", name, why)

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        entry = self.modules.get(name)
        if entry is None:
            return None
        source, binary = Path(entry["source"]), self.directory / entry["binary"]
        if path is None:  # a top-level module (or `status` asking): found as Python would
            found = installed_source(name)
            imported = found[0] if found else None
        else:  # a submodule: from a folder of its parent package's path
            folder = source.parent.parent if entry["package"] else source.parent
            imported = source if str(folder) in {os.fspath(p) for p in path} else None
        if imported != source:
            self._refuse(name, f"the source imported is not {source}")
            return None
        try:
            if sha256(source) != entry["sha256"]:
                self._refuse(name, f"{source} changed since it was compiled")
                return None
            ctypes.CDLL(str(binary))  # loadable here (not truncated, not on a noexec mount)
        except OSError as exc:
            self._refuse(name, str(exc))
            return None
        return importlib.util.spec_from_file_location(
            name,
            binary,
            loader=CompiledLoader(name, str(binary), source),
            submodule_search_locations=[str(source.parent)] if entry["package"] else None,
        )


def load_manifest(directory: Path = DIRECTORY) -> dict[str, Any] | None:
    """The manifest of `directory` if it is whole and was built for this interpreter, else
    None (said in the log when there is a manifest: `make` builds it again)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("compiled modules in %s not used: %s", directory, exc)
        return None
    modules = manifest.get("modules") if isinstance(manifest, dict) else None
    whole = isinstance(modules, dict) and all(
        isinstance(entry, dict)
        and all(isinstance(entry.get(key), kind) for key, kind in ENTRY.items())
        for entry in modules.values()
    )
    if not whole:
        log.warning("compiled modules in %s not used: the manifest is damaged", directory)
        return None
    if any(manifest.get(key) != value for key, value in interpreter().items()):
        log.warning("compiled modules in %s were built for another interpreter", directory)
        return None
    return manifest


def install(directory: Path = DIRECTORY) -> CompiledFinder | None:
    """Put the compiled modules of `directory` in front of the installed source, once per
    process; None when there are none for this interpreter or KAOHE_PURE_PYTHON is set."""
    for finder in sys.meta_path:
        if isinstance(finder, CompiledFinder):
            return finder
    if not enabled():
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
