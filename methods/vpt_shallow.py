"""VPT-Shallow: Visual Prompt Tuning (Jia et al., ECCV 2022) with prompts at the first layer only.

The prompts are inserted after the class token before the first block and then flow
through the network like the other tokens. Implementation shared with `vpt`.

PETL_Vision's `vpt_shallow` (model/vision_transformer.py) cuts the prompt outputs after the
first block, so they reach that block only: `shallow_prompts=remove`, set by `recipe=petl_vision`.
It prepends the prompts before the class token; blocks treat tokens alike whatever their order,
so the result is the same as ours after the class token.
"""
import torch.nn as nn

from methods.vpt import RULES, Config, add_prompts

__all__ = ["RULES", "Config", "apply"]


def apply(model: nn.Module, cfg: Config) -> nn.Module:
    return add_prompts(model, cfg, deep=False, method="vpt_shallow")
