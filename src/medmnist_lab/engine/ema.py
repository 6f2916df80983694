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
        # The tensors are updated in place (optimizer steps, load_state_dict), so these pairs stay
        # valid for the model EMA was made from: no state dict is built per step.
        ema_state, state = self.module.state_dict(), model.state_dict()
        self._floats = [(ema_state[k], state[k].detach()) for k, v in ema_state.items() if v.is_floating_point()]
        self._others = [(ema_state[k], state[k]) for k, v in ema_state.items() if not v.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step towards `model`, the model this EMA was made from."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_([e for e, _ in self._floats], [w for _, w in self._floats], 1 - d)
        for e, w in self._others:  # e.g. BatchNorm's num_batches_tracked
            e.copy_(w)
