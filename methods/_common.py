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


def redraw_linears(modules) -> None:
    """Draw every nn.Linear inside `modules` (an nn.Module or an iterable of them) as timm's ViT init
    does: weight trunc-normal std 0.02 (cut at +-2, i.e. 100 std: a normal in practice), bias zero.

    What NOAH's `self.apply(_init_vit_weights)` (timm 0.5.4) and PETL_Vision's `init_weights`
    (timm 0.9.12 `init_weights_vit_timm`) do to the PEFT modules, after the modules' own init ran:
    both constructors redraw the whole model and the pretrained checkpoint then restores only the
    backbone's tensors. Convolutions and bare parameter tensors are not Linears and keep their init.
    """
    import torch
    from timm.layers import trunc_normal_

    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    with torch.no_grad():
        for root in modules:
            for m in root.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)


DROP_PATHS = ("shared", "sublayer", "separate", "nested")  # where drop path acts around a PEFT branch


def take_drop_path(block: nn.Module, index: int, method: str) -> nn.Module:
    """Take `block.drop_path<index>` (timm's stochastic depth around sublayer `index`, 1 attention,
    2 MLP) out of the block's own sum, leaving the identity there, and return it for the method's
    hook to apply where the official code applies it. Called twice it draws twice (one mask per
    call); it is identity in evaluation, so evaluated and merged models are unchanged.

    Raises:
        Unsupported: the block has no `drop_path<index>` (timm's ViT blocks have both).
    """
    name = f"drop_path{index}"
    dp = getattr(block, name, None)
    if not isinstance(dp, nn.Module):
        raise Unsupported(f"{method}: block {type(block).__name__} has no {name}; a drop-path placement other than "
                          f"`shared` needs timm's ViT blocks")
    setattr(block, name, nn.Identity())
    return dp
