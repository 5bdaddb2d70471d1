"""Method registry: one module per method, discovered by import.

A method module `methods/<name>.py` defines:
    Config    a dataclass of the method's own arguments (the keys of conf/method/<name>.yaml
              other than `name`), with defaults;
    apply(model, cfg) -> nn.Module
              freezes the backbone, adds or unfreezes the method's parameters and keeps the
              classifier head trainable; may return a wrapper (peft does);
and optionally
    merge(model) -> nn.Module
              folds the method's parameters into the backbone for deployment;
    RULES     {"method.<arg>": (test, what it must be)}: ranges and choices of its arguments,
              checked with bench.config.RULES when its Config is built.

The registry key is the module name, which is also the config name, the record's `method`
field and the plot label. Modules starting with `_` are helpers, not methods.
"""
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

from bench.config import RULES, from_dict


class Unsupported(Exception):
    """The method cannot apply to this backbone (for example VPT on a CNN): not a failure."""


@dataclass(frozen=True)
class Method:
    name: str
    Config: type
    apply: Callable
    merge: Callable | None
    doc: str
    rules: dict


def _discover() -> dict[str, Method]:
    registry = {}
    for info in pkgutil.iter_modules(__path__):
        name = info.name
        if name.startswith("_"):
            continue
        if name != name.lower():
            raise ValueError(f"method module {name!r} must be lower-case")
        module = importlib.import_module(f"{__name__}.{name}")
        for attr in ("Config", "apply"):
            if not hasattr(module, attr):
                raise TypeError(f"method module methods/{name}.py defines no {attr}")
        doc = (module.__doc__ or "").strip().splitlines()
        registry[name] = Method(name, module.Config, module.apply, getattr(module, "merge", None),
                                doc[0] if doc else "", getattr(module, "RULES", {}))
    return registry


METHODS: dict[str, Method] = _discover()


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return METHODS[name]


def method_config(name: str, args: dict[str, Any]):
    """The method's typed Config from a plain dict; unknown keys are an error listing the valid ones."""
    method = get_method(name)
    return from_dict(method.Config, dict(args), where="method", rules=RULES | method.rules)


def apply_method(model, method: Method, cfg, tune_norms: bool = False):
    """`method.apply(model, cfg)`, then with `tune_norms` (the `train.tune_norms` add-on, adapter_plus's
    `train_ln`) every norm's affine parameters train too (methods/ln.py)."""
    model = method.apply(model, cfg)
    if tune_norms:
        from methods.ln import unfreeze_norms

        unfreeze_norms(model)
    return model
