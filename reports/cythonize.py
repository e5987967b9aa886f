"""Compile WeasyPrint's busiest modules with Cython for this virtualenv (reports.compiled).

    python -m reports.cythonize build     (make does it once per virtualenv: about a minute and a
                                           half on 2 cores)
    python -m reports.cythonize status    (exit 1 when a compiled module is missing or stale)

Needs a C compiler and the interpreter's headers (Debian: gcc, python3.11-dev). Where the build
fails, nothing is installed and PDFs render from the pure Python source, a third slower.
"""

from __future__ import annotations

import argparse
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
    sha256,
)


def toolchain_missing() -> str | None:
    """What compiling needs and this machine lacks (said at once, before a minute of Cython)."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"C compiler ({compiler}; on Debian: apt install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "Python headers (Python.h; on Debian: apt install python3.11-dev)"
    return None


def build(
    directory: Path = DIRECTORY, modules: Sequence[str] = MODULES, jobs: int | None = None
) -> dict[str, Any]:
    """Compile `modules` from their installed source into `directory` and write its manifest.

    The sources are copied into a scratch tree in which every package has an __init__.py
    (WeasyPrint's text and formatting_structure are namespace packages), so that Cython names
    each module by its dotted path. Annotations are not taken as C types: the compiled code
    must accept exactly what the source accepts.
    """
    from Cython.Build import cythonize
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    missing_tools = toolchain_missing()
    if missing_tools:
        raise SystemExit(f"kaohe: cannot compile WeasyPrint here: no {missing_tools}")
    jobs = jobs or os.cpu_count() or 1
    sources = {name: installed_source(name) for name in modules}
    missing = [name for name, found in sources.items() if found is None]
    if missing:
        raise SystemExit(f"kaohe: no installed source for {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="kaohe-compile-") as scratch:
        root = Path(scratch)
        files = []
        for name, (path, package) in sources.items():  # type: ignore[misc]
            parts = name.split(".")
            target = root.joinpath(*parts[:-1], parts[-1] + ".py")
            target = root.joinpath(*parts, "__init__.py") if package else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            for level in range(1, len(parts)):  # the packages above it, if only for Cython
                (root.joinpath(*parts[:level]) / "__init__.py").touch(exist_ok=True)
            files.append(str(target.relative_to(root)))
        cwd = os.getcwd()
        os.chdir(root)
        # no debugging information (it doubles the compiler's time), no warnings about generated C
        os.environ["CFLAGS"] = os.environ.get("CFLAGS", "") + " -g0 -w"
        try:
            extensions = cythonize(
                files,
                nthreads=jobs,
                quiet=True,
                compiler_directives={"language_level": 3, "annotation_typing": False},
            )
            dist = Distribution({"ext_modules": extensions})
            command = build_ext(dist)
            command.inplace = True
            command.parallel = jobs
            command.ensure_finalized()
            command.run()
        finally:
            os.chdir(cwd)
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        # made beside the folder and swapped in whole: a process starting meanwhile finds the
        # old build or the new one
        staging = directory.with_name(directory.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        entries = {}
        for name, (path, package) in sources.items():  # type: ignore[misc]
            parts = name.split(".")
            built = root.joinpath(*parts[:-1], parts[-1] + suffix)
            built = root.joinpath(*parts, f"__init__{suffix}") if package else built
            target = staging / built.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built, target)
            entries[name] = {
                "binary": str(target.relative_to(staging)),
                "source": str(path),
                "sha256": sha256(path),
                "package": package,
            }
        manifest = {**interpreter(), "modules": entries}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reports.cythonize", description=__doc__)
    ap.add_argument("command", choices=["build", "status"])
    args = ap.parse_args(argv)
    if args.command == "build":
        manifest = build()
        print(f"kaohe: compiled {len(manifest['modules'])} modules into {DIRECTORY}")
        return 0
    manifest = load_manifest()
    if manifest is None:
        print(f"kaohe: no compiled modules for this interpreter in {DIRECTORY}")
        return 1
    finder = CompiledFinder(DIRECTORY, manifest)
    stale = [name for name in manifest["modules"] if finder.find_spec(name) is None]
    print(
        f"kaohe: {len(manifest['modules']) - len(stale)} of {len(manifest['modules'])} compiled "
        f"modules current in {DIRECTORY}" + (f"; stale: {', '.join(stale)}" if stale else "")
    )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
