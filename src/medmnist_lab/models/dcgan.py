"""DCGAN generator and discriminator (Radford, Metz & Chintala, ICLR 2016), plain or conditional.

The paper's architecture rules, all kept:
- no pooling: the discriminator downsamples with strided convolutions, the generator upsamples
  with transposed (fractionally strided) convolutions;
- batch norm in both nets, except on the generator's output layer and the discriminator's input
  layer (the paper: applying it there "resulted in sample oscillation and model instability");
- no fully connected hidden layers: z enters as a (nz, 1, 1) map that the first transposed conv
  projects to 4x4, and the discriminator ends in a 4x4 convolution to one logit;
- ReLU in the generator with a tanh output, LeakyReLU(0.2) in the discriminator;
- weights from N(0, 0.02); batch-norm scale from N(1, 0.02), shift 0 (`dcgan_init_`).

Spatial plan. The paper's 64 px net doubles 4 -> 8 -> 16 -> 32 -> 64. 28 is not a power of two,
so the 28 px net runs 4 -> 7 -> 14 -> 28: the 4 -> 7 step is a 3x3 transposed conv, stride 2,
padding 1 ((4 - 1) * 2 - 2 + 3 = 7); every other step is 4x4, stride 2, padding 1 (an exact
doubling, without the checkerboard of a 3x3 kernel on stride 2). The discriminator mirrors it
(28 -> 14 -> 7 with 4x4 convs, 7 -> 4 with a 3x3 conv). Generating 32 px and cropping to 28
would spend 23% of the generator's output on pixels that are thrown away and give the
discriminator a crop border to key on; the odd step avoids both.

Channels double as the resolution halves, from `width` at the largest hidden map: at 64 px and
width 128 this is the paper's 1024-512-256-128; width 64 (the default) is the PyTorch example's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medmnist_lab.errors import MedMNISTLabError

GAN_SIZES: tuple[int, ...] = (28, 64)
LEAK = 0.2  # the paper's LeakyReLU slope


def spatial_plan(image_size: int) -> list[int]:
    """Side lengths from the 4x4 seed to `image_size`, e.g. 28 -> [4, 7, 14, 28]."""
    if image_size not in GAN_SIZES:
        raise MedMNISTLabError(
            f"DCGAN image size {image_size} px is not supported; choose one of: {', '.join(map(str, GAN_SIZES))}"
        )
    sides = [image_size]
    while sides[-1] > 4:
        sides.append((sides[-1] + 1) // 2)
    assert sides[-1] == 4, sides  # holds for every size in GAN_SIZES
    return sides[::-1]


def _kernel(small: int, large: int) -> int:
    """Kernel of a stride-2, padding-1 (transposed) conv between sides `small` and `large`."""
    assert large in (2 * small, 2 * small - 1), (small, large)
    return 4 if large == 2 * small else 3


class Generator(nn.Module):
    """z (B, nz) [+ class y (B,)] -> images (B, C, H, W) in [-1, 1].

    Conditional (`n_classes > 0`): the one-hot label is concatenated to z. A learned embedding
    in front of the first transposed conv would add nothing: that conv is linear in its input,
    so embedding-then-conv equals a one-hot into the same conv with other weights.
    """

    def __init__(self, out_channels: int, image_size: int, nz: int = 100, width: int = 64, n_classes: int = 0) -> None:
        super().__init__()
        self.nz, self.n_classes, self.image_size = nz, n_classes, image_size
        plan = spatial_plan(image_size)  # e.g. [4, 7, 14, 28]
        n_hidden = len(plan) - 1  # hidden maps at sides plan[0..n_hidden-1]
        chans = [width * 2 ** (n_hidden - 1 - i) for i in range(n_hidden)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz + n_classes, chans[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(inplace=True),
        ]
        for i in range(1, n_hidden):
            k = _kernel(plan[i - 1], plan[i])
            layers += [
                nn.ConvTranspose2d(chans[i - 1], chans[i], k, 2, 1, bias=False),
                nn.BatchNorm2d(chans[i]),
                nn.ReLU(inplace=True),
            ]
        # Output layer: no batch norm (paper), so it keeps its bias.
        layers += [nn.ConvTranspose2d(chans[-1], out_channels, _kernel(plan[-2], plan[-1]), 2, 1)]
        layers += [nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = z.flatten(1)
        if self.n_classes:
            if y is None:
                raise ValueError("a conditional generator needs class labels y")
            z = torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], dim=1)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """images (B, C, H, W) [+ class y (B,)] -> logits (B,).

    Conditional (`n_classes > 0`): projection discriminator (Miyato & Koyama, ICLR 2018). The
    logit gains <embed(y), h>, where h (B, 4w, 4, 4) is the map the final 4x4 conv reads, so each
    class gets its own extra final kernel. Chosen over an auxiliary classifier head (AC-GAN)
    because AC-GAN's classification loss rewards samples that are easy to classify, which is
    known to cut intra-class diversity (Miyato & Koyama; Odena et al. saw it too), and it adds a
    loss weight to tune; projection keeps the single real/fake loss of plain DCGAN.
    """

    def __init__(self, in_channels: int, image_size: int, width: int = 64, n_classes: int = 0) -> None:
        super().__init__()
        self.n_classes, self.image_size = n_classes, image_size
        plan = spatial_plan(image_size)[::-1]  # e.g. [28, 14, 7, 4]
        n_hidden = len(plan) - 1
        chans = [width * 2**i for i in range(n_hidden)]
        # Input layer: no batch norm (paper), so it keeps its bias.
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, chans[0], _kernel(plan[1], plan[0]), 2, 1),
            nn.LeakyReLU(LEAK, inplace=True),
        ]
        for i in range(1, n_hidden):
            layers += [
                nn.Conv2d(chans[i - 1], chans[i], _kernel(plan[i + 1], plan[i]), 2, 1, bias=False),
                nn.BatchNorm2d(chans[i]),
                nn.LeakyReLU(LEAK, inplace=True),
            ]
        self.features = nn.Sequential(*layers)  # (B, chans[-1], 4, 4)
        self.head = nn.Conv2d(chans[-1], 1, 4, 1, 0)  # 4x4 -> 1x1: the unconditional logit
        self.embed = nn.Embedding(n_classes, chans[-1] * 16) if n_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        logit = self.head(h).flatten()
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional discriminator needs class labels y")
            logit = logit + (self.embed(y) * h.flatten(1)).sum(1)
        return logit


class PerClass(nn.Module):
    """K independent unconditional nets behind one (inputs, y) interface: sample i goes to net y[i].

    Lets per-class GANs share the conditional training loop. With one Adam over all K nets the
    update equals K separate Adams, since Adam skips parameters whose gradient is None.
    """

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, inputs: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("per-class nets need class labels y to route samples")
        classes = y.unique()
        if len(classes) == 1:  # the training loop feeds class-pure batches
            return self.nets[int(classes[0])](inputs)
        out: torch.Tensor | None = None
        for k in classes.tolist():
            idx = torch.nonzero(y == k).flatten()
            part = self.nets[k](inputs[idx])
            if out is None:
                out = part.new_empty((len(y), *part.shape[1:]))
            out[idx] = part
        assert out is not None
        return out


@torch.no_grad()
def dcgan_init_(module: nn.Module) -> None:
    """The paper's init, for `module.apply(dcgan_init_)`."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
