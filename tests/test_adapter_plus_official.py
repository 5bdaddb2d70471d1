"""Adapter+ and the points of its design space against visinf/adapter_plus's own code (issue 33): its dumps
(tests/fixtures/adapter_plus_official.pt, written by scripts/adapter_plus_official.py from its checkout)
give the effective init bit for bit, the logits in evaluation and in training with fixed drop-path masks,
the gradients of the adapters and the head, and its trainable parameter counts on ViT-B/16."""
import math
import re
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
from timm.layers import DropPath

from bench.config import backbone_config
from bench.models import build_backbone
from methods import METHODS, Unsupported, method_config
from methods._adapter import POSITIONS
from methods._bottleneck import Bottleneck
from scripts.adapter_plus_official import FixedDropPath, draw  # the dump's own: masks and backbone as it drew them

DUMP = torch.load(Path(__file__).parent / "fixtures" / "adapter_plus_official.pt", weights_only=True)
TINY = dict(num_classes=5, img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, drop_path_rate=0.2)
SUBLAYER = ("intermediate", "houlsby")  # positions whose adapters sit on the sublayers (mlp, attn)


def our_args(cfg: dict) -> dict:
    """Its adapter config (conf/adapter/*.yaml keys) as `method=adapter_plus` arguments."""
    scaling = cfg["scaling"] if cfg["scaling"] in ("channel", "learned") else "constant"
    return dict(bottleneck=cfg["dim"], position=cfg["config"], scaling=scaling,
                scale=1.0 if scaling != "constant" else float(cfg["scaling"]), init=cfg["init"],
                norm=cfg["norm_layer"], bias=cfg["bias"], dropout=float(cfg["dropout"]),
                branch_drop_path=float(cfg["drop_path"]))


def our_key(key: str, position: str) -> str:
    """Its parameter name -> ours: blocks.i.adapter[_attn].bottleneck.{1,4}, norm_a, scaling, drop_path_a."""
    i, which, rest = re.fullmatch(r"blocks\.(\d+)\.(adapter|adapter_attn)\.(.*)", key).groups()
    for theirs, ours in (("bottleneck.1", "down"), ("bottleneck.4", "up"), ("norm_a", "norm"),
                         ("scaling", "scale"), ("drop_path_a", "drop_branch")):
        rest = rest.replace(theirs, ours)
    where = "attn.adapter" if which == "adapter_attn" else "mlp.adapter" if position in SUBLAYER else "adapter"
    return f"blocks.{i}.{where}.{rest}"


def ours(point: str) -> tuple[nn.Module, dict]:
    """Our model of the dump's design point, with its backbone, adapters and drop-path masks."""
    d = DUMP["forward"][point]
    position = d["config"]["config"]
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY).double()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert sorted(shapes) == DUMP["backbone_keys"]
    model.load_state_dict(draw(list(shapes), shapes))
    for name, masks in d["masks"].items():  # the block's own: set before the method takes any of them
        if ".adapter" not in name:
            block, attr = name.rsplit(".", 1)
            setattr(model.get_submodule(block), attr, FixedDropPath(masks, 1 - model.get_submodule(name).drop_prob))
    model = METHODS["adapter_plus"].apply(model, method_config("adapter_plus", our_args(d["config"]))).double()
    for name, masks in d["masks"].items():  # the branches'
        if ".adapter" in name:
            parent, attr = our_key(name, position).rsplit(".", 1)
            dp = model.get_submodule(parent).get_submodule(attr)
            assert isinstance(dp, DropPath)
            setattr(model.get_submodule(parent), attr, FixedDropPath(masks, 1 - dp.drop_prob))
    ours_state = {n for n, p in model.named_parameters() if p.requires_grad} - {"head.weight", "head.bias"}
    assert ours_state == {our_key(k, position) for k in d["adapters"]}, point  # the same tensors, no more
    with torch.no_grad():
        for k, v in d["adapters"].items():
            model.get_parameter(our_key(k, position)).copy_(v)
    return model, d


def x_y():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64), \
        torch.tensor([1, 3, 4])


@pytest.mark.parametrize("point", sorted(DUMP["forward"]))
def test_logits_and_gradients_equal_the_official_code(point):
    model, d = ours(point)
    x, y = x_y()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), d["eval"], rtol=1e-9, atol=1e-9)
    if "train" not in d:  # dropout: random draws in training, evaluation only
        return
    logits = model.train()(x)
    torch.testing.assert_close(logits.detach(), d["train"], rtol=1e-9, atol=1e-9)
    nn.functional.cross_entropy(logits, y).backward()
    position = d["config"]["config"]
    for k, g in d["grads"].items():
        mine = model.get_parameter(k if k.startswith("head.") else our_key(k, position)).grad
        torch.testing.assert_close(mine.float(), g, rtol=1e-5, atol=1e-7, msg=lambda m, k=k: f"{point} {k}: {m}")
    assert (logits.detach() - d["eval"]).abs().max() > 1e-3  # the masks did drop something


@pytest.mark.parametrize("case", range(len(DUMP["init"])))
def test_init_is_the_official_adapters_bit_for_bit(case):
    """Its `Adapter(48, bottleneck_dim=8, ...)` after torch.manual_seed(0): ours draws the same tensors."""
    cfg, state = DUMP["init"][case]
    scaling = cfg["scaling"] if isinstance(cfg["scaling"], str) else "constant"
    torch.manual_seed(0)
    mine = Bottleneck(48, 8, 1.0, cfg["init"], "gelu", scaling=scaling, norm=cfg["norm"], bias=cfg["bias"])
    got = {our_key(f"blocks.0.adapter.{k}", "post").split("adapter.", 1)[1]: v for k, v in state.items()}
    assert set(mine.state_dict()) == set(got)
    for k, v in mine.state_dict().items():
        assert torch.equal(v, got[k]), (cfg, k)


@pytest.mark.parametrize("point", sorted(DUMP["model_init"]))
def test_a_built_model_holds_the_official_effective_init(point):
    """Nothing redraws the adapters after their own init, in its model (the dump) or ours (same statistics)."""
    want = DUMP["model_init"][point]
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY)
    model = METHODS["adapter_plus"].apply(model, method_config("adapter_plus", our_args(DUMP["forward"][point]["config"])))
    added = {n: p.detach() for n, p in model.named_parameters() if ".adapter." in n}
    weights = torch.cat([v.flatten() for n, v in added.items() if n.endswith(("down.weight", "up.weight"))])
    assert want["max_abs"] <= 0.02 and weights.abs().max() <= 0.02  # trunc-normal cut at +-2 std (0.01)
    # the std of a normal cut at +-2 std: 0.0088; two draws within 5 standard errors of their difference
    assert abs(weights.std().item() - want["std"]) < 5 * want["std"] / math.sqrt(weights.numel())
    assert want["zero_biases"] == all(not v.any() for n, v in added.items() if n.endswith(("down.bias", "up.bias")))
    assert want["unit_scales"] == all(bool((v == 1).all()) for n, v in added.items() if n.endswith("scale"))


def test_trainable_counts_on_vit_b16_equal_the_official_code():
    with torch.device("meta"):
        backbone = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=100)
    for point, count in DUMP["counts"].items():
        model = METHODS["adapter_plus"].apply(backbone, method_config("adapter_plus",
                                                                       our_args(DUMP["forward"][point]["config"])))
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count, point
        with torch.device("meta"):
            backbone = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=100)
    assert DUMP["counts"]["adapter_plus"] == 242_884  # 12 x (768 x 8 + 8 + 8 x 768 + 768 + 768) + 76,900 (head)


# --- the design space on our tiny families, and the older configs' keys -------------------------------------
@pytest.mark.parametrize("family", ["tiny_vit", "tiny_swin"])
@pytest.mark.parametrize("position", POSITIONS)
def test_every_position_trains_on_the_transformer_families(family, position):
    torch.manual_seed(0)
    model = build_backbone(backbone_config(family), num_classes=10)
    args = {"position": position}
    if family == "tiny_swin" and position == "houlsby":  # window attention: no per-image drop path on its output
        with pytest.raises(Unsupported, match="windows"):
            METHODS["adapter_plus"].apply(model, method_config("adapter_plus", args))
        return
    model = METHODS["adapter_plus"].apply(model, method_config("adapter_plus", args))
    added = [(n, p) for n, p in model.named_parameters() if ".adapter." in n]
    assert added and all(p.requires_grad for _, p in added)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    nn.functional.cross_entropy(model.train()(x), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in added), position


def test_adapter_and_adapter_houlsby_keep_their_keys():
    def added(name: str) -> set[str]:
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8,
                                  embed_dim=48, depth=2, num_heads=3)
        keys = set(model.state_dict())
        return set(METHODS[name].apply(model, method_config(name, {})).state_dict()) - keys

    linear = {f"{p}.{t}" for p in ("down", "up") for t in ("weight", "bias")}
    assert added("adapter") == {f"blocks.{i}.mlp.adapter.{k}" for i in range(2) for k in linear}
    assert added("adapter_houlsby") == {f"blocks.{i}.{s}.houlsby.{k}" for i in range(2) for s in ("attn", "mlp")
                                        for k in linear}
    assert added("adapter_plus") == {f"blocks.{i}.adapter.{k}" for i in range(2) for k in (*linear, "scale")}


def test_sublayer_adapters_read_the_output_after_layer_scale():
    """Adapter+'s forward_houlsby on a LayerScale block: y = ls(sublayer), x + y + a(y), in evaluation."""
    torch.manual_seed(0)
    model = build_backbone(backbone_config("tiny_dinov2"), num_classes=10)
    b = model.blocks[0]
    assert not isinstance(b.ls1, nn.Identity)
    with torch.no_grad():
        b.ls1.gamma.fill_(0.5)
        b.ls2.gamma.fill_(2.0)
    model = METHODS["adapter_plus"].apply(model, method_config("adapter_plus", {"position": "houlsby"})).eval()
    seen = {}
    b.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        x = seen["x"]
        h = b.ls1.forward(b.attn.forward(b.norm1(x)))
        x = x + h + b.attn.adapter(h)
        g = b.ls2.forward(b.mlp.forward(b.norm2(x)))
        torch.testing.assert_close(seen["y"], x + g + b.mlp.adapter(g), atol=1e-6, rtol=1e-6)
