"""Compile WeasyPrint's busiest modules with Cython for this virtualenv (reports.compiled).

    python -m reports.cythonize build     (about a minute and a half on 2 cores)
    python -m reports.cythonize status    (exit 1 when the build is missing, stale or for
                                           another interpreter; `make` then builds again)

Needs a C compiler and the interpreter's headers (Debian: gcc, python3.11-dev). Where a build
fails, the one before it, if any, stays, and reports.compiled uses only what is current: without
one, PDFs render from the pure Python source, about a sixth fewer a second (README, Speed).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reports.compiled import (
    DIRECTORY,
    MANIFEST,
    MODULES,
    CompiledFinder,
    installed_source,
    interpreter,
    load_manifest,
    module_file,
    sha256,
)

# no debugging information (it doubles the compiler's time), no warnings about generated C; they
# come after the interpreter's own CFLAGS, so -g0 wins over its -g
COMPILE_ARGS = ["-g0", "-w"]


def toolchain_missing() -> str | None:
    """What compiling needs and this machine lacks (said at once, before a minute of Cython)."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"C compiler ({compiler}; on Debian: apt install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "Python headers (Python.h; on Debian: apt install python3.11-dev)"
    return None


def _ours(directory: Path) -> bool:
    """Whether `directory` may be replaced: absent, empty, or a build (it has a manifest)."""
    return not directory.exists() or not any(directory.iterdir()) or (directory / MANIFEST).exists()


def _compile(sources: dict[str, tuple[bytes, bool]], scratch: Path, jobs: int) -> Path:
    """Cython and the C compiler over `sources` (name: source bytes, is a package); returns the
    folder the extension modules are in, laid out by package.

    The sources are written into a tree in which every package has an __init__.py (WeasyPrint's
    text and formatting_structure are namespace packages), so that Cython names each module by
    its dotted path. Annotations are not taken as C types: the compiled code must accept exactly
    what the source accepts.
    """
    from Cython.Build import cythonize
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    tree, files = scratch / "src", []
    for name, (text, package) in sources.items():
        target = tree / module_file(name, package, ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text)
        parts = name.split(".")
        for level in range(1, len(parts)):  # the packages above it, if only for Cython
            (tree.joinpath(*parts[:level]) / "__init__.py").touch(exist_ok=True)
        files.append(str(target))
    extensions = cythonize(
        files,
        nthreads=jobs,
        quiet=True,
        build_dir=str(scratch / "c"),
        compiler_directives={"language_level": 3, "annotation_typing": False},
    )
    for extension in extensions:
        extension.extra_compile_args = [*extension.extra_compile_args, *COMPILE_ARGS]
    command = build_ext(Distribution({"ext_modules": extensions}))
    command.build_lib, command.build_temp = str(scratch / "lib"), str(scratch / "tmp")
    command.parallel = jobs
    command.ensure_finalized()
    command.run()
    return scratch / "lib"


def build(
    directory: Path = DIRECTORY, modules: Sequence[str] = MODULES, jobs: int | None = None
) -> dict[str, Any]:
    """Compile `modules` from their installed source into `directory` and write its manifest.

    One build at a time per folder (a lock file beside it). The new build is made in a folder
    of its own beside the old and swapped in by two renames, so a process that starts meanwhile
    finds a whole build, old or new, or for an instant none (and imports the source). The
    manifest records the hash of the bytes that were compiled.
    """
    directory = Path(directory).absolute()
    if not _ours(directory):
        raise SystemExit(f"kaohe: {directory} is not a build of compiled modules; not replacing it")
    missing_tools = toolchain_missing()
    if missing_tools:
        raise SystemExit(f"kaohe: cannot compile WeasyPrint here: no {missing_tools}")
    located = {name: installed_source(name) for name in modules}
    found = {name: where for name, where in located.items() if where is not None}
    if len(found) < len(located):
        missing = ", ".join(name for name in located if name not in found)
        raise SystemExit(f"kaohe: no installed source for {missing}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    with (directory.parent / f".{directory.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sources = {name: (path.read_bytes(), package) for name, (path, package) in found.items()}
        with tempfile.TemporaryDirectory(prefix="kaohe-compile-") as scratch:
            lib = _compile(sources, Path(scratch), jobs or os.cpu_count() or 1)
            staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
            try:
                entries = {}
                for name, (path, package) in found.items():
                    built = module_file(name, package, suffix)
                    (staging / built).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(lib / built, staging / built)
                    entries[name] = {
                        "binary": str(built),
                        "source": str(path),
                        "sha256": sha256(sources[name][0]),
                        "package": package,
                    }
                manifest = {**interpreter(), "modules": entries}
                text = json.dumps(manifest, indent=1, sort_keys=True)
                (staging / MANIFEST).write_text(text, encoding="utf-8")
                staging.chmod(0o755)  # mkdtemp's 0700 would hide it from other users
                old = staging.with_name(staging.name + ".old")
                if directory.exists():
                    directory.rename(old)
                try:
                    staging.rename(directory)
                except OSError:
                    if old.exists():
                        old.rename(directory)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return manifest


def status(directory: Path = DIRECTORY) -> tuple[bool, str]:
    """Whether every compiled module of `directory` is current, and a line saying so."""
    manifest = load_manifest(directory)
    if manifest is None:
        return False, f"kaohe: no compiled modules for this interpreter in {directory}"
    finder = CompiledFinder(directory, manifest)
    names = sorted(manifest["modules"])
    stale = [name for name in names if finder.find_spec(name) is None]
    current = len(names) - len(stale)
    line = f"kaohe: {current} of {len(names)} compiled modules current in {directory}"
    line += f"; not current: {', '.join(stale)}" if stale else ""
    return not stale and set(names) == set(MODULES), line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reports.cythonize", description=__doc__)
    ap.add_argument("command", choices=["build", "status"])
    ap.add_argument("--quiet", action="store_true", help="status: say nothing, exit 0 or 1")
    args = ap.parse_args(argv)
    if args.command == "build":
        manifest = build()
        print(f"kaohe: compiled {len(manifest['modules'])} modules into {DIRECTORY}")
        return 0
    current, line = status()
    if not args.quiet:
        print(line)
    return 0 if current else 1


if __name__ == "__main__":
    sys.exit(main())
