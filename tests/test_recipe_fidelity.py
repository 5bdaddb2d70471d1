"""The recipes as the official codes ran them, not as their module files read (issue 22): the effective
initialisation of every PEFT tensor, NOAH's dropout sites, each code's drop-path placement written out by
hand with fixed masks, PETL_Vision's shallow prompts, the head PETL_Vision builds. Tiny ViTs, CPU, no data."""
import math

import pytest
import timm
import torch
import torch.nn as nn
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench import CONF
from bench.launch.identity import to_run_config
from bench.models import init_head
from methods import METHODS, method_config

DIM = 96  # wide enough for the sampling error of a std estimate to be small (n >= 768 per tensor)


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("config", overrides=list(overrides))
    return to_run_config(OmegaConf.to_container(cfg, resolve=True), list(overrides))


def recipe_args(recipe: str, method: str, **extra) -> dict:
    """The method's arguments under `recipe` on VTAB-1k, as launch.py composes them."""
    args = composed("dataset=vtab/dtd", f"method={method}", f"recipe={recipe}", "backbone=tiny_vit").method_args
    return args | extra


def vit(seed=0, depth=2, drop_path=0.0):
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8,
                             embed_dim=DIM, depth=depth, num_heads=3, mlp_ratio=2.0, drop_path_rate=drop_path)


def peft_tensors(model) -> dict[str, tuple[nn.Module, str]]:
    """Trainable non-head parameters: name -> (owning module, attribute)."""
    head = {id(p) for p in model.get_classifier().parameters()}
    owners = {}
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in head:
                owners[f"{mname}.{pname}"] = (module, pname)
    return owners


def assert_std_002(name: str, t: torch.Tensor):
    """Mean 0 and std 0.02 within 5 sampling standard errors (trunc-normal at +-2: a normal in practice)."""
    n = t.numel()
    assert abs(t.mean().item()) < 5 * 0.02 / math.sqrt(n), name
    assert abs(t.std().item() - 0.02) < 5 * 0.02 / math.sqrt(2 * (n - 1)), (name, t.std().item())


# recipe, method, the bare tensors that keep their own init (not Linears)
EFFECTIVE_INIT = [
    ("noah", "adapter", ()),
    ("noah", "lora", ()),
    ("petl_vision", "lora", ()),
    ("petl_vision", "adaptformer", ()),
    ("petl_vision", "adapter_houlsby", ()),
    ("petl_vision", "convpass", ("conv.weight", "conv.bias")),
    ("petl_vision", "fact_tt", ()),
    ("petl_vision", "fact_tk", ("fact.C", "fact.P")),
]


@pytest.mark.parametrize("recipe,method,kept", EFFECTIVE_INIT)
def test_every_peft_linear_starts_as_the_official_runs_did(recipe, method, kept):
    args = recipe_args(recipe, method)
    assert args["init"] == "trunc_normal"
    model = METHODS[method].apply(vit(), method_config(method, args))
    tensors = peft_tensors(model)
    assert tensors
    checked = 0
    for name, (module, attr) in tensors.items():
        t = getattr(module, attr).detach()
        if any(name.endswith(k) for k in kept):
            continue
        assert isinstance(module, nn.Linear), name  # every other PEFT tensor of these methods is a Linear's
        if attr == "bias":
            assert torch.count_nonzero(t) == 0, name  # exactly zero
        else:
            assert_std_002(name, t)
            checked += 1
    assert checked >= 2
    if method == "convpass":  # the convolution is no Linear: it keeps the official identity init
        conv = model.blocks[0].attn.convpass.conv.weight
        assert torch.equal(conv[:, :, 1, 1], torch.eye(conv.shape[0])) and conv.sum() == conv.shape[0]
    if method == "fact_tk":  # bare tensors: Xavier-uniform, bound sqrt(6 / (fan_in + fan_out))
        p = model.fact.P
        assert p.abs().max() <= math.sqrt(6 / sum(p.shape)) and p.std() > 0.02 * 2


def test_defaults_outside_a_recipe_stay_the_method_codes():
    """The original authors' inits: zero branches (and peft's zero B) start equal to the backbone."""
    for method in ("lora", "adaptformer", "convpass", "fact_tt"):
        model = METHODS[method].apply(vit(), method_config(method, {}))
        zero = [n for n, (m, a) in peft_tensors(model).items() if not getattr(m, a).detach().any()]
        assert zero, method  # lora_B, up, V: zero
    adapter = METHODS["adapter"].apply(vit(), method_config("adapter", {})).blocks[0].mlp.adapter
    assert not adapter.up.weight.any() and adapter.down.weight.abs().max() <= 1 / math.sqrt(DIM)  # Kaiming-uniform
    noah_file = METHODS["adapter"].apply(vit(), method_config("adapter", {"init": "noah"})).blocks[0].mlp.adapter
    assert noah_file.up.weight.abs().max() <= math.sqrt(6 / (DIM + 8)) and 0 < noah_file.up.bias.abs().max() < 1e-5


def logits_vs_backbone(method: str, args: dict) -> float:
    x = torch.randn(4, 3, 32, 32)
    backbone = vit().eval()
    with torch.no_grad():
        want = backbone(x)
        model = METHODS[method].apply(vit(), method_config(method, args)).eval()
        return (model(x) - want).abs().max().item()


def test_a_noah_lora_run_starts_away_from_the_backbone_a_default_one_does_not():
    assert logits_vs_backbone("lora", recipe_args("noah", "lora")) > 1e-3  # B ~ N(0, 0.02): not zero
    assert logits_vs_backbone("lora", {}) == 0.0  # peft's zero B: exactly the backbone
    assert logits_vs_backbone("adapter", recipe_args("noah", "adapter")) > 1e-3


def test_noah_dropout_sites():
    """Adapter: p = 0.1 between QuickGELU and the up-projection; LoRA: p = 0.1 on the branch's input."""
    model = METHODS["adapter"].apply(vit(), method_config("adapter", recipe_args("noah", "adapter")))
    a = model.blocks[0].mlp.adapter
    assert isinstance(a.drop, nn.Dropout) and a.drop.p == 0.1
    seen = []
    for name in ("act", "drop", "up"):
        getattr(a, name).register_forward_hook(lambda m, i, o, name=name: seen.append((name, i[0], o)))
    model.eval()(torch.randn(2, 3, 32, 32))
    (n1, _, act_out), (n2, drop_in, drop_out), (n3, up_in, _) = seen[:3]
    assert (n1, n2, n3) == ("act", "drop", "up") and drop_in is act_out and up_in is drop_out
    lora = METHODS["lora"].apply(vit(), method_config("lora", recipe_args("noah", "lora")))
    qkv = lora.base_model.model.blocks[0].attn.qkv
    drop = qkv.lora_dropout["default"]
    assert isinstance(drop, nn.Dropout) and drop.p == 0.1
    got = {}
    qkv.register_forward_hook(lambda m, i, o: got.update(qkv_in=i[0]))
    drop.register_forward_hook(lambda m, i, o: got.update(drop_in=i[0]))
    qkv.lora_A["default"].register_forward_hook(lambda m, i, o: got.update(a_in=i[0]))
    lora.eval()(torch.randn(2, 3, 32, 32))
    assert torch.equal(got["drop_in"], got["qkv_in"])  # the dropout reads the layer's input ...
    assert torch.equal(got["a_in"], got["qkv_in"])  # ... and A reads the dropout's output (identity in eval)


# --- drop path, with fixed masks -------------------------------------------------------------------------------
KEEP = 0.5
MASKS = torch.tensor([[1., 0., 1.], [0., 1., 1.], [1., 1., 0.], [0., 0., 1.]])  # one row per draw, one column per image


class FixedDropPath(nn.Module):
    """timm's DropPath with its masks given: draw k (k-th call) keeps image b where MASKS[k, b], scaled 1 / KEEP."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        if not self.training:
            return x
        m = MASKS[self.calls].view(-1, 1, 1)
        self.calls += 1
        return x * m / KEEP


def D(k: int, t: torch.Tensor) -> torch.Tensor:
    """Draw k of the fixed masks applied to t, as written in the official block."""
    return t * MASKS[k].view(-1, 1, 1) / KEEP


def block0(method: str, args: dict):
    """A model whose first block draws from FixedDropPath (set before the method takes them), in train mode
    with every dropout at 0; returns (model, its first block, (input, output) of that block)."""
    model = vit(depth=1)
    b = model.blocks[0]
    b.drop_path1, b.drop_path2 = FixedDropPath(), FixedDropPath()
    dp1, dp2 = b.drop_path1, b.drop_path2
    model = METHODS[method].apply(model, method_config(method, args))
    with torch.no_grad():
        for p in model.parameters():  # move zero-initialised branches off zero
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    seen = {}
    b.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    model.train()
    with torch.no_grad():
        model(torch.randn(3, 3, 32, 32))
    return b, seen["x"], seen["y"], dp1, dp2


def test_noah_adapter_drop_path_acts_on_the_mlp_alone_with_one_draw():
    b, x, y, dp1, dp2 = block0("adapter", recipe_args("noah", "adapter", dropout=0.0))
    A = b.mlp.adapter
    with torch.no_grad():
        a = x + D(0, b.attn(b.norm1(x)))
        m = D(0, b.mlp.forward(b.norm2(a)))  # drop_path2's first (only) draw
        want = a + m + A(m)  # x + DP(mlp) + adapter(DP(mlp)), the adapter's residual being DP(mlp)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
    assert (dp1.calls, dp2.calls) == (1, 1)


def test_adapter_shared_drop_path_is_timms_one_draw_around_mlp_and_adapter():
    b, x, y, dp1, dp2 = block0("adapter", {"dropout": 0.0})
    with torch.no_grad():
        a = x + D(0, b.attn(b.norm1(x)))
        h = b.mlp.forward(b.norm2(a))
        want = a + D(0, h + b.mlp.adapter(h))
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
    assert (dp1.calls, dp2.calls) == (1, 1)


def test_petl_vision_adaptformer_draws_mlp_and_branch_separately():
    b, x, y, dp1, dp2 = block0("adaptformer", recipe_args("petl_vision", "adaptformer", dropout=0.0))
    with torch.no_grad():
        a = x + D(0, b.attn(b.norm1(x)))
        want = a + D(0, b.mlp.forward(b.norm2.forward(a))) + D(1, b.mlp.adaptformer(a))  # ft_mlp_ln: before
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
    assert (dp1.calls, dp2.calls) == (1, 2)


def test_petl_vision_convpass_draws_each_sublayer_and_bypass_separately():
    b, x, y, dp1, dp2 = block0("convpass", recipe_args("petl_vision", "convpass", dropout=0.0))
    with torch.no_grad():
        n1 = b.norm1(x)
        a = x + D(0, b.attn.forward(n1)) + D(1, b.attn.convpass(n1))
        n2 = b.norm2(a)
        want = a + D(0, b.mlp.forward(n2)) + D(1, b.mlp.convpass(n2))
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
    assert (dp1.calls, dp2.calls) == (2, 2)


def test_petl_vision_houlsby_nests_drop_path_twice():
    b, x, y, dp1, dp2 = block0("adapter_houlsby", recipe_args("petl_vision", "adapter_houlsby", dropout=0.0))
    with torch.no_grad():
        h = D(0, b.attn.forward(b.norm1(x)))
        a = x + D(1, h + b.attn.houlsby(h))
        g = D(0, b.mlp.forward(b.norm2(a)))
        want = a + D(1, g + b.mlp.houlsby(g))
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)
    assert (dp1.calls, dp2.calls) == (2, 2)
    # image 2 is kept by both attention draws (MASKS[0, 2] = MASKS[1, 2] = 1): its attention output is
    # rescaled twice, 1 / KEEP ** 2 = 4 times, where one draw would rescale it 2 times
    with torch.no_grad():
        attn = b.attn.forward(b.norm1(x))[2]
        got = a[2] - x[2] - b.attn.houlsby(h)[2] / KEEP
    torch.testing.assert_close(got, attn / KEEP ** 2, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method,placement", [("adapter", "sublayer"), ("adaptformer", "separate"),
                                              ("convpass", "separate"), ("adapter_houlsby", "nested")])
def test_placements_agree_in_evaluation_and_without_drop_path(method, placement):
    x = torch.randn(3, 3, 32, 32)
    outs = []
    for drop_path, mode in ((0.5, "eval"), (0.0, "train")):
        pair = []
        for p in ("shared", placement):
            model = METHODS[method].apply(vit(drop_path=drop_path), method_config(method, {"drop_path": p, "dropout": 0.0}))
            torch.manual_seed(1)
            with torch.no_grad():
                for q in model.parameters():
                    if q.requires_grad:
                        q.add_(torch.randn_like(q) * 0.05)
                pair.append(getattr(model, mode)()(x))
        outs.append(pair)
    for shared, other in outs:
        torch.testing.assert_close(shared, other, atol=1e-6, rtol=0)


# --- PETL_Vision's shallow prompts ---------------------------------------------------------------------------
def test_petl_vision_shallow_prompts_reach_the_first_block_only():
    args = recipe_args("petl_vision", "vpt_shallow")
    assert args["shallow_prompts"] == "remove"
    model = METHODS["vpt_shallow"].apply(vit(depth=3), method_config("vpt_shallow", args)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        prompts = model.vpt.tokens[0].expand(2, -1, -1)
        t = model.blocks[0].forward(torch.cat([prompts, t], 1))  # PETL_Vision prepends, before the class token
        t = t[:, args["length"]:]  # ... and cuts the prompt outputs after block 0
        for blk in model.blocks[1:]:
            t = blk.forward(t)
        want = model.forward_head(model.norm(t))
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=0)
        carried = METHODS["vpt_shallow"].apply(vit(depth=3), method_config("vpt_shallow", args | {"shallow_prompts": "carry"}))
        assert (carried.eval()(x) - want).abs().max() > 1e-4  # VPT's: the prompts flow on through blocks 1 and 2
    assert recipe_args("vpt", "vpt_shallow")["shallow_prompts"] == "carry"


def test_petl_vision_head_is_pytorchs_default_linear():
    rc = composed("dataset=vtab/dtd", "method=linear", "recipe=petl_vision", "backbone=tiny_vit")
    assert rc.train.head_init == "pytorch"
    model = vit()
    torch.manual_seed(3)
    init_head(model, "pytorch")
    head = model.get_classifier()
    bound = 1 / math.sqrt(head.in_features)  # Kaiming-uniform (a = sqrt(5)) and the bias: U(-1/sqrt(fan_in), ..)
    assert head.weight.abs().max() <= bound and head.bias.abs().max() <= bound and head.bias.abs().min() > 0
    assert head.weight.std() > 0.02 * 2  # not timm's std 0.02
    assert composed("dataset=vtab/dtd", "method=lora", "recipe=noah", "backbone=tiny_vit").train.head_init == "timm"


# --- the recipe's checkpoint ----------------------------------------------------------------------------------
def test_the_recipes_checkpoint_is_the_default_backbone_and_the_command_line_wins():
    from bench import recipes

    for name in recipes.names():  # every recipe's checkpoint is a backbone config
        assert (CONF / "backbone" / f"{recipes.info(name)['checkpoint']}.yaml").is_file(), name
    for dataset, recipe, want in [("vtab/dtd", "noah", "vit_base_patch16_224.orig_in21k"),
                                  ("vtab/dtd", "petl_vision", "vit_base_patch16_224.orig_in21k"),
                                  ("vtab/dtd", "vpt", "vit_base_patch16_224.orig_in21k"),
                                  ("vtab/dtd", None, "vit_base_patch16_224.augreg_in21k"),  # ssf, vtab's default
                                  ("fgvc/cub", "vpt", "vit_base_patch16_224.orig_in21k"),
                                  ("fewshot/food101", None, "vit_base_patch16_224.orig_in21k"),  # noah
                                  ("cifar100/cifar100", None, "vit_base_patch16_224.augreg_in21k"),
                                  ("mini/count", None, "vit_tiny_mini")]:  # the mini benchmark keeps its own
        method = "vpt" if recipe in ("noah", "vpt") else "lora"
        args = [f"dataset={dataset}", f"method={method}"] + ([f"recipe={recipe}"] if recipe else [])
        rc = composed(*args)
        assert rc.backbone.name == want and (rc.backbone.arch == want or want == "vit_tiny_mini"), args
        assert rc.recipe.checkpoint == want
        assert composed(*args, "backbone=tiny_vit").backbone.name == "tiny_vit"  # backbone= still wins
    rc = composed("dataset=vtab/dtd", "method=lora", "recipe=noah", "backbone.file=/w/ViT-B_16.safetensors",
                  "backbone.kwargs.img_size=224")
    assert rc.backbone.name == "vit_base_patch16_224.orig_in21k" and rc.backbone.file == "/w/ViT-B_16.safetensors"
    assert rc.backbone.kwargs == {"img_size": 224}  # backbone.<key>= applies to the recipe's backbone


@pytest.mark.process
def test_weights_that_cannot_be_had_stop_the_run_in_one_line_naming_backbone_file(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(CONF.parent))
    proc = subprocess.run([sys.executable, "launch.py", "method=lora", "dataset=vtab/dtd", "recipe=noah",
                           f"results_dir={tmp_path / 'results'}"], cwd=CONF.parent, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "vit_base_patch16_224.orig_in21k" in proc.stderr and "backbone.file=" in proc.stderr
    assert not list(tmp_path.rglob("record.json"))  # before any run folder is written


def test_check_weights_offline_and_with_a_file(tmp_path, monkeypatch):
    import huggingface_hub

    from bench.config import BackboneConfig, ConfigError, backbone_config
    from bench.models import check_weights

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, f: None)  # an empty cache
    with pytest.raises(ConfigError, match=r"backbone vit_base_patch16_224\.augreg_in21k: .*offline.*backbone\.file="):
        check_weights(backbone_config("vit_base_patch16_224.augreg_in21k"))
    check_weights(BackboneConfig(name="x", arch="vit_base_patch16_224.augreg_in21k", file=str(tmp_path / "w.pth")))
    check_weights(backbone_config("tiny_vit"))  # not pretrained: nothing to fetch
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, f: "/cache/" + f)  # cached
    check_weights(backbone_config("vit_base_patch16_224.augreg_in21k"))


# --- VPT on FGVC ---------------------------------------------------------------------------------------------
def test_vpt_fgvc_transforms_equal_vpts_torchvision_composition():
    """KMnP/vpt:src/data/transforms.py get_transforms(split, 224), written out, on a generated image."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms as T

    from bench.data.transforms import eval_transform, train_transform

    ds = composed("dataset=fgvc/cub", "method=vpt", "recipe=vpt").dataset
    assert (ds.train_aug, ds.resize, ds.crop_pct, ds.interpolation, ds.norm) == \
        ("crop_flip", "crop", 0.875, "bilinear", "imagenet")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 417, 3), dtype=np.uint8))
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    vpt_train = T.Compose([T.Resize(256), T.RandomCrop(224), T.RandomHorizontalFlip(0.5), T.ToTensor(), normalize])
    vpt_eval = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ours_train, ours_eval = train_transform(ds, mean, std), eval_transform(ds, mean, std)
    flips = set()
    for seed in range(6):  # the same random crop and flip for the same generator state
        torch.manual_seed(seed)
        want = vpt_train(img)
        torch.manual_seed(seed)
        got = ours_train(img)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        torch.manual_seed(seed)
        flips.add(not torch.equal(want, T.Compose([T.Resize(256), T.RandomCrop(224), T.ToTensor(), normalize])(img)))
    assert flips == {True, False}  # the seeds cover both a flipped and an unflipped crop
    torch.testing.assert_close(ours_eval(img), vpt_eval(img), atol=1e-5, rtol=0)
    assert ours_train(img).shape == (3, 224, 224)


def test_vpt_fgvc_per_task_settings():
    cub = {m: composed("dataset=fgvc/cub", f"method={m}", "recipe=vpt").train for m in ("vpt", "linear", "full", "bias")}
    assert (cub["vpt"].lr, cub["vpt"].weight_decay, cub["vpt"].optimizer, cub["vpt"].batch_size) == (0.1, 0.01, "sgd", 128)
    assert (cub["linear"].lr, cub["linear"].batch_size) == (0.1, 1024)
    assert (cub["full"].lr, cub["full"].weight_decay, cub["full"].optimizer, cub["full"].batch_size,
            cub["full"].warmup_epochs) == (0.00375, 0.01, "adamw", 384, 5)
    assert (cub["bias"].lr, cub["bias"].optimizer) == (0.1, "sgd")
    for t in cub.values():
        assert (t.epochs, t.lr_base_batch, t.head_init, t.warmup_prefix, t.drop_path) == (100, 0, "vpt", True, 0.0)
    cars = composed("dataset=fgvc/stanford_cars", "method=full", "recipe=vpt").train
    assert (cars.lr, cars.weight_decay) == (0.0375, 0.001)  # configs/finetune/cars.yaml
    assert composed("dataset=fgvc/stanford_cars", "method=vpt", "recipe=vpt").train.lr == 0.001  # configs/prompt/cars.yaml
    assert composed("dataset=fgvc/cub", "method=ssf").train.lr == 1e-2  # the SSF recipe, FGVC's default, as before


@pytest.mark.process
def test_vpt_fgvc_sweep_composes_20_runs(tmp_path):
    from conftest import run_cli

    proc = run_cli("launch.py", "-m", "method=vpt,linear,full,bias", "dataset=fgvc/*", "recipe=vpt", "--status",
                   f"results_dir={tmp_path}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "20 runs in the grid" in proc.stdout
    assert proc.stdout.count("vit_base_patch16_224.orig_in21k") == 20  # the recipe's checkpoint
