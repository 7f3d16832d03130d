"""Which code is the project's: what the doctor reads, and what it follows.

The project is every imported module whose file lies outside the standard
library and the installed packages (and outside signalbox): the apps a team
writes. ``--modules`` narrows it to dotted prefixes. Only modules already in
``sys.modules`` are read; the doctor never imports anything.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache
from types import ModuleType


@dataclass(frozen=True, slots=True)
class Scope:
    """The modules the doctor reads: those under ``prefixes`` (dotted module
    names), or, with none, every module of the project."""

    prefixes: tuple[str, ...] = ()

    def holds(self, module: str | None) -> bool:
        """Whether code of the module named ``module`` is the project's."""
        if not module:
            return False
        if self.prefixes:
            return any(module == p or module.startswith(f"{p}.") for p in self.prefixes)
        return _is_project(module)

    def follows(self, module: str | None) -> bool:
        """Whether a call into the module named ``module`` is read in turn:
        any module of the project, even outside ``prefixes`` (a receiver in
        one app may call a helper in another)."""
        return self.holds(module) or bool(module and _is_project(module))

    def modules(self) -> list[ModuleType]:
        """The imported modules of the scope that have a Python source file."""
        found = []
        for name, module in sorted(sys.modules.copy().items()):
            if _source(module).endswith(".py") and self.holds(name):
                found.append(module)
        return found


def _is_project(name: str) -> bool:
    if name == "signalbox" or name.startswith("signalbox."):
        return False
    source = _source(sys.modules.get(name))
    if not source:
        return False
    path = os.path.realpath(source)
    return not any(path.startswith(root) for root in _library_roots())


def _source(module: object) -> str:
    """A module's file, read from its ``__dict__``: some entries of
    ``sys.modules`` are lazy stand-ins that import on attribute access."""
    if not issubclass(type(module), ModuleType):
        return ""
    source = vars(module).get("__file__")
    return source if isinstance(source, str) else ""


@cache
def _library_roots() -> tuple[str, ...]:
    """Where the standard library and installed packages live."""
    roots = {
        os.path.realpath(path) + os.sep
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
    roots.update(
        os.path.realpath(path) + os.sep
        for path in sys.path
        if path.rstrip(os.sep).endswith(("site-packages", "dist-packages"))
    )
    return tuple(sorted(roots))
