"""VPT on Swin: prompts per stage, as the official VPT code prompts its Swin
(KMnP/vpt: src/models/vit_prompt/swin_transformer.py), on timm's Swin (NHWC blocks).

- Prompts are prepended tokens of the stage's width (C, 2C, 4C, 8C). Deep: every block of every
  stage gets its own `length` prompts, replacing the previous block's prompt outputs; shallow:
  the first block of the first stage only, and the prompts then travel with the patch tokens
  through every block and, at each patch merging, as four copies of themselves concatenated
  (4C), through the merging's norm and reduction. Init: uniform with VPT's bound
  sqrt(6 / (3 * patch_area + C)), C the first stage's width, for every stage.
- In a block the prompts are normalised with the patch tokens, joined to every window (the same
  prompts in each), attend and are attended to with zero relative-position bias and no shift
  mask; a prompt's output is the mean of its outputs over the windows; the MLP then runs on
  prompts and patches alike. The final norm applies to both, and the pooled feature averages
  prompts and patches together (the official `avgpool` over the whole sequence).

One deliberate difference: the official code averages the prompts' window outputs with
`view(-1, B, P, C).mean(0)`, which assumes window-major rows, while its `window_partition`
is batch-major; with a batch of more than one image that mixes the prompt outputs of different
images (so an image's logits depend on the rest of its batch). Here each image's prompts are
averaged over that image's windows only.
"""
import math
import types

import torch
import torch.nn as nn
import torch.nn.functional as F


def is_swin(model: nn.Module) -> bool:
    from timm.models.swin_transformer import SwinTransformer

    return isinstance(model, SwinTransformer)


class SwinPrompts(nn.Module):
    """`tokens[s]`: (blocks prompted in stage s, length, width of stage s)."""

    def __init__(self, depths: list[int], dims: list[int], length: int, bound: float, deep: bool, dropout: float):
        super().__init__()
        shapes = [(d, length, c) for d, c in zip(depths, dims)] if deep else [(1, length, dims[0])]
        self.tokens = nn.ParameterList(nn.Parameter(torch.empty(s).uniform_(-bound, bound)) for s in shapes)
        self.dropout, self.deep = nn.Dropout(dropout), deep


def _window_attention(attn: nn.Module, t: torch.Tensor, mask: torch.Tensor | None, p: int) -> torch.Tensor:
    """timm's WindowAttention on (windows, p prompts + window area, C), prompts with zero bias and no mask."""
    b_, n, _ = t.shape
    q, k, v = attn.qkv(t).reshape(b_, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    bias = F.pad(attn._get_rel_pos_bias(), (p, 0, p, 0))  # (1, heads, n, n)
    if mask is not None:  # (nW, area, area) -> (B * nW, 1, n, n), windows batch-major
        nw = mask.shape[0]
        bias = bias + F.pad(mask, (p, 0, p, 0)).view(1, nw, 1, n, n).expand(b_ // nw, -1, -1, -1, -1).reshape(b_, 1, n, n)
    x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    return attn.proj_drop(attn.proj(x.transpose(1, 2).reshape(b_, n, -1)))


def _block(blk: nn.Module, x: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A SwinTransformerBlock on patches x (B, H, W, C) and prompts p (B, P, C)."""
    from timm.models.swin_transformer import window_partition, window_reverse

    b, h, w, c = x.shape
    n_p = p.shape[1]
    shortcut = torch.cat([p, x.reshape(b, -1, c)], 1)
    xn, pn = blk.norm1(x), blk.norm1(p)
    shift = any(blk.shift_size)
    xs = torch.roll(xn, shifts=(-blk.shift_size[0], -blk.shift_size[1]), dims=(1, 2)) if shift else xn
    pad_h = (blk.window_size[0] - h % blk.window_size[0]) % blk.window_size[0]
    pad_w = (blk.window_size[1] - w % blk.window_size[1]) % blk.window_size[1]
    xs = F.pad(xs, (0, 0, 0, pad_w, 0, pad_h))
    _, hp, wp, _ = xs.shape
    windows = window_partition(xs, blk.window_size).view(-1, blk.window_area, c)  # (B * nW, area, C), batch-major
    nw = windows.shape[0] // b
    mask = blk.get_attn_mask(xs) if getattr(blk, "dynamic_mask", False) else blk.attn_mask
    out = _window_attention(blk.attn, torch.cat([pn.repeat_interleave(nw, 0), windows], 1), mask, n_p)
    p_out = out[:, :n_p].reshape(b, nw, n_p, c).mean(1)  # each image's prompts, averaged over its own windows
    xs = window_reverse(out[:, n_p:].reshape(-1, *blk.window_size, c), blk.window_size, hp, wp)[:, :h, :w]
    xa = torch.roll(xs, shifts=blk.shift_size, dims=(1, 2)) if shift else xs
    t = shortcut + blk.drop_path1(torch.cat([p_out, xa.reshape(b, -1, c)], 1))  # one drop-path draw per image
    t = t + blk.drop_path2(blk.mlp(blk.norm2(t)))
    return t[:, n_p:].reshape(b, h, w, c), t[:, :n_p]


def _forward_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Prompted Swin features, pooled over prompts and patches: (B, 1, 1, C) for timm's average-pool head."""
    prompts: SwinPrompts = model.vpt
    x = model.patch_embed(x)  # (B, H, W, C)
    b, p = x.shape[0], None
    for s, stage in enumerate(model.layers):
        x = stage.downsample(x)
        if p is not None and not isinstance(stage.downsample, nn.Identity):  # the prompts, merged as 4 copies
            p = stage.downsample.reduction(stage.downsample.norm(torch.cat([p] * 4, -1)))
        for i, blk in enumerate(stage.blocks):
            if prompts.deep or (s == 0 and i == 0):
                p = prompts.dropout(prompts.tokens[s if prompts.deep else 0][i if prompts.deep else 0]).expand(b, -1, -1)
            x, p = _block(blk, x, p.to(x.dtype))
    x, p = model.norm(x), model.norm(p)
    pooled = (x.flatten(1, 2).sum(1) + p.sum(1)) / (x.shape[1] * x.shape[2] + p.shape[1])
    return pooled[:, None, None, :]


def add_prompts(model: nn.Module, length: int, deep: bool, dropout: float) -> nn.Module:
    depths = [len(stage.blocks) for stage in model.layers]
    dims = [stage.blocks[0].norm1.normalized_shape[-1] for stage in model.layers]
    bound = math.sqrt(6.0 / (3 * math.prod(model.patch_embed.patch_size) + dims[0]))
    model.vpt = SwinPrompts(depths, dims, length, bound, deep, dropout)
    model.forward_features = types.MethodType(_forward_features, model)
    return model
