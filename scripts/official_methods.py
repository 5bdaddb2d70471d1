"""Dump what the official codes do for `ln`, `partial` and `vqt` into a small fixture the tests compare against.

    python scripts/official_methods.py --petl-vision PATH --vqt PATH [--out tests/fixtures/official_methods.pt]

PATH are checkouts of OSU-MLB/PETL_Vision (245d262) and andytu28/VQT (9bca87e); nothing of theirs is
copied here: their modules are imported from PATH, with stand-ins for the imports a model does not
use (iopath, clip, ml_collections, tkinter/turtle). On the CPU, timm 1.0 (PETL_Vision pins 0.9.12; the
classes it subclasses are unchanged for these methods).

Written (tests/test_official_methods.py reads it):
- `counts`: trainable parameters (head excluded) of PETL_Vision's `get_model` on its ViT-B/16 with
  `--ln`, `--block_index 11`, `--attention_index 11`, `--mlp_index 11` (pretrained=False, its checkpoint
  loader skipped), and the names of the trainable tensors.
- `petl_vision`: a tiny ViT (width 48, depth 2, 2 heads, 32 px, patch 8, seed 0) loaded into
  PETL_Vision's VisionTransformerPETL with every method off, drop path 0.1: logits in eval and in train
  mode (seeded) and, for a fixed loss, the gradients of the norms, the last block and the head.
- `vqt`: the same tiny ViT's weights loaded into VQT's Head2ToeVisionTransformer (concat read-out, one
  query token, dropout 0.1 on the queries, the config's dropout_rate 0.1) with VPT's MLP head: the queries
  and head it starts from, its logits in eval and train mode (seeded), and the gradients of the queries
  and the head; on its ViT-B/16 config, the query parameters and the head's input width.
"""
import argparse
import sys
import types
from argparse import Namespace
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=2, mlp_ratio=2.0)
CLASSES, BATCH, SEED = 5, 3, 0


def tiny_timm(drop_path: float = 0.0) -> nn.Module:
    torch.manual_seed(SEED)
    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=CLASSES, drop_path_rate=drop_path,
                             **TINY)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(0, CLASSES, (BATCH,), generator=g)


def stub(name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module


class ConfigDict(dict):
    """ml_collections.ConfigDict as vit_configs.py uses it: a dict with attribute access."""
    __getattr__, __setattr__ = dict.__getitem__, dict.__setitem__


def petl_params(**on) -> Namespace:
    """PETL_Vision's main.py arguments a model reads, every method off (argparse defaults)."""
    p = dict(vpt_mode=None, vpt_num=0, ssf=False, vqt_num=0, vqt_dropout=0.1, fact_type=None, lora_bottleneck=0,
             ft_attn_module=None, ft_mlp_module=None, difffit=False, bitfit=False, ln=False, full=False, mlp_index=None,
             mlp_type="full", attention_index=None, attention_type="full", block_index=None, debug=False,
             pretrained_weights="vit_base_patch16_224_in21k", drop_path_rate=0.1, class_num=CLASSES)
    return Namespace(**(p | on))


def run_petl_vision(root: Path) -> dict:
    class PathManager:  # iopath's, as utils/file_io.py builds it at import
        def register_handler(self, handler):
            pass

    stub("iopath"), stub("iopath.common"), stub("iopath.common.file_io", PathManager=PathManager, HTTPURLHandler=object)
    stub("clip"), stub("tkinter"), stub("tkinter.constants", RAISED="raised")
    stub("tabulate", tabulate=lambda *a, **k: "")
    sys.path.insert(0, str(root))
    import experiment.build_model as build_model  # noqa: E402  (theirs)
    from model.vision_transformer import VisionTransformerPETL  # noqa: E402

    # get_model asks for CUDA and loads the IN-21k checkpoint: CPU and random weights here
    torch.cuda.is_available, torch.cuda.current_device = (lambda: True), (lambda: "cpu")
    VisionTransformerPETL.load_pretrained = lambda self, *a, **k: None
    nn.Module.cuda = lambda self, device=None: self
    counts = {}
    base = list(build_model.TUNE_MODULES)
    for name, args in {"ln": dict(ln=True), "block": dict(block_index=[11]), "attn": dict(attention_index=[11]),
                       "mlp": dict(mlp_index=[11])}.items():
        build_model.TUNE_MODULES[:] = base  # get_model appends to the module-level list
        torch.manual_seed(SEED)
        model, _, no_head = build_model.get_model(petl_params(**args))  # its own count (log_model_info)
        counts[name] = {"no_head": no_head, "names": sorted(n for n, p in model.named_parameters()
                                                           if p.requires_grad and not n.startswith("head."))}
    build_model.TUNE_MODULES[:] = base

    ours = tiny_timm(drop_path=0.1)
    theirs = VisionTransformerPETL(num_classes=CLASSES, drop_path_rate=0.1, params=petl_params(), **TINY)
    theirs.load_state_dict(ours.state_dict())
    x, y = batch()
    out = {"counts": counts, "state_sum": sum(float(p.double().sum()) for p in ours.state_dict().values())}
    theirs.eval()
    def forward(m, x):  # timm 0.9.12's VisionTransformer.forward (1.0's passes an attn_mask theirs does not take)
        return m.forward_head(m.forward_features(x))

    out["eval_logits"] = forward(theirs, x).detach()
    theirs.train()
    torch.manual_seed(7)
    logits = forward(theirs, x)
    F.cross_entropy(logits, y).backward()
    out["train_logits"] = logits.detach()
    last = f"blocks.{TINY['depth'] - 1}."  # what ln and partial train: the norms, the last block, the head
    out["grads"] = {n: p.grad.detach().clone() for n, p in theirs.named_parameters()
                    if "norm" in n or n.startswith((last, "head."))}
    sys.path.remove(str(root))
    return out


def run_vqt(root: Path) -> dict:
    stub("ml_collections", ConfigDict=ConfigDict), stub("turtle", forward=None), stub("simplejson")
    sys.path.insert(0, str(root))
    from src.models.mlp import MLP  # noqa: E402  (theirs)
    from src.models.vit_backbones import h2t_vit  # noqa: E402

    d, depth = TINY["embed_dim"], TINY["depth"]
    config = ConfigDict(patches=ConfigDict(size=(8, 8)), hidden_size=d, classifier="token", representation_size=None,
                        transformer=ConfigDict(mlp_dim=int(d * TINY["mlp_ratio"]), num_heads=TINY["num_heads"],
                                               num_layers=depth, attention_dropout_rate=0.0, dropout_rate=0.1))
    h2t_vit.CONFIGS["tiny"] = config
    h2t = ConfigDict(NUM_QUERY_TOKENS=1, DROPOUT=0.1, NORMALIZE_FEATS=True, POOLING_FEATS=False,
                     WEIGHTED_SUM_FEATS=False, KEEP_FRAC=1.0)
    torch.manual_seed(SEED)
    enc = h2t_vit.Head2ToeVisionTransformer("tiny", h2t, img_size=32, num_classes=-1)
    head = MLP(input_dim=d * (1 + depth), mlp_dims=[CLASSES], special_bias=True)  # H2TViT.setup_head, MLP_NUM 0
    init = {"queries": enc.transformer.encoder.query_prompt_embeddings.detach().clone(),
            "head_weight": head.last_layer.weight.detach().clone(), "head_bias": head.last_layer.bias.detach().clone()}

    sd = tiny_timm().state_dict()
    t = enc.transformer
    with torch.no_grad():
        t.embeddings.patch_embeddings.weight.copy_(sd["patch_embed.proj.weight"])
        t.embeddings.patch_embeddings.bias.copy_(sd["patch_embed.proj.bias"])
        t.embeddings.position_embeddings.copy_(sd["pos_embed"])
        t.embeddings.cls_token.copy_(sd["cls_token"])
        t.encoder.encoder_norm.weight.copy_(sd["norm.weight"]), t.encoder.encoder_norm.bias.copy_(sd["norm.bias"])
        for i, layer in enumerate(t.encoder.layer):
            b = f"blocks.{i}."
            pairs = (("norm1", layer.attention_norm), ("norm2", layer.ffn_norm), ("mlp.fc1", layer.ffn.fc1),
                     ("mlp.fc2", layer.ffn.fc2), ("attn.proj", layer.attn.out))
            for mine, official in pairs:
                official.weight.copy_(sd[b + mine + ".weight"]), official.bias.copy_(sd[b + mine + ".bias"])
            for j, lin in enumerate((layer.attn.query, layer.attn.key, layer.attn.value)):
                lin.weight.copy_(sd[b + "attn.qkv.weight"][j * d:(j + 1) * d])
                lin.bias.copy_(sd[b + "attn.qkv.bias"][j * d:(j + 1) * d])
    for n, p in enc.named_parameters():  # H2TViT.build_backbone: the prompts train, the backbone does not
        p.requires_grad_("prompt" in n)
    model = nn.Sequential(enc, head)
    x, y = batch()
    from src.configs.vit_configs import get_b16_config  # noqa: E402  (theirs)

    h2t_vit.CONFIGS["b16"] = get_b16_config()
    vit_b = h2t_vit.Head2ToeVisionTransformer("b16", h2t, img_size=224, num_classes=-1)
    out = {"init": init, "count_no_head": sum(p.numel() for n, p in vit_b.named_parameters() if "prompt" in n),
           "head_in_features_vit_b": 768 * (1 + 12 * h2t.NUM_QUERY_TOKENS)}  # build_h2t_vit_sup_models' m2featdim
    model.eval()
    out["eval_logits"] = model(x).detach()
    model.train()
    torch.manual_seed(7)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    out["train_logits"] = logits.detach()
    out["grads"] = {"queries": t.encoder.query_prompt_embeddings.grad.clone(),
                    "head_weight": head.last_layer.weight.grad.clone(), "head_bias": head.last_layer.bias.grad.clone()}
    sys.path.remove(str(root))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--petl-vision", type=Path, required=True, help="a checkout of OSU-MLB/PETL_Vision")
    ap.add_argument("--vqt", type=Path, required=True, help="a checkout of andytu28/VQT")
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/official_methods.pt"))
    args = ap.parse_args(argv)
    fixture = {"tiny": TINY, "classes": CLASSES, "seed": SEED, "petl_vision": run_petl_vision(args.petl_vision),
               "vqt": run_vqt(args.vqt)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    torch.save(fixture, tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
