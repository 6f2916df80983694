"""Device-resident batching: shuffle, batch, augment and normalise where the model runs.

MedMNIST images are tiny, so a whole 28/64 px split fits on a GPU as uint8 (PathMNIST-28 train
is ~212 MB). Keeping it there removes the per-sample PIL + DataLoader-worker path of the
official script, which starves a GPU. Splits that do not fit (128/224 px, memory-mapped) are
gathered batch by batch on the host and copied through pinned memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch


class ImageAugment(Protocol):
    def images(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


# Fraction of free accelerator memory a resident split may take; the rest is for the model.
RESIDENT_FRACTION = 0.4


def fits_on_device(images: torch.Tensor, device: torch.device, memory_mapped: bool) -> bool:
    nbytes = images.numel() * images.element_size()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= RESIDENT_FRACTION * free
    # On the CPU "resident" means in RAM: in-memory splits are, memory-mapped ones stream.
    return not memory_mapped


class DeviceBatcher:
    """Iterates (x, y): x float (B, C, H, W) normalised on `device`, y int64 (B, L) on `device`;
    volumes (B, C, D, H, W) alike."""

    def __init__(
        self,
        images: torch.Tensor,  # (N, C, H, W) uint8, anywhere
        labels: torch.Tensor,  # (N, L) int64
        batch_size: int,
        device: torch.device,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        mean: float = 0.5,
        std: float = 0.5,
        augment: ImageAugment | None = None,
        aug_generator: torch.Generator | None = None,
        channels_last: bool = False,
        memory_mapped: bool = False,
        random_scale: float | None = None,
    ) -> None:
        if shuffle and generator is None:
            raise ValueError("a shuffling batcher needs a generator (for reproducible runs)")
        self.device = device
        self.batch_size = batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.generator, self.aug_generator = generator, aug_generator
        self.augment = augment
        self.channels_last = channels_last
        if random_scale is not None and aug_generator is None:
            raise ValueError("random scaling needs an aug_generator (for reproducible runs)")
        self.random_scale = random_scale  # each normalised sample x U[0, random_scale)
        self.resident = fits_on_device(images, device, memory_mapped)
        if self.resident:
            self.images = images.to(device).contiguous()
            self.labels = labels.to(device)
        else:
            self.images, self.labels = images, labels
        self.n = int(images.shape[0])
        # (x/255 - mean)/std as one multiply-add: x * scale + shift
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        # The permutation is drawn on the CPU generator so CPU and GPU runs shuffle alike.
        return torch.randperm(self.n, generator=self.generator)

    def _fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resident:
            idx = idx.to(self.device, non_blocking=True)
            return self.images.index_select(0, idx), self.labels.index_select(0, idx)
        # Streaming: sorted reads are kinder to a memory map; order within a batch is irrelevant.
        idx = idx.sort().values
        x, y = self.images[idx], self.labels[idx]
        if self.device.type == "cuda":
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        stop = len(self) * self.batch_size if self.drop_last else self.n
        for start in range(0, stop, self.batch_size):
            x, y = self._fetch(order[start : start + self.batch_size])
            if self.augment is not None:
                x = self.augment.images(x, self.aug_generator)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
            x = x.float().mul_(self.scale).add_(self.shift)
            if self.random_scale is not None:
                factor = torch.rand(x.shape[0], generator=self.aug_generator) * self.random_scale
                x.mul_(factor.to(x.device).view(-1, *([1] * (x.dim() - 1))))
            yield x, y
