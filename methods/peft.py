"""Any peft tuner that works on a plain nn.Module, by name: IA3, LoHa, LoKr, VeRA, OFT, BOFT,
FourierFT, LNTuning, HRA, LoRA (with `use_dora: true` for DoRA), ... (peft library).

`tuner` names a peft config class without its `Config` suffix, case-insensitive (`ia3`
-> `IA3Config`); `args` are that class's arguments, passed through unchanged. So a user can
benchmark a tuner next to SSF without writing code:

    python launch.py method=peft method.tuner=loha 'method.args={r: 4, target_modules: [qkv]}'

peft is imported only when a peft method runs: it costs seconds at start-up.
"""
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from methods import Unsupported
from methods._common import train_head


@dataclass
class Config:
    tuner: str = "ia3"
    args: dict[str, Any] = field(default_factory=lambda: {"target_modules": ["qkv", "fc2"],
                                                          "feedforward_modules": ["fc2"]})


def tuner_configs() -> dict[str, type]:
    """peft's tuner config classes by lower-case name without `Config` (`ia3`, `lora`, ...)."""
    import peft

    return {name[:-len("Config")].lower(): cls for name, cls in vars(peft).items()
            if name.endswith("Config") and isinstance(cls, type) and issubclass(cls, peft.PeftConfig)
            and name not in ("PeftConfig", "PromptLearningConfig")}


def wrap(model: nn.Module, config, method: str) -> nn.Module:
    """Inject the tuner (peft freezes everything else), then make the head trainable.

    The head is trained in place rather than through `modules_to_save`, which would keep a
    frozen copy of it and inflate the parameter count.
    """
    from peft import get_peft_model

    try:
        peft_model = get_peft_model(model, config)
    except ValueError as e:  # peft's "Target modules ... not found in the base model"
        raise ValueError(f"{method}: backbone {type(model).__name__}: {e}") from e
    except (KeyError, TypeError, NotImplementedError) as e:  # e.g. prompt-learning tuners need transformers models
        raise Unsupported(f"{method}: peft could not wrap backbone {type(model).__name__}: "
                          f"{type(e).__name__}: {e}") from e
    train_head(model)
    return peft_model


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    configs = tuner_configs()
    cls = configs.get(cfg.tuner.lower())
    if cls is None:
        raise ValueError(f"peft: unknown tuner {cfg.tuner!r}; valid: {sorted(configs)}")
    try:
        config = cls(**cfg.args)
    except TypeError as e:
        raise ValueError(f"peft: bad arguments {sorted(cfg.args)} for {cls.__name__}: {e}") from e
    return wrap(model, config, "peft")


def merge(model: nn.Module) -> nn.Module:
    """Fold the tuner into the base weights (peft's merge_and_unload); returns the plain backbone.

    Raises:
        RuntimeError: the model has no peft tuner (never applied, or already merged).
    """
    if not hasattr(model, "merge_and_unload"):
        raise RuntimeError(f"merge: {type(model).__name__} carries no peft tuner (never applied, or already merged)")
    return model.merge_and_unload()
