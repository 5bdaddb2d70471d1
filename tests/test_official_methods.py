"""`ln`, `partial` and `vqt` against what the official codes did, dumped by scripts/official_methods.py into
tests/fixtures/official_methods.pt (PETL_Vision 245d262, VQT 9bca87e, imported from their checkouts there):
trainable parameter counts on ViT-B/16, logits in evaluation and training mode and the gradients on a tiny ViT."""
import copy
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from bench.models import init_head
from methods import METHODS, method_config

FIXTURE = torch.load(Path(__file__).parent / "fixtures" / "official_methods.pt", weights_only=True)


def tiny(drop_path: float) -> torch.nn.Module:
    """The tiny ViT the fixture was made with (scripts/official_methods.py:tiny_timm)."""
    torch.manual_seed(FIXTURE["seed"])
    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=FIXTURE["classes"],
                              drop_path_rate=drop_path, **FIXTURE["tiny"])
    assert sum(float(p.double().sum()) for p in model.state_dict().values()) == pytest.approx(
        FIXTURE["petl_vision"]["state_sum"], rel=1e-12), "the tiny ViT's random init moved (timm or torch changed)"
    return model


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 32, 32, generator=g), torch.randint(0, FIXTURE["classes"], (3,), generator=g)


@pytest.fixture(scope="module")
def vit_b():
    """timm's ViT-B/16 on the meta device: shapes only, built in a blink."""
    with torch.device("meta"):
        return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10)


def trainable_no_head(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")}


# ours -> PETL_Vision's option (experiment/build_model.py) on the ViT-B/16 it builds
PETL_VISION = [("ln", {}, "ln"), ("partial", {"final_norm": False}, "block"),
               ("partial", {"part": "attn", "final_norm": False}, "attn"),
               ("partial", {"part": "mlp", "final_norm": False}, "mlp")]


@pytest.mark.parametrize("name,args,official", PETL_VISION, ids=[o for *_, o in PETL_VISION])
def test_vit_b_trains_what_petl_vision_trains(vit_b, name, args, official):
    ours = trainable_no_head(METHODS[name].apply(vit_b, method_config(name, args)))
    want = FIXTURE["petl_vision"]["counts"][official]
    assert sorted(ours) == want["names"]
    assert sum(ours.values()) == want["no_head"]  # ln: 38,400 (0.038M); block 7,087,872; attn 2,362,368; mlp 4,722,432


def test_vit_b_partial_1_is_vpts_last_block_and_final_norm(vit_b):
    """KMnP/vpt:src/models/vit_models.py partial-1: `transformer.encoder.layer.11` and `encoder_norm`."""
    ours = trainable_no_head(METHODS["partial"].apply(vit_b, method_config("partial", {})))
    block = FIXTURE["petl_vision"]["counts"]["block"]
    assert sorted(ours) == sorted(block["names"] + ["norm.bias", "norm.weight"])
    assert sum(ours.values()) == block["no_head"] + 2 * 768 == 7_089_408


def test_vit_b_vqt_count_and_head_width(vit_b):
    model = METHODS["vqt"].apply(copy.deepcopy(vit_b), method_config("vqt", {}))
    assert sum(trainable_no_head(model).values()) == FIXTURE["vqt"]["count_no_head"] == 12 * 768
    assert model.head.in_features == FIXTURE["vqt"]["head_in_features_vit_b"] == 768 * 13


@pytest.mark.parametrize("name,args,official", PETL_VISION + [("partial", {}, "vpt")],
                         ids=[o for *_, o in PETL_VISION] + ["vpt"])
def test_logits_and_gradients_equal_petl_visions_model(name, args, official):
    """Nothing is added: the model is PETL_Vision's VisionTransformerPETL forward with drop path 0.1, evaluation
    and training (the same drop-path masks: same seed, same draw order), and the same gradients."""
    dump = FIXTURE["petl_vision"]
    model = METHODS[name].apply(tiny(drop_path=0.1), method_config(name, args))
    x, y = batch()
    torch.testing.assert_close(model.eval()(x), dump["eval_logits"], atol=1e-6, rtol=1e-5)
    model.train()
    torch.manual_seed(7)
    logits = model(x)
    torch.testing.assert_close(logits, dump["train_logits"], atol=1e-6, rtol=1e-5)
    F.cross_entropy(logits, y).backward()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trained
    for n, p in trained:
        torch.testing.assert_close(p.grad, dump["grads"][n], atol=1e-6, rtol=1e-5, msg=n)


def test_vqt_logits_and_gradients_equal_the_official_model():
    """VQT's Head2ToeVisionTransformer with the same backbone weights and the official queries and head: the same
    logits in evaluation and in training (query and embedding dropout masks drawn in the same order)."""
    dump = FIXTURE["vqt"]
    model = METHODS["vqt"].apply(tiny(drop_path=0.0), method_config("vqt", {}))
    with torch.no_grad():
        model.vqt.tokens.copy_(dump["init"]["queries"])
        model.head.weight.copy_(dump["init"]["head_weight"]), model.head.bias.copy_(dump["init"]["head_bias"])
    x, y = batch()
    torch.testing.assert_close(model.eval()(x), dump["eval_logits"], atol=1e-5, rtol=1e-5)
    model.train()
    torch.manual_seed(7)
    logits = model(x)
    torch.testing.assert_close(logits, dump["train_logits"], atol=1e-5, rtol=1e-5)
    F.cross_entropy(logits, y).backward()
    pairs = ((model.vqt.tokens, "queries"), (model.head.weight, "head_weight"), (model.head.bias, "head_bias"))
    for ours, key in pairs:
        torch.testing.assert_close(ours.grad, dump["grads"][key], atol=1e-6, rtol=1e-4, msg=key)


def test_vqt_starts_from_the_official_inits():
    """Queries: VPT's Xavier-uniform bound; head under recipe=vpt (head_init=vpt): VPT's MLP last layer."""
    init = FIXTURE["vqt"]["init"]
    model = METHODS["vqt"].apply(tiny(drop_path=0.0), method_config("vqt", {}))
    init_head(model, "vpt")  # what bench/run/runner.py does to a head the method replaced
    d, patch = FIXTURE["tiny"]["embed_dim"], FIXTURE["tiny"]["patch_size"]
    bound = (6.0 / (3 * patch * patch + d)) ** 0.5
    for q in (model.vqt.tokens.detach(), init["queries"]):
        assert q.shape == init["queries"].shape and q.abs().max() <= bound and q.abs().max() > 0.9 * bound
    assert model.head.weight.shape == init["head_weight"].shape
    assert torch.equal(model.head.bias.detach(), init["head_bias"])  # -log(99) everywhere
    ratio = model.head.weight.std().item() / init["head_weight"].std().item()
    assert 0.85 < ratio < 1.15  # Kaiming-normal fan_out: std sqrt(2 / classes) for both, 720 draws each
