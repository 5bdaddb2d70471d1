"""Every method on every backbone family (tiny timm variants, random weights, CPU):
parameter formulas, what trains, exact merging, export into plain timm."""
import dataclasses
import json

import pytest
import timm
import torch
import torch.nn.functional as F

import methods
from bench.config import BackboneConfig, backbone_config
from bench.data import mini
from bench.models import build_backbone
from bench.run.deploy import deployable, n_params
from conftest import SWEEP_BACKBONES, SWEEP_PARTS, SWEEP_TASK
from methods import METHODS, method_config
from one_interpreter import OneInterpreter

FAMILIES = ["tiny_vit", "tiny_swin", "tiny_convnext", "tiny_mixer"]
VIT = SWEEP_BACKBONES[0]  # the sweep's ViT: the mini backbone, tiny_vit's shape with pretrained weights
SWEEP_CLASSES = mini.TASKS[SWEEP_TASK.split("/")[1]].num_classes  # the swept task's head
HEAD = 490  # 48 features x 10 classes + 10 (Swin, ConvNeXt, Mixer tiny variants)
# the methods of the newer benchmarks: transformer blocks only (no attention in ConvNeXt or Mixer blocks)
NEW = ("adaptformer", "adapter_houlsby", "convpass", "repadapter", "fact_tt", "fact_tk", "difffit", "adapter_plus")

# Tunable parameters (head included), worked out by hand from each tiny config's dimensions;
# None: the method does not apply (an `unsupported` run).
FORMULAS = {
    # Swin: stage dims 24, 48; qkv 3C, fc1 4C; patch-merging norm 4C = 96
    "tiny_swin": {
        "ssf": 2 * (24 + 24 + (24 + 72 + 24 + 24 + 96 + 24) + 96 + (48 + 144 + 48 + 48 + 192 + 48) + 48) + HEAD,
        "adapter": (24 * 8 + 8 + 8 * 24 + 24) + (48 * 8 + 8 + 8 * 48 + 48) + HEAD,
        "lora": 4 * (24 + 72) + 4 * (48 + 144) + HEAD,
        "vpt": 8 * (1 * 24 + 1 * 48) + HEAD, "vpt_shallow": 8 * 24 + HEAD,  # per-stage prompts: one block per stage
        "adaptformer": sum(d * 64 + 64 + 64 * d + d for d in (24, 48)) + HEAD,
        "adapter_houlsby": 2 * sum(d * 64 + 64 + 64 * d + d for d in (24, 48)) + HEAD,
        "adapter_plus": sum(d * 8 + 8 + 8 * d + d + d for d in (24, 48)) + HEAD,  # after each block, per-channel scale
        "repadapter": 2 * sum(d * 8 + 8 + 4 * d + d for d in (24, 48)) + HEAD,  # A, grouped B (2 groups)
        # LayerNorm weights: patch-embed 24, norm1 + norm2 per block, patch-merging 4C = 96, final 48; 2 scales per block
        "difffit": lambda biases: biases - 10 + (24 + 2 * 24 + 96 + 2 * 48 + 48) + 2 * (24 + 48) + HEAD,
        "convpass": None, "fact_tt": None, "fact_tk": None,  # no ViT token grid; widths differ per stage
        "ln": 2 * (24 + 2 * 24 + 96 + 2 * 48 + 48) + HEAD,  # the LayerNorms above
        # the last block (stage 2, C = 48: norm1, qkv, proj, relative-position table (2 x 4 - 1)^2 x 2 heads,
        # norm2, fc1, fc2) and the final norm
        "partial": 2 * 48 + 48 * 144 + 144 + 48 * 48 + 48 + 49 * 2 + 2 * 48 + 48 * 192 + 192 + 192 * 48 + 48 + 2 * 48
        + HEAD,
        "vqt": None,  # windowed attention over a hierarchy, not one token sequence
    },
    # ConvNeXt: stage dims 16, 24, 32, 48, one block each (dw conv, norm, fc1 4C, fc2), SSF on the last stage's output
    "tiny_convnext": {
        "ssf": 2 * (16 + 16 + sum(d + d + 4 * d + d for d in (16, 24, 32, 48))
                    + sum(p + d for p, d in ((16, 24), (24, 32), (32, 48))) + 48) + HEAD,
        "adapter": sum(d * 8 + 8 + 8 * d + d for d in (16, 24, 32, 48)) + HEAD,
        "lora": sum(4 * (d + 4 * d) + 4 * (4 * d + d) for d in (16, 24, 32, 48)) + HEAD,
        "vpt": None, "vpt_shallow": None, **dict.fromkeys(NEW, None),
        # LayerNorm2d: stem, downsampling, block and pre-logits norms
        "vqt": None, "ln": 2 * (16 + (16 + 24 + 32) + (16 + 24 + 32 + 48) + 48) + HEAD,
        # the last block (dw 7x7 conv, norm, fc1, fc2, LayerScale gamma) and the pre-logits norm in the head
        "partial": 48 * 49 + 48 + 2 * 48 + 48 * 192 + 192 + 192 * 48 + 48 + 48 + 2 * 48 + HEAD,
    },
    # Mixer: width 48, 16 tokens, token MLP 16->24->16, channel MLP 48->192->48, 2 blocks
    "tiny_mixer": {
        "ssf": 2 * (48 + 2 * (48 + 24 + 16 + 48 + 192 + 48) + 48) + HEAD,
        "adapter": 2 * (48 * 8 + 8 + 8 * 48 + 48) + HEAD,
        "lora": 2 * (4 * (16 + 24) + 4 * (24 + 16) + 4 * (48 + 192) + 4 * (192 + 48)) + HEAD,
        "vpt": None, "vpt_shallow": None, **dict.fromkeys(NEW, None),
        "vqt": None, "ln": 2 * (2 * 2 * 48 + 48) + HEAD,  # norm1, norm2 per block, final norm
        # the last block (norm1, token MLP, norm2, channel MLP) and the final norm
        "partial": 2 * 48 + (16 * 24 + 24 + 24 * 16 + 16) + 2 * 48 + (48 * 192 + 192 + 192 * 48 + 48) + 2 * 48 + HEAD,
    },
}
# what `partial` (k = 1) trains besides the head: the last block and the final norm
PARTIAL = {"tiny_swin": ("layers.1.blocks.0.", "norm."), "tiny_convnext": ("stages.3.blocks.0.", "head.norm."),
           "tiny_mixer": ("blocks.1.", "norm.")}


def backbone_cfg(name: str) -> BackboneConfig:
    return backbone_config(name)


def make(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_backbone(backbone_cfg(family), num_classes=10)


def train_steps(model, steps: int = 3):
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.mark.parametrize("family", list(FORMULAS))
@pytest.mark.parametrize("name", ["ssf", "adapter", "lora", "vpt", "vpt_shallow", "linear", "bias", "full", *NEW,
                                  "ln", "partial", "vqt"])
def test_formula_and_what_trains(family, name):
    from methods.ln import norm_parameters

    model = make(family)
    before = {id(p): (n, p.detach().clone()) for n, p in model.named_parameters()}
    norms = {id(p) for p in norm_parameters(model)}
    classifier = {id(p) for p in model.get_classifier().parameters()}
    total, biases = n_params(model), sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    # bias: every bias (the classifier's 10 included once) plus the classifier's weights
    expected = {"full": total, "linear": HEAD, "bias": biases - 10 + HEAD, **FORMULAS[family]}[name]
    expected = expected(biases) if callable(expected) else expected
    if expected is None:
        with pytest.raises(methods.Unsupported, match=name):
            METHODS[name].apply(model, method_config(name, {}))
        return
    model = train_steps(METHODS[name].apply(model, method_config(name, {})))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    for pname, p in model.named_parameters():
        if id(p) in before:
            orig_name, orig = before[id(p)]
            should = name == "full" or id(p) in classifier or (name == "bias" and orig_name.endswith(".bias")) or (
                name == "difffit" and (orig_name.endswith(".bias") or "norm" in orig_name)) or (
                name == "ln" and id(p) in norms) or (name == "partial" and orig_name.startswith(PARTIAL[family]))
            assert (not torch.equal(p.detach(), orig)) == should, f"{family}/{name}: {orig_name}"
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{family}/{name}: added {pname} never trained"


# ssf and lora on every family; two peft tuners on the ViT, whose module names their arguments use
MERGEABLE = [(f, m, {}) for f in FAMILIES for m in ("ssf", "lora")] + [
    (f, m, {}) for f in ("tiny_vit", "tiny_swin") for m in ("repadapter", "difffit")] + [
    ("tiny_vit", "fact_tt", {}), ("tiny_vit", "fact_tk", {})] + [
    ("tiny_vit", "peft", {"tuner": "ia3"}),
    ("tiny_vit", "peft", {"tuner": "loha", "args": {"r": 2, "target_modules": ["qkv"]}}),
    ("tiny_mixer", "peft", {"tuner": "ia3", "args": {"target_modules": ["fc1", "fc2"], "feedforward_modules": ["fc2"]}}),
]


@pytest.mark.parametrize("family,name,args", MERGEABLE, ids=[f"{f}-{m}-{a.get('tuner', '')}" for f, m, a in MERGEABLE])
def test_merge_is_exact(family, name, args):
    backbone = make(family)
    keys = set(backbone.state_dict())
    model = train_steps(METHODS[name].apply(make(family), method_config(name, args))).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    merged, ok = deployable(model, METHODS[name])
    assert ok
    torch.testing.assert_close(merged(x), ref, atol=1e-4, rtol=0)
    extra = 2 * 48 if (name == "ssf" and family == "tiny_convnext") else 0  # last-stage SSF stays (after a residual sum)
    assert n_params(merged) == n_params(backbone) + extra
    assert {k for k in merged.state_dict() if "ssf" not in k} == keys  # same structure as the untouched backbone
    with pytest.raises(RuntimeError, match="already merged"):
        METHODS[name].merge(merged)


def test_unknown_peft_tuner_and_missing_targets():
    with pytest.raises(ValueError, match="unknown tuner 'nope'; valid: .*ia3"):
        METHODS["peft"].apply(make("tiny_vit"), method_config("peft", {"tuner": "nope"}))
    with pytest.raises(ValueError, match="lora: backbone VisionTransformer: .*not found"):
        METHODS["lora"].apply(make("tiny_vit"), method_config("lora", {"target_modules": ["q_proj"]}))


# conftest's two halves of the family sweep, each its test on the half's worker (its xdist_group)
PARTS = [pytest.param(name, marks=pytest.mark.xdist_group(name), id=name) for name in SWEEP_PARTS]
# the sweep's runs that end `unsupported`: what FORMULAS says does not apply (every method applies to the ViT);
# every other run completes
UNSUPPORTED = {(fam, m) for fam, formulas in FORMULAS.items() for m, n in formulas.items() if n is None}


def test_the_sweeps_halves_cover_every_backbone_once():
    assert sorted(SWEEP_BACKBONES) == sorted(["vit_tiny_mini", *FORMULAS])  # every family once: the ViT, the others
    assert {fam for fam, _ in UNSUPPORTED} == set(SWEEP_BACKBONES) - {VIT}
    assert VIT in SWEEP_PARTS["family_sweep"]  # test_end_to_end.py reads the ViT's runs from `family_sweep`


@pytest.mark.process
@pytest.mark.parametrize("part", PARTS)
def test_sweep_finishes_with_unsupported_records(part, request):
    """conftest's family sweep: every method config x every family (the ViT as the mini backbone, which is
    tiny_vit's shape with pretrained weights) through launch.py, one epoch; here one half of its backbones."""
    sweep = request.getfixturevalue(part)
    recs = [json.loads(p.read_text()) for p in sweep.results.rglob("record.json")]
    n_methods = len(METHODS)
    assert len(recs) == n_methods * len(sweep.backbones)
    assert {r["backbone"] for r in recs} == set(sweep.backbones) and {r["dataset"] for r in recs} == {SWEEP_TASK}
    status = {(r["backbone"], r["method"]): r["status"] for r in recs}
    assert len(status) == len(recs)  # one run each
    for fam in sweep.backbones:
        for method in METHODS:
            want = "unsupported" if (fam, method) in UNSUPPORTED else "completed"
            assert status[(fam, method)] == want, (fam, method)
    for r in recs:
        if r["status"] == "completed":
            assert abs(r["deployed_test_top1"] - r["test_top1"]) <= 0.2, r["method"]  # one image of 1,000 may flip
            assert r["deployed_max_abs_logit_diff"] < 1e-3
            merged_plain = r["method"] in ("ssf", "lora", "peft", "bias", "linear", "full", "repadapter", "fact_tt",
                                           "fact_tk", "difffit", "ln", "partial") and not (
                r["method"] == "ssf" and r["backbone"] == "tiny_convnext")
            assert (r["inference_extra_params"] == 0) == merged_plain, (r["backbone"], r["method"])


@pytest.fixture(scope="module")
def exporter():
    """`python -m bench.export ...`, every export of this module in one interpreter."""
    one = OneInterpreter()
    yield lambda *args: one.run(["-m", "bench.export", *args])
    one.close()


@pytest.mark.process
@pytest.mark.parametrize("part,family", [pytest.param(part, family, marks=pytest.mark.xdist_group(part), id=family)
                                         for part, family in (("family_sweep", VIT), ("family_sweep_swin", "tiny_swin"))])
def test_export_loads_in_plain_timm(part, family, exporter, tmp_path, request):
    sweep = request.getfixturevalue(part)
    for method in ("ssf", "lora"):
        run_dir = next(sweep.results.rglob(f"runs/{family}/{SWEEP_TASK}/{method}-*/val-seed0"))
        out = tmp_path / f"{family}_{method}.safetensors"
        proc = exporter(str(run_dir), "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "plain timm state_dict" in proc.stdout
        cfg = backbone_cfg(family)
        plain = timm.create_model(cfg.arch, pretrained=True, num_classes=SWEEP_CLASSES, **cfg.kwargs,
                                  pretrained_cfg_overlay=dict(file=str(out), num_classes=SWEEP_CLASSES)).eval()
        from bench.run.export import rebuild, run_config
        from safetensors.torch import load_file
        rec_cfg = run_config(json.loads((run_dir / "record.json").read_text()))
        trained, _ = rebuild(rec_cfg)
        trained.load_state_dict(load_file(str(run_dir / "trained.safetensors")), strict=False)
        x = torch.randn(3, 3, 32, 32)
        torch.testing.assert_close(plain(x), trained.eval()(x), atol=1e-4, rtol=0)


@pytest.mark.xdist_group("family_sweep")
@pytest.mark.process
def test_export_of_unmergeable_methods_round_trips(family_sweep, exporter, tmp_path):
    from bench.run.export import load_deployed
    for method in ("vpt", "adapter"):
        run_dir = next(family_sweep.results.rglob(f"runs/{VIT}/{SWEEP_TASK}/{method}-*/val-seed0"))
        out = tmp_path / f"{method}.safetensors"
        proc = exporter(str(run_dir), "--out", str(out))
        assert proc.returncode == 0 and "keeps extra modules" in proc.stdout, proc.stderr
        model = load_deployed(out)
        assert dataclasses.is_dataclass(method_config(method, {}))
        assert n_params(model) > n_params(make("tiny_vit"))
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, SWEEP_CLASSES)


def test_lora_on_a_convnext_whose_mlp_is_1x1_convolutions():
    """convnext_atto's MLP (conv_mlp=True) is two 1x1 Conv2d: peft's Conv2d LoRA, r (in + out) each, merged exactly."""
    def atto():
        torch.manual_seed(0)
        return timm.create_model("convnext_atto", pretrained=False, num_classes=10, depths=[1, 1, 1, 1],
                                 dims=[16, 24, 32, 48], conv_mlp=True).eval()

    backbone = atto()
    assert isinstance(backbone.stages[0].blocks[0].mlp.fc1, torch.nn.Conv2d)
    model = METHODS["lora"].apply(atto(), method_config("lora", {}))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == \
        sum(4 * (d + 4 * d) + 4 * (4 * d + d) for d in (16, 24, 32, 48)) + HEAD
    with torch.no_grad():  # B starts at zero: move every LoRA factor so the update is not zero
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.add_(torch.randn_like(p))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model(x)
    assert not torch.allclose(ref, backbone(x), atol=1e-6)  # the update does change the logits
    merged, ok = deployable(model, METHODS["lora"])
    assert ok and n_params(merged) == n_params(backbone) and set(merged.state_dict()) == set(backbone.state_dict())
    torch.testing.assert_close(merged(x), ref, atol=1e-4, rtol=0)


PRETRAINING = ["tiny_clip", "tiny_dinov2", "tiny_dinov2_reg", "tiny_mae"]  # CLIP, DINOv2 (+ registers), MAE shapes


@pytest.mark.parametrize("family", PRETRAINING)
@pytest.mark.parametrize("name", sorted(m for m in METHODS if m != "peft"))
def test_every_method_on_the_other_pretrainings(family, name):
    """What trains and exact merging on the CLIP / DINOv2 / MAE architectures (LayerScale, pre-norm, registers)."""
    backbone = make(family)
    before = {id(p): (n, p.detach().clone()) for n, p in backbone.named_parameters()}
    classifier = {id(p) for p in backbone.get_classifier().parameters()}
    model = train_steps(METHODS[name].apply(backbone, method_config(name, {})))
    for pname, p in model.named_parameters():
        if id(p) in before:
            orig_name, orig = before[id(p)]
            should = name == "full" or id(p) in classifier or (
                name in ("bias", "difffit") and orig_name.endswith(".bias")) or (
                name in ("difffit", "ln") and "norm" in orig_name) or (
                name == "partial" and orig_name.startswith((f"blocks.{len(backbone.blocks) - 1}.", "norm.")))
            assert (not torch.equal(p.detach(), orig)) == should, f"{family}/{name}: {orig_name}"
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{family}/{name}: added {pname} never trained"
    if METHODS[name].merge is not None and name not in ("full", "linear", "bias"):
        model.eval()
        x = torch.randn(3, 3, 32, 32)
        merged, ok = deployable(model, METHODS[name])
        assert ok, name
        torch.testing.assert_close(merged(x), model(x), atol=1e-4, rtol=0)
        plain = make(family)
        extra = 2 * 48 if (name == "ssf" and family == "tiny_clip") else 0  # after the bias-free patch embedding
        assert n_params(merged) == n_params(plain) + extra
        assert {k for k in merged.state_dict() if "ssf" not in k} == set(plain.state_dict())


def test_vpt_prompts_follow_the_register_tokens():
    model = make("tiny_dinov2_reg")
    assert model.num_prefix_tokens == 5  # class token + 4 registers
    model = METHODS["vpt"].apply(model, method_config("vpt", {"length": 3}))
    assert model.num_prefix_tokens == 5 + 3
    seen = {}
    model.blocks[0].register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    tokens = model.forward_features(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 5 + 3 + 16, 48)
    torch.testing.assert_close(seen["x"][:, 5:8], model.vpt.tokens[0].expand(2, -1, -1))  # after the registers


def swin(window=4, img=32):
    torch.manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=10, img_size=img, patch_size=2,
                             window_size=window, embed_dim=24, depths=[2, 2], num_heads=[1, 2]).eval()


def test_vpt_on_swin_prompts_every_block_of_every_stage_at_its_width():
    deep = METHODS["vpt"].apply(swin(), method_config("vpt", {"length": 3}))
    assert [tuple(t.shape) for t in deep.vpt.tokens] == [(2, 3, 24), (2, 3, 48)]  # C, 2C; one set per block
    shallow = METHODS["vpt_shallow"].apply(swin(), method_config("vpt_shallow", {"length": 3}))
    assert [tuple(t.shape) for t in shallow.vpt.tokens] == [(1, 3, 24)]  # the first block of the first stage
    bound = (6 / (3 * 4 + 24)) ** 0.5  # VPT's bound: patch area 2 x 2, first-stage width
    assert 0.9 * bound < deep.vpt.tokens[1].abs().max() <= bound
    x = torch.randn(3, 3, 32, 32)
    assert deep.forward_features(x).shape == (3, 1, 1, 48) and deep(x).shape == (3, 10)


@pytest.mark.parametrize("shift_block", [0, 1])  # block 1 of a stage has the shifted windows and the mask
def test_prompted_swin_block_without_prompts_is_timms_block(shift_block):
    """The prompted block's plumbing (shift, padding, windows, mask) against timm's own block: zero prompts."""
    from methods._vpt_swin import _block

    model = swin(window=3)  # 16 x 16 maps, window 3: padded windows
    blk = model.layers[0].blocks[shift_block]
    assert any(blk.shift_size) == bool(shift_block)
    x = torch.randn(2, 16, 16, 24)
    out, p = _block(blk, x, torch.zeros(2, 0, 24))
    torch.testing.assert_close(out, blk(x), atol=1e-5, rtol=0)
    assert p.shape == (2, 0, 24)


def test_prompted_swin_block_in_one_window_is_attention_over_prompts_and_patches():
    """One window, no shift: the block is plain pre-norm attention over [prompts; patches] (zero bias for prompts)."""
    from methods._vpt_swin import _block

    model = swin(window=8, img=16)  # 8 x 8 map, one window
    blk = model.layers[0].blocks[0]
    x, p = torch.randn(2, 8, 8, 24), torch.randn(2, 3, 24)
    out, p_out = _block(blk, x, p)
    t = torch.cat([p, x.reshape(2, 64, 24)], 1)
    with torch.no_grad():
        a = blk.attn
        q, k, v = a.qkv(blk.norm1(t)).reshape(2, 67, 3, 1, 24).permute(2, 0, 3, 1, 4)
        bias = torch.nn.functional.pad(a._get_rel_pos_bias(), (3, 0, 3, 0))
        h = t + a.proj(((q @ k.transpose(-2, -1)) * a.scale + bias).softmax(-1).matmul(v).transpose(1, 2).reshape(2, 67, 24))
        want = h + blk.mlp(blk.norm2(h))
    torch.testing.assert_close(torch.cat([p_out, out.reshape(2, 64, 24)], 1), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family,prefixes", [
    ("tiny_swin", ("layers.0.blocks.0.", "layers.1.downsample.", "layers.1.blocks.0.", "norm.")),
    ("tiny_convnext", ("stages.2.blocks.0.", "stages.3.downsample.", "stages.3.blocks.0.", "head.norm."))])
def test_partial_counts_blocks_across_stages_with_the_downsampling_between(family, prefixes):
    """k = 2 spans the last two stages (one block each): both blocks, the downsampling between them (VPT's Swin
    partial-4 trains `layers.{-2}.downsample`) and the final norm; not the downsampling before the first one."""
    model = METHODS["partial"].apply(make(family), method_config("partial", {"k": 2}))
    classifier = {id(p) for p in model.get_classifier().parameters()}
    trained = {n for n, p in model.named_parameters() if p.requires_grad and id(p) not in classifier}
    assert trained and all(n.startswith(prefixes) for n in trained)
    assert all(any(n.startswith(pre) for n in trained) for pre in prefixes)
