"""Augmentation of volumes: the `volume` policy, which policies take volumes, previews of slices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medmnist_lab.augment import build_augment
from medmnist_lab.cli.main import main
from medmnist_lab.errors import MedMNISTLabError
from synthetic import write_npz

EXACT = dict(p_affine=0.0, p_jitter=0.0)  # flips and 90-degree turns only: voxels move, values stay


def _volumes(n: int = 6, side: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, side, side, side), generator=torch.Generator().manual_seed(0)).to(torch.uint8)


def test_flips_and_turns_move_voxels_exactly():
    x = _volumes()
    aug = build_augment("volume", 8, 1, spatial_dims=3, **EXACT, p_flip=1.0, p_rot90=1.0)
    out = aug.images(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for a, b in zip(x, out, strict=True):
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)  # same voxels
        assert not torch.equal(a, b)
        # every flip/turn combination is one of the 48 symmetries of a cube: find it
        found = any(
            torch.equal(torch.rot90(a.flip(dims), k, plane), b) if dims else torch.equal(torch.rot90(a, k, plane), b)
            for dims in ([], [1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3])
            for plane in ((2, 3), (1, 3), (1, 2))
            for k in range(4)
        )
        assert found


def test_same_generator_same_volumes_and_probability_zero_is_identity():
    x = _volumes()
    aug = build_augment("volume", 8, 1, spatial_dims=3)
    a = aug.images(x, torch.Generator().manual_seed(5))
    b = aug.images(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x)
    off = build_augment("volume", 8, 1, spatial_dims=3, p_flip=0.0, p_rot90=0.0, **EXACT)
    assert torch.equal(off.images(x, torch.Generator().manual_seed(5)), x)


def test_small_affine_and_jitter_change_values_within_range():
    x = _volumes(4, 12)
    aug = build_augment("volume", 12, 1, spatial_dims=3, p_flip=0.0, p_rot90=0.0, p_affine=1.0, p_jitter=1.0)
    out = aug.images(x, torch.Generator().manual_seed(2))
    assert out.dtype == torch.uint8 and not torch.equal(out, x)
    assert (out.float() - x.float()).abs().mean() > 1


def test_mixup_takes_volumes():
    aug = build_augment("volume+mixup", 8, 1, spatial_dims=3)
    x = _volumes().float()
    y = torch.nn.functional.one_hot(torch.arange(6) % 2, 2).float()
    mixed, targets = aug.mix(x, y, torch.Generator().manual_seed(0))
    assert mixed.shape == x.shape and torch.allclose(targets.sum(1), torch.ones(6))


@pytest.mark.parametrize(
    "spec,dims,message",
    [
        ("trivialaugment", 3, "does not work on volumes"),
        ("volume+cutmix", 3, "does not work on volumes"),
        ("volume", 2, "does not work on 2D images"),
    ],
)
def test_policies_for_the_wrong_dimensions_are_refused(spec, dims, message):
    with pytest.raises(MedMNISTLabError, match=message):
        build_augment(spec, 28, 1, spatial_dims=dims)


def test_preview_draws_slices_of_volumes(tmp_path: Path, capsys):
    write_npz(tmp_path / "adrenalmnist3d.npz", "adrenalmnist3d", 28, counts=(12, 4, 4))
    out = tmp_path / "p.png"
    code = main(
        [
            "augment",
            "preview",
            "adrenalmnist3d",
            "--policy",
            "volume",
            "--n",
            "3",
            "--root",
            str(tmp_path),
            "-o",
            str(out),
        ]
    )
    assert code == 0 and out.is_file()
    assert "middle slices" in capsys.readouterr().out
    assert (
        main(
            [
                "augment",
                "preview",
                "adrenalmnist3d",
                "--policy",
                "simple",
                "--root",
                str(tmp_path),
                "-o",
                str(tmp_path / "q.png"),
            ]
        )
        == 2
    )
    assert "does not work on volumes" in capsys.readouterr().err
