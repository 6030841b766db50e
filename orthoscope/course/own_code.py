"""Is the student's function their own code, or the package's answer? ``from orthoscope.ortho.cayley import cayley``
would otherwise pass the Cayley check: the checks compare with exactly that function.

Two looks, both needed:

* **what the function refers to** (``package_references``): the function itself, what it wraps (closures, defaults,
  ``functools.partial``, bound methods), every global it loads and every module it imports — followed into the
  helper functions it calls that are defined beside it (a library's functions are only located, not read) — and
  strings that name an orthoscope module (``importlib.import_module("orthoscope…")``).
  This catches a reference on a branch the check's inputs never take.
* **what it runs** (``run_watched``): a profile hook, set only while the student's function runs, records every
  Python function entered whose code lives in the orthoscope package — however it was reached (``sys.modules``,
  ``getattr`` on a string, an object's method).

The student's function runs on tensors the check makes; nothing from orthoscope is needed to write any exercise.
"""
from __future__ import annotations

import dis
import functools
import os
import re
import sys
import types
from pathlib import Path

PACKAGE = "orthoscope"
# .../orthoscope/, as imported and with links resolved: a code object's file name is the path it was imported from
PACKAGE_DIRS = tuple({str(Path(__file__).parents[1]) + os.sep, str(Path(__file__).resolve().parents[1]) + os.sep})
_MODULE_PATH = re.compile(rf"^{PACKAGE}(\.[A-Za-z_]\w*)*$")
_LOADS = {"LOAD_GLOBAL", "LOAD_NAME", "IMPORT_NAME"}


def is_package_name(module: str | None) -> bool:
    return isinstance(module, str) and (module == PACKAGE or module.startswith(PACKAGE + "."))


def describe(obj) -> str:
    """``orthoscope.ortho.cayley.cayley`` for a function, the module's name for a module, the type for the rest."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
        return f"{obj.__module__}.{getattr(obj, '__qualname__', obj.__name__)}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def _home_module(obj) -> str | None:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
        return getattr(obj, "__module__", None)
    return type(obj).__module__


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):             # lambdas, comprehensions and functions defined inside
            yield from _code_objects(const)


def package_references(fn) -> list[str]:
    """What ``fn`` refers to from the orthoscope package, described (empty when it is the student's own code)."""
    found, seen, todo = [], set(), [fn]
    root = fn.func if isinstance(fn, functools.partial) else getattr(fn, "__func__", fn)
    home = getattr(root, "__globals__", None)
    while todo:
        obj = todo.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        if is_package_name(_home_module(obj)):
            found.append(describe(obj))
            continue
        if isinstance(obj, functools.partial):
            todo += [obj.func, *obj.args, *obj.keywords.values()]
        elif isinstance(obj, types.MethodType):
            todo += [obj.__func__, obj.__self__]
        elif isinstance(obj, types.FunctionType) and obj.__globals__ is home:
            # the student's own functions (same notebook or module) are read; a library's (torch's) only located
            todo += [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
            todo += list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
            for code in _code_objects(obj.__code__):
                for ins in dis.get_instructions(code):
                    if ins.opname == "IMPORT_NAME" and is_package_name(ins.argval):
                        found.append(ins.argval)
                    elif ins.opname in _LOADS and ins.argval in obj.__globals__:
                        todo.append(obj.__globals__[ins.argval])
                found += [c for c in code.co_consts if isinstance(c, str) and _MODULE_PATH.match(c)]
    return list(dict.fromkeys(found))


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:                                      # an empty closure cell (a name assigned later)
        return False
    return True


def run_watched(fn, args: tuple):
    """``fn(*args)`` with a profile hook that records the first Python function entered whose code lives in the
    orthoscope package. Returns ``(result, exception or None, entered)``, ``entered`` a list of 0 or 1
    ``module.qualname``. Chains to a profiler already set, and restores it."""
    entered: list[str] = []
    previous = sys.getprofile()

    def hook(frame, event, arg):
        if event == "call" and not entered and frame.f_code.co_filename.startswith(PACKAGE_DIRS):
            code = frame.f_code
            entered.append(f"{frame.f_globals.get('__name__', '?')}.{getattr(code, 'co_qualname', code.co_name)}")
        if previous is not None:
            previous(frame, event, arg)

    result = error = None
    sys.setprofile(hook)                     # set and reset in this frame: the hook sees only fn and what it calls
    try:
        result = fn(*args)
    except Exception as e:  # noqa: BLE001 — the caller turns any error in student code into feedback
        error = e
    finally:
        sys.setprofile(previous)
    return result, error, entered
