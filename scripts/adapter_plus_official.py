"""Dump what visinf/adapter_plus's own code computes, for tests/test_adapter_plus_official.py.

    git clone https://github.com/visinf/adapter_plus /tmp/adapter_plus   # its code is never copied here
    python -m venv --system-site-packages /tmp/ap && /tmp/ap/bin/pip install --no-deps timm==1.0.7
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/ap/lib/python3.11/site-packages/zz.pth  # torch etc.
    /tmp/ap/bin/python scripts/adapter_plus_official.py /tmp/adapter_plus --out tests/fixtures/adapter_plus_official.pt

Imports its `adapter_plus` package (adapter_plus/vit_adapter.py: `Adapter`, `AdapterBlock`,
`VisionTransformerAdapter`, which patches timm's ViT factory) with the timm its environment.yml pins
(1.0.7: newer timm passes block arguments its AdapterBlock does not take) and writes, in float64:
- `init`: the state dict of its `Adapter` built alone after `torch.manual_seed(0)`, for each init
  (houlsby, lora, bert) x norm x scaling x bias case: our branch built under the same seed must hold
  the same tensors bit for bit;
- `forward`: for each design point (post = Adapter+, pre, intermediate, parallel, houlsby, pfeiffer,
  learned scalar with norm, no bias, dropout): a tiny ViT (timm's vit_tiny_patch16_224 at width 48,
  depth 2, 32 px, patch 8; every backbone tensor drawn from a seeded generator in sorted key order
  (`draw`, which the test repeats), so no timm version's init is involved; adapters set to fixed random
  values, stored under its names), the logits in eval mode, and in
  train mode with every DropPath replaced by fixed masks (stored), the loss's gradients of the adapters
  and the head (not with dropout, whose draws are random);
- `model_init`: what its whole model's adapters hold once built (its blocks are rebuilt after timm's
  `init_weights`, so nothing redraws them): the largest |weight|, the weights' std, whether every bias
  is zero and every scale one;
- `counts`: its trainable parameter count (its AdapterModel's rule: the adapters and the head) on
  ViT-B/16 (vit_base_patch16_224, pretrained=False) with 100 classes, for each design point at rank 8.
"""
import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import timm
import torch
import torch.nn as nn
from timm.layers import DropPath

TINY = dict(num_classes=5, img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, drop_path_rate=0.2)
BASE = dict(act_layer=True, norm_layer=False, bias=True, init="houlsby", scaling=1.0, dim=8, attn_adapter=False,
            dropout=0.0, drop_path=0.1)  # its conf/adapter/base_adapter.yaml
# its conf/adapter/*.yaml and ablation configs, by our name for the point
POINTS = {
    "adapter_plus": dict(config="post", scaling="channel"),
    "post": dict(config="post"),
    "pre": dict(config="pre"),
    "intermediate": dict(config="intermediate"),
    "parallel": dict(config="parallel"),
    "houlsby": dict(config="houlsby", attn_adapter=True),
    "pfeiffer": dict(config="pfeiffer", norm_layer=True),
    "norm_learned": dict(config="post", norm_layer=True, scaling="learned"),  # houlsby_norm_scaling
    "no_bias": dict(config="post", bias=False, scaling="channel"),  # houlsby_nobias (+ channel scale)
    "dropout": dict(config="post", dropout=0.1, drop_path=0.0),  # adapter_dropout_*: eval only
}
INIT_CASES = [dict(init=i, norm=n, scaling=s, bias=b) for i in ("houlsby", "lora", "bert")
              for n, s, b in ((False, "channel", True), (True, "learned", True), (False, 1.0, False))]


class FixedDropPath(nn.Module):
    """DropPath with a stored mask per call (one row per call, one column per image), scaled 1 / keep."""

    def __init__(self, masks: torch.Tensor, keep: float):
        super().__init__()
        self.masks, self.keep, self.calls = masks, keep, 0

    def forward(self, x):
        if not self.training:
            return x
        m = self.masks[self.calls].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        self.calls += 1
        return x * m / self.keep


def fix_drop_paths(model: nn.Module, batch: int, gen: torch.Generator) -> dict:
    masks = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, DropPath):
                full = f"{name}.{child_name}" if name else child_name
                masks[full] = (torch.rand(2, batch, generator=gen) > 0.5).double()
                setattr(module, child_name, FixedDropPath(masks[full], 1 - child.drop_prob))
    return masks


def draw(keys: list[str], shapes: dict, seed: int = 0) -> dict:
    """The backbone's tensors: N(0, 0.1^2) each, norm weights around 1, drawn in sorted key order."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(keys):
        v = torch.randn(shapes[k], generator=gen, dtype=torch.float64) * 0.1
        out[k] = v + 1 if "norm" in k and k.endswith(".weight") else v
    return out


def official_vit(arch: str, cfg: dict, **kwargs) -> nn.Module:
    return timm.create_model(arch, adapter=True, pretrained=False, adapter_config=SimpleNamespace(**cfg), **kwargs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a clone of github.com/visinf/adapter_plus")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/adapter_plus_official.pt"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.checkout))
    from adapter_plus import Adapter  # noqa: E402  (patches timm's ViT factory)

    out = {"timm": timm.__version__, "init": [], "forward": {}, "counts": {}, "model_init": {}}
    for case in INIT_CASES:
        torch.manual_seed(0)
        a = Adapter(48, bottleneck_dim=8, act_layer=nn.GELU, norm_layer=nn.LayerNorm if case["norm"] else None,
                    scaling=case["scaling"], init=case["init"], bias=case["bias"])
        out["init"].append((case, {k: v.clone() for k, v in a.state_dict().items()}))

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([1, 3, 4])  # the test draws x the same way
    for name, point in POINTS.items():
        cfg = BASE | point
        model = official_vit("vit_tiny_patch16_224", cfg, **TINY).double()
        built = {k: v for k, v in model.state_dict().items() if ".adapter" in k}
        weights = torch.cat([v.flatten() for k, v in built.items() if k.endswith("weight") and "norm_a" not in k])
        out["model_init"][name] = dict(
            max_abs=weights.abs().max().item(), std=weights.std().item(),
            zero_biases=all(not v.any() for k, v in built.items() if k.endswith("bias") and "norm_a" not in k),
            unit_scales=all(bool((v == 1).all()) for k, v in built.items() if k.endswith("scaling")))
        shapes = {k: v.shape for k, v in model.state_dict().items() if ".adapter" not in k}
        out["backbone_keys"] = sorted(shapes)
        missing, unexpected = model.load_state_dict(draw(list(shapes), shapes), strict=False)
        assert not unexpected and all(".adapter" in k for k in missing), (missing, unexpected)
        adapters = {}
        with torch.no_grad():
            for k in missing:
                p = model.get_parameter(k)
                v = torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.2 + (1.0 if "scaling" in k else 0)
                adapters[k] = v.float()  # stored in float32, used exactly (float32 values in float64)
                p.copy_(adapters[k])
        model.requires_grad_(False)
        model.head.requires_grad_(True)
        for m in model.modules():
            if isinstance(m, Adapter):
                m.requires_grad_(True)
        with torch.no_grad():
            eval_logits = model.eval()(x)
        masks = fix_drop_paths(model, len(x), gen)
        model.train()
        logits = model(x)
        nn.functional.cross_entropy(logits, y).backward()
        grads = {k: p.grad.float() for k, p in model.named_parameters() if p.requires_grad}  # float32: to ~1e-7
        out["forward"][name] = dict(config=cfg, adapters=adapters, eval=eval_logits, masks=masks)
        if cfg["dropout"] == 0:  # with dropout the train-mode draws are random: evaluation only
            out["forward"][name] |= dict(train=logits.detach(), grads=grads)
        big = official_vit("vit_base_patch16_224", cfg, num_classes=100)
        big.requires_grad_(False)
        big.head.requires_grad_(True)
        for m in big.modules():
            if isinstance(m, Adapter):
                m.requires_grad_(True)
        out["counts"][name] = sum(p.numel() for p in big.parameters() if p.requires_grad)
        print(f"{name}: {out['counts'][name]:,} trainable on ViT-B/16 (100 classes)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    torch.save(out, tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
