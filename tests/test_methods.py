"""Contract tests for every registered method on the tiny ViT (CPU, random weights).

After a few optimizer steps: exactly the intended parameters changed, every parameter the
method added changed, and the tunable count equals the method's formula.
"""
import pytest
import torch
import torch.nn.functional as F

import methods
from methods import METHODS, method_config

D, L, MLP_HIDDEN, CLASSES = 96, 4, 192, 10  # tiny ViT: width, depth, MLP width; head classes
HEAD = D * CLASSES + CLASSES


def expected_tunable(name: str, model_before: torch.nn.Module) -> int:
    """Each method's parameter formula for the tiny ViT (head included)."""
    cfg = method_config(name, {})
    if name == "full":
        return sum(p.numel() for p in model_before.parameters())
    if name == "linear":
        return HEAD
    if name == "bias":
        return sum(p.numel() for n, p in model_before.named_parameters() if n.endswith(".bias") and "head" not in n) + HEAD
    if name == "adapter":  # down (D*b + b) + up (b*D + D) per block
        return L * (D * cfg.bottleneck + cfg.bottleneck + cfg.bottleneck * D + D) + HEAD
    if name == "vpt":
        return L * cfg.length * D + HEAD
    if name == "vpt_shallow":
        return cfg.length * D + HEAD
    if name == "lora":  # A (r x D) + B (3D x r) on each qkv
        return L * cfg.r * (D + 3 * D) + HEAD
    if name == "peft":  # the preset: IA3 scales qkv's 3D outputs and fc2's MLP_HIDDEN inputs (feed-forward)
        assert cfg.tuner == "ia3"
        return L * (3 * D + MLP_HIDDEN) + HEAD
    if name == "ssf":  # scale + shift after patch conv, final norm, and per block norm1 qkv proj norm2 fc1 fc2
        per_block = D + 3 * D + D + D + MLP_HIDDEN + D
        return 2 * (D + D + L * per_block) + HEAD
    if name == "adaptformer":  # one branch per block beside the MLP: down (D*b + b) + up (b*D + D)
        return L * (D * cfg.bottleneck + cfg.bottleneck + cfg.bottleneck * D + D) + HEAD
    if name == "adapter_houlsby":  # two adapters per block (after attention, after MLP)
        return 2 * L * (D * cfg.bottleneck + cfg.bottleneck + cfg.bottleneck * D + D) + HEAD
    if name == "adapter_plus":  # after each block: down, up, per-channel scale (D)
        return L * (D * cfg.bottleneck + cfg.bottleneck + cfg.bottleneck * D + D + D) + HEAD
    if name == "convpass":  # two bypasses per block: down, 3x3 conv (k*k*9 + k), up
        k = cfg.bottleneck
        return 2 * L * (D * k + k + k * k * 9 + k + k * D + D) + HEAD
    if name == "repadapter":  # two per block: A (D*k + k) + grouped B (k/g * D + D)
        k = cfg.bottleneck
        return 2 * L * (D * k + k + k // cfg.groups * D + D) + HEAD
    if name == "fact_tt":  # U, V shared; per block cores q, k, v, proj (r x r), fc1 (m r x r), fc2 (r x m r); m = 2
        r, m = cfg.rank, MLP_HIDDEN // D
        return 2 * D * r + L * (4 * r * r + 2 * m * r * r) + HEAD
    if name == "fact_tk":  # U, V shared; core C (r^3); P (r x (4 + 2m) per block)
        r, m = cfg.rank, MLP_HIDDEN // D
        return 2 * D * r + r ** 3 + r * (4 + 2 * m) * L + HEAD
    if name == "difffit":  # every bias, every LayerNorm weight (2 per block + final), 2 branch scales per block
        biases = sum(p.numel() for n, p in model_before.named_parameters() if n.endswith(".bias") and "head" not in n)
        return biases + (2 * L + 1) * D + 2 * L * D + HEAD
    if name == "ln":  # norm1, norm2 per block and the final norm: weight and bias each
        return (2 * L + 1) * 2 * D + HEAD
    if name == "partial":  # the last block (norm1, qkv, proj, norm2, fc1, fc2) and the final norm
        assert (cfg.k, cfg.part, cfg.final_norm) == (1, "block", True)
        block = 2 * D + 3 * D * D + 3 * D + D * D + D + 2 * D + D * MLP_HIDDEN + MLP_HIDDEN + MLP_HIDDEN * D + D
        return block + 2 * D + HEAD
    if name == "vqt":  # query tokens per layer; the head reads the class token and every layer's queries
        return L * cfg.tokens * D + (D + L * cfg.tokens * D) * CLASSES + CLASSES
    raise AssertionError(f"no formula for method {name!r}: add one when adding a method")


def intended(name: str, pname: str) -> bool:
    """Should original (backbone) parameter `pname` train under method `name`?"""
    if pname.startswith("head."):
        return True
    return {"full": True, "bias": pname.endswith(".bias"),
            "difffit": pname.endswith(".bias") or "norm" in pname, "ln": "norm" in pname,
            "partial": pname.startswith((f"blocks.{L - 1}.", "norm."))}.get(name, False)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_only_intended_parameters_change(name, tiny_vit):
    model = tiny_vit(CLASSES)
    before = {id(p): (n, p.detach().clone()) for n, p in model.named_parameters()}
    formula = expected_tunable(name, model)
    model = METHODS[name].apply(model, method_config(name, {}))

    tunable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert tunable == formula, f"{name}: {tunable} tunable parameters, formula says {formula}"

    torch.manual_seed(1)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, CLASSES, (16,))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):  # zero-initialised factors (LoRA B, adapter up) unblock their partners after step 1
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    added = 0
    for pname, p in model.named_parameters():
        if id(p) in before:
            orig_name, orig = before[id(p)]
            changed = not torch.equal(p.detach(), orig)
            assert changed == intended(name, orig_name), \
                f"{name}: backbone parameter {orig_name} {'changed' if changed else 'did not change'}"
        else:
            added += 1
            assert p.requires_grad, f"{name}: added parameter {pname} is frozen"
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: added parameter {pname} has no gradient"
    if name not in ("full", "linear", "bias", "ln", "partial"):
        assert added > 0, f"{name} added no parameters"


@pytest.mark.parametrize("name", ["adapter", "lora", "adaptformer", "convpass", "repadapter", "fact_tt", "fact_tk",
                                  "difffit"])
def test_zero_init_methods_start_equal_to_backbone(name, tiny_vit):
    model = tiny_vit(CLASSES).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    model = METHODS[name].apply(model, method_config(name, {})).eval()
    torch.testing.assert_close(model(x), ref)


def test_ssf_init_statistics(tiny_vit):
    model = METHODS["ssf"].apply(tiny_vit(CLASSES), method_config("ssf", {}))
    scales = torch.cat([p.detach() for n, p in model.named_parameters() if n.endswith("ssf.scale")])
    shifts = torch.cat([p.detach() for n, p in model.named_parameters() if n.endswith("ssf.shift")])
    assert abs(scales.mean() - 1) < 0.01 and abs(scales.std() - 0.02) < 0.005
    assert abs(shifts.mean()) < 0.01 and abs(shifts.std() - 0.02) < 0.005


@pytest.mark.parametrize("shape, dim", [((4, 17, 12), -1), ((4, 12, 5, 5), 1)])
def test_ssf_is_the_official_formula_bit_for_bit(shape, dim):
    """The in-place add gives exactly the official `x * scale + shift` and its gradients, on token and NCHW maps."""
    from methods.ssf import SSF

    ssf = SSF(12, dim, init_std=0.02)
    x = torch.randn(shape, requires_grad=True)
    view = [1] * len(shape)
    view[dim] = -1
    g = torch.randn(shape)
    ours = ssf(x)
    grads = torch.autograd.grad(ours, (x, ssf.scale, ssf.shift), g)
    ref = x * ssf.scale.view(view) + ssf.shift.view(view)
    ref_grads = torch.autograd.grad(ref, (x, ssf.scale, ssf.shift), g)
    assert torch.equal(ours, ref)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads))


@pytest.mark.parametrize("name", ["ssf", "lora", "repadapter", "fact_tt", "fact_tk", "difffit"])
def test_merge_matches_unmerged(name, tiny_vit):
    backbone_params = sum(p.numel() for p in tiny_vit(CLASSES).parameters())
    model = METHODS[name].apply(tiny_vit(CLASSES), method_config(name, {}))
    with torch.no_grad():  # move the method's parameters away from their init
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    merged = METHODS[name].merge(model)
    torch.testing.assert_close(merged(x), ref, atol=1e-4, rtol=0)
    assert sum(p.numel() for p in merged.parameters()) == backbone_params
    if name != "lora":  # peft's merge_and_unload returns the plain model, which has nothing to merge
        with pytest.raises(RuntimeError, match="already merged"):
            METHODS[name].merge(merged)


def test_vpt_prompts_are_prefix_tokens(tiny_vit):
    model = METHODS["vpt"].apply(tiny_vit(CLASSES), method_config("vpt", {"length": 5}))
    assert model.num_prefix_tokens == 1 + 5
    tokens = model.forward_features(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 1 + 5 + 16, D)  # CLS, prompts, 16 patches


@pytest.mark.parametrize("name", ["vpt", "vpt_shallow", "adapter", "adaptformer", "adapter_houlsby", "convpass",
                                  "repadapter", "fact_tt", "fact_tk", "difffit", "vqt"])
def test_unsupported_backbone_is_reported(name):
    import timm

    cnn = timm.create_model("resnet10t", pretrained=False, num_classes=CLASSES)
    with pytest.raises(methods.Unsupported, match=name):
        METHODS[name].apply(cnn, method_config(name, {}))


def test_registry_rejects_unknown_names_and_arguments():
    with pytest.raises(KeyError, match="valid: .*ssf"):
        methods.get_method("ssf2")
    with pytest.raises(ValueError, match="method.rank: unknown key; valid: r, alpha"):
        method_config("lora", {"rank": 8})


def test_tune_norms_adds_every_norm_to_any_method(tiny_vit):
    """train.tune_norms (adapter_plus's train_ln): the method's parameters plus every norm's, and all of them train."""
    cfg = method_config("lora", {})
    model = methods.apply_method(tiny_vit(CLASSES), METHODS["lora"], cfg, tune_norms=True)
    norms = (2 * L + 1) * 2 * D
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == L * cfg.r * (D + 3 * D) + HEAD + norms
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "norm" in n}
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, CLASSES, (8,))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    assert before and all(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters() if n in before)


def test_vqt_leaves_the_backbones_forward_untouched(tiny_vit):
    model = tiny_vit(CLASSES).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model.forward_features(x)
    model = METHODS["vqt"].apply(model, method_config("vqt", {"tokens": 2})).eval()
    torch.testing.assert_close(model.forward_features(x), ref, atol=0, rtol=0)
    assert model.head.in_features == D * (1 + L * 2) and model(x).shape == (2, CLASSES)


def test_partial_knobs(tiny_vit):
    with pytest.raises(ValueError, match="method.k=5: backbone VisionTransformer has 4 blocks"):
        METHODS["partial"].apply(tiny_vit(CLASSES), method_config("partial", {"k": 5}))
    with pytest.raises(ValueError, match="method.part"):
        method_config("partial", {"part": "ffn"})
    model = METHODS["partial"].apply(tiny_vit(CLASSES), method_config("partial", {"k": 2, "part": "mlp"}))
    trained = {n.split(".mlp.")[0] for n, p in model.named_parameters() if p.requires_grad and ".mlp." in n}
    assert trained == {"blocks.2", "blocks.3"}



def test_the_runner_inits_a_replaced_head_counts_it_as_head_and_adds_tune_norms(tiny_vit):
    """vqt widens the head: the recipe's head_init reaches the new head and the head's ids are the new head's;
    train.tune_norms adds the norms; linear with tune_norms leaves the linear fast path."""
    import math

    from bench.config import DatasetConfig, RunConfig, TrainConfig, backbone_config
    from bench.run.runner import with_method
    from bench.train import linear_probe

    train = TrainConfig(tune_norms=True, head_init="vpt")
    model, head_ids = with_method(tiny_vit(CLASSES), METHODS["vqt"], method_config("vqt", {}), train)
    assert head_ids == {id(model.head.weight), id(model.head.bias)} and model.head.in_features == D * (1 + L)
    assert torch.equal(model.head.bias.detach(), torch.full((CLASSES,), -math.log(99)))  # VPT's head init
    no_head = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in head_ids)
    assert no_head == L * D + (2 * L + 1) * 2 * D  # queries + every norm
    cfg = RunConfig(method="linear", dataset=DatasetConfig("mini/count", "mini", "count", "structured", 8, 32),
                    backbone=backbone_config("vit_tiny_mini"), train=train)
    assert not linear_probe.applies(cfg)
    assert linear_probe.applies(RunConfig(method="linear", dataset=cfg.dataset, backbone=cfg.backbone))
