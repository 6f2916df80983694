"""An exponential moving average of a model's weights (and BatchNorm statistics), for evaluation.

After every optimizer step the average moves towards the trained weights:
    ema <- ema + (1 - d_t) (w - ema),   d_t = min(decay, (1 + t) / (10 + t))
the warm-up d_t keeps the first steps from being dominated by the random initialisation. The
averaged copy is what validation selects on and what the checkpoint's "model" holds, so evaluate,
predict and export use it without knowing about EMA; the trained weights are kept beside it for
resuming.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_state, state = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in ema_state.items() if v.is_floating_point()]
        torch._foreach_lerp_([ema_state[k] for k in floats], [state[k].detach() for k in floats], 1 - d)
        for k, v in ema_state.items():
            if not v.is_floating_point():  # e.g. BatchNorm's num_batches_tracked
                v.copy_(state[k])
