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


def blocks(model: nn.Module, method: str, parts: tuple[str, ...] = ("norm1", "attn", "norm2", "mlp")) -> list[nn.Module]:
    """The backbone's transformer blocks: modules with every one of `parts` as a child (timm's ViT
    `Block` and Swin `SwinTransformerBlock`; ConvNeXt and Mixer blocks have no `attn`).

    Raises:
        Unsupported: when the backbone has none, naming the method and the parts it needs.
    """
    return [m for _, m in find_modules(model, lambda n, m: all(isinstance(getattr(m, p, None), nn.Module) for p in parts),
                                       f"transformer blocks (modules with {'/'.join(parts)})", method)]


def attach(module: nn.Module, name: str, child: nn.Module, hook, pre: bool = False) -> None:
    """Register `child` as `module.<name>` (its parameters join the model's state dict under
    that name, the backbone's own keys unchanged) and `hook` as a forward (pre-)hook of `module`."""
    setattr(module, name, child)
    (module.register_forward_pre_hook if pre else module.register_forward_hook)(hook)


def remove_hooks(module: nn.Module, hook) -> None:
    """Remove `module`'s forward (pre-)hooks that are `hook` (a function) or instances of it (a class).

    Found this way rather than by a stored handle: a handle survives a deepcopy pointing at the
    original module's hooks."""
    for hooks in (module._forward_hooks, module._forward_pre_hooks):
        for key, fn in list(hooks.items()):
            if fn is hook or (isinstance(hook, type) and isinstance(fn, hook)):
                del hooks[key]


def detach(module: nn.Module, name: str, hook) -> None:
    """Undo `attach`: remove the hooks `hook` (a function, or a hook class) and the child `name`."""
    remove_hooks(module, hook)
    delattr(module, name)
