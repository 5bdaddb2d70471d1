"""VQT: Visual Query Tuning (Tu, Mai and Chao, CVPR 2023, arXiv:2212.03220), as andytu28/VQT runs it.

`tokens` learnable query tokens per layer attend to that layer's tokens (queries only: the keys and
values are the layer's own tokens, `Head2ToeAttention` with `query_prompt_len`), go through the
block's MLP, and are read out; the backbone's forward is untouched, so no gradient flows through it
(the memory-light family). Here the queries ride on a forward hook of each block's `attn.qkv`: the
block's own keys and values are reused, the queries' path is the block's modules applied to them
(norm1, attention, proj, LayerScale, norm2, MLP; no drop path, as the official backbone has none).

Read-out (`Head2ToeVisionTransformer.forward`, combine_method `concat`, NORMALIZE_FEATS true): the
head sees the concatenation of the pooled feature (the final-normed class token) and each layer's
query outputs flattened, each L2-normalised on its own: width D (1 + layers x tokens), 9,984 on
ViT-B/16 with one token. The classifier is replaced by a Linear of that width; the recipe's head
init (`train.head_init`) then applies to it (bench/run/runner.py): `train.head_init=vpt` gives the
official code's (its head is VPT's MLP: Kaiming-normal fan_out, bias -log(99)). Query init: VPT's
Xavier-uniform bound sqrt(6 / (3 * patch_h * patch_w + dim)); dropout on the query tokens (the official
script's 0.1) and, while training, on the token embeddings (its ViT-B config's dropout_rate 0.1 stays
live there: the official encoder's `train()` puts only the blocks in eval); the blocks' own dropouts
stay off.
`tokens: 1` is the official README's setting ("can be simply set to 1"); the config default is 5.

PETL_Vision's `model/vqt.py` differs as its code runs (OSU-MLB/PETL_Vision:model/vision_transformer.py,
forward_features): it cuts the queries off each block's output before reading `x[:, :vqt_num]`, so
what it combines are the class token and first patch tokens, not the queries (which get no
gradient), through a learned weighted sum normalised over tokens; not reproduced (docs/methods.md).

ViT-style backbones only (timm ViTs: CLIP, DINOv2, MAE included); elsewhere the run is unsupported.
Nothing merges: the queries and the wider head stay.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.config import POSITIVE, UNIT
from methods import Unsupported
from methods._common import freeze, train_head


@dataclass
class Config:
    tokens: int = 1  # query tokens per layer
    dropout: float = 0.1  # dropout on the query tokens, a mask per image (the official script's MODEL.H2T.DROPOUT)
    embed_dropout: float = 0.1  # dropout on the token embeddings while training (timm's pos_drop): the official
    # ViT-B config's dropout_rate 0.1, live in its `Embeddings`, which its encoder's train() does not put in eval


RULES = {"method.tokens": POSITIVE, "method.dropout": UNIT, "method.embed_dropout": UNIT}


class Queries(nn.Module):
    """Per-layer query tokens (layers, tokens, dim) and, during a forward, each layer's query outputs."""

    def __init__(self, layers: int, tokens: int, dim: int, patch_area: int, dropout: float):
        super().__init__()
        bound = math.sqrt(6.0 / (3 * patch_area + dim))
        self.tokens = nn.Parameter(torch.empty(layers, tokens, dim).uniform_(-bound, bound))
        self.dropout = nn.Dropout(dropout)
        self.outputs: dict[int, torch.Tensor] = {}  # layer -> (B, tokens, dim); emptied by the head


class _QueryLayer:
    """Forward hook on block `layer`'s `attn.qkv`: run that layer's queries against its keys and values."""

    def __init__(self, queries: Queries, layer: int, block: nn.Module):
        self.queries, self.layer, self.block = queries, layer, block

    def __call__(self, qkv_module, inputs, qkv):  # qkv: (B, N, 3 A), the block's own projection
        block, attn = self.block, self.block.attn
        B, N, _ = qkv.shape
        H, hd = attn.num_heads, attn.head_dim
        A = H * hd
        x = self.queries.dropout(self.queries.tokens[self.layer].expand(B, -1, -1)).to(qkv.dtype)  # (B, T, D)
        T = x.shape[1]
        q = F.linear(block.norm1(x), qkv_module.weight[:A], None if qkv_module.bias is None else qkv_module.bias[:A])
        q = attn.q_norm(q.reshape(B, T, H, hd).transpose(1, 2))  # (B, H, T, hd)
        _, k, v = qkv.reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, hd): keys, values
        o = F.scaled_dot_product_attention(q, attn.k_norm(k), v, dropout_p=attn.attn_drop.p if attn.training else 0.)
        o = attn.norm(o.transpose(1, 2).reshape(B, T, A))
        if getattr(attn, "gate", None) is not None:
            o = o * attn.gate(block.norm1(x)).sigmoid()
        x = x + block.ls1(attn.proj_drop(attn.proj(o)))
        x = x + block.ls2(block.mlp(block.norm2(x)))
        self.queries.outputs[self.layer] = x


class _Readout:
    """Forward pre-hook on the classifier: [pooled feature, layer 0 queries, ...], each L2-normalised."""

    def __init__(self, queries: Queries):
        self.queries = queries

    def __call__(self, head, args):
        pooled = args[0]  # (B, D)
        outs = [self.queries.outputs.pop(i) for i in sorted(self.queries.outputs)]
        feats = [F.normalize(pooled, dim=-1)] + [F.normalize(o.flatten(1), dim=-1) for o in outs]
        return (torch.cat(feats, dim=-1),)  # (B, D (1 + layers x tokens))


def _is_vit(model: nn.Module) -> bool:
    blocks = getattr(model, "blocks", None)
    return (all(hasattr(model, a) for a in ("num_prefix_tokens", "patch_embed", "embed_dim"))
            and isinstance(getattr(model, "head", None), nn.Linear) and isinstance(blocks, nn.Sequential)
            and all(isinstance(getattr(getattr(b, "attn", None), "qkv", None), nn.Linear) for b in blocks))


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    if not _is_vit(model):
        raise Unsupported(f"vqt: backbone {type(model).__name__} is not a ViT (VQT's queries attend to one token "
                          f"sequence through blocks of global attention with a Linear head)")
    freeze(model)
    if cfg.embed_dropout:  # timm's pos_drop: after the position embedding, on every token (class token included)
        model.pos_drop = nn.Dropout(cfg.embed_dropout)
    layers, dim = len(model.blocks), model.embed_dim
    model.vqt = Queries(layers, cfg.tokens, dim, math.prod(model.patch_embed.patch_size), cfg.dropout)
    for i, block in enumerate(model.blocks):
        block.attn.qkv.register_forward_hook(_QueryLayer(model.vqt, i, block))
    old = model.head
    head = nn.Linear(old.in_features + layers * cfg.tokens * dim, old.out_features)
    nn.init.trunc_normal_(head.weight, std=0.02)  # timm's ViT head init; the recipe's head_init follows
    nn.init.zeros_(head.bias)
    head.register_forward_pre_hook(_Readout(model.vqt))
    model.head = head
    train_head(model)
    model.vqt.requires_grad_(True)
    return model
