"""Helpers shared by the method modules. They know modules, never data or training loops."""
import torch.nn as nn

from methods import Unsupported


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def train_head(model: nn.Module) -> None:
    """Make the classifier head trainable (timm's `get_classifier` on every architecture)."""
    for p in model.get_classifier().parameters():
        p.requires_grad_(True)


def is_head(name: str, module: nn.Module, classifier: nn.Module) -> bool:
    """Part of the classification head? timm names it `head` (with ConvNeXt's pre-logits norm inside)."""
    return name == "head" or name.startswith("head.") or module is classifier


def find_modules(model: nn.Module, predicate, what: str, method: str) -> list[tuple[str, nn.Module]]:
    """(name, module) pairs of the backbone (head excluded) matching `predicate(name, module)`.

    Raises:
        Unsupported: when nothing matches, naming the backbone class, the method and `what`.
    """
    classifier = model.get_classifier()
    found = [(n, m) for n, m in model.named_modules() if n and not is_head(n, m, classifier) and predicate(n, m)]
    if not found:
        raise Unsupported(f"{method}: no {what} found in backbone {type(model).__name__}")
    return found
