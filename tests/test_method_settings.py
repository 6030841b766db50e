"""One declaration per method setting: the defaults a user meets through every entry point agree, arguments are
checked by the optimizer's own rules at construction (no stand-in model), and every method has one import path."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

import orthoscope
from orthoscope import config
from orthoscope.optim import methods as optim_methods
from orthoscope.optim.focus import FOCUS as FOCUSOptimizer
from orthoscope.optim.hyperball import AdamH, MuonH
from orthoscope.optim.muon import Muon as MuonOptimizer
from orthoscope.optim.pion import Pion as PionOptimizer

# method class -> the optimizer classes whose signatures declare its settings
OPTIMIZERS = {optim_methods.Muon: [MuonOptimizer], optim_methods.Pion: [PionOptimizer],
              optim_methods.Hyperball: [AdamH, MuonH], optim_methods.FOCUS: [FOCUSOptimizer]}


def _signature_defaults(cls) -> dict:
    return {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("method", list(OPTIMIZERS), ids=lambda c: c.__name__)
def test_method_defaults_are_the_optimizer_s(method):
    fields = {f.name: f.default for f in dataclasses.fields(method)}
    compared = 0
    for optimizer in OPTIMIZERS[method]:
        for name, default in _signature_defaults(optimizer).items():
            if name in fields:
                assert fields[name] == default, (f"{method.__name__}.{name} = {fields[name]!r} but "
                                                 f"{optimizer.__name__}(… {name}={default!r})")
                compared += 1
    assert compared >= 4


def test_shared_settings_of_adamh_and_muonh_agree():
    adamh, muonh = _signature_defaults(AdamH), _signature_defaults(MuonH)
    shared = set(adamh) & set(muonh) & {f.name for f in dataclasses.fields(optim_methods.Hyperball)}
    assert {"lr", "adamw_lr", "granularity", "radius"} <= shared
    assert all(adamh[k] == muonh[k] for k in shared), {k: (adamh[k], muonh[k]) for k in shared}


@pytest.mark.parametrize("name", sorted(config.method_classes()))
def test_a_default_method_s_config_is_its_declared_defaults(name):
    cls = config.method_classes()[name]
    try:
        method = cls()
    except TypeError:                                   # a method with required arguments (none have defaults)
        pytest.skip(f"{name} has required arguments")
    described = config.describe(method, "method")
    declared = {f.name: f.default for f in dataclasses.fields(cls) if f.init
                and f.default is not dataclasses.MISSING}
    for key, value in declared.items():
        if key in described:
            as_data = list(value) if isinstance(value, tuple) else value
            assert described[key] == as_data, (name, key, described[key], value)
    assert config.construct(described, config.method_classes(), "method") == method


@pytest.mark.parametrize("name", sorted(orthoscope.METHODS))
def test_every_method_is_importable_from_the_top_level(name):
    method = getattr(orthoscope, name)
    assert config.method_classes()[name] is method
    assert issubclass(method, orthoscope.Method)


def test_methods_check_arguments_without_building_a_model(monkeypatch):
    def no_modules(*args, **kwargs):
        raise AssertionError("a method built an nn.Module to check its arguments")

    monkeypatch.setattr(torch.nn.Module, "__init__", no_modules)
    for method in OPTIMIZERS:
        method()
    with pytest.raises(ValueError, match="backend must be one of"):
        optim_methods.Muon(backend="qr")                       # the optimizer's own message
    with pytest.raises(ValueError, match="side must be one of"):
        optim_methods.Pion(side="left")
    with pytest.raises(ValueError, match="betas"):
        optim_methods.FOCUS(betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="granularity must be one of"):
        optim_methods.Hyperball(granularity="rows")


def test_docs_methods_md_is_generated_from_the_declarations():
    from pathlib import Path

    from orthoscope.config.method_settings import markdown, settings

    docs = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
    assert docs.read_text() == markdown(), "regenerate: python -m orthoscope methods --markdown > docs/methods.md"
    muon = {name: default for name, default, _ in settings(optim_methods.Muon)}
    assert muon["lr"] == inspect.signature(MuonOptimizer.__init__).parameters["lr"].default


def test_the_method_registry_does_not_depend_on_what_was_imported():
    import subprocess
    import sys

    script = ("import importlib, pkgutil, warnings; warnings.simplefilter('ignore'); import orthoscope; "
              "from orthoscope import config; before = sorted(config.method_classes()); "
              "[importlib.import_module(m.name) for m in pkgutil.walk_packages(orthoscope.__path__, 'orthoscope.') "
              "if '.triton' not in m.name and not m.name.endswith('__main__')]; "
              "print(before == sorted(config.method_classes()))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().endswith("True"), out.stdout[-500:] + out.stderr[-2000:]
