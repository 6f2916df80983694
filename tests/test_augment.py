"""Augmentation policies, batched ops, mixing, offline expansion and the augment CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import AutoAugment as TVAutoAugment
from torchvision.transforms import AutoAugmentPolicy, InterpolationMode

from medmnist_lab.augment import POLICIES, build_augment, parse_magnitudes
from medmnist_lab.augment import ops as aops
from medmnist_lab.augment.autoaug import AUTOAUGMENT_POLICIES, OP, apply_stage
from medmnist_lab.augment.expand import expand_dataset
from medmnist_lab.cli.main import main
from medmnist_lab.data.arrays import META_KEY, load_split
from medmnist_lab.errors import MedMNISTLabError

IMAGE_POLICIES = [
    n for n in POLICIES if POLICIES.get(n).kind == "image" and 2 in POLICIES.get(n).dims
]  # volumes: test_augment3d
RANDOM_POLICIES = [n for n in IMAGE_POLICIES if n != "none"]
MIX_POLICIES = ["mixup", "cutmix", "mixup+cutmix"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 16, c: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Smooth random images (not pure noise, so geometric ops visibly change them)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, size, size), generator=g).float()
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1).round().to(torch.uint8)


# --- every policy --------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", IMAGE_POLICIES)
def test_policy_keeps_shape_dtype_device(name: str, channels: int) -> None:
    for size in (28, 17, 64):  # odd and larger sizes too
        x = images(8, channels, size)
        out = build_augment(name, size, channels).images(x, gen())
        assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
        if name != "none":
            assert not torch.equal(out, x), f"{name} changed nothing at {size} px"


@pytest.mark.parametrize("name", RANDOM_POLICIES)
def test_output_depends_only_on_own_input(name: str) -> None:
    """Label alignment: changing input j (same seed) changes output j and no other, so no
    sample is reordered or mixed with another."""
    aug = build_augment(name, 28, 3)
    x = images(12, 3)
    x2 = x.clone()
    x2[5] = images(1, 3, seed=99)[0]
    a, b = aug.images(x, gen(3)), aug.images(x2, gen(3))
    same = (a == b).flatten(1).all(1)
    assert same.sum() == 11 and not same[5]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", RANDOM_POLICIES)
def test_per_sample_randomness(name: str, channels: int) -> None:
    x = images(1, channels).expand(32, -1, -1, -1).contiguous()
    out = build_augment(name, 28, channels).images(x, gen())
    distinct = torch.unique(out.flatten(1), dim=0).shape[0]
    assert distinct >= 8, f"{name}: only {distinct} distinct outputs of 32 identical inputs"


@pytest.mark.parametrize("name", [*RANDOM_POLICIES, *MIX_POLICIES])
def test_fixed_seed_reproduces(name: str) -> None:
    aug = build_augment(name, 28, 3)
    x = images(16, 3)
    y = torch.eye(4)[torch.arange(16) % 4]

    def run(seed: int):
        g = gen(seed)
        out = aug.images(x, g)
        return out, *aug.mix(out.float(), y, g)

    first, second, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_none_is_identity() -> None:
    aug = build_augment("none", 28, 1)
    x = images(4, 1)
    assert torch.equal(aug.images(x, gen()), x)
    assert not aug.mixes
    xf, y = x.float(), torch.eye(4)
    assert aug.mix(xf, y, gen())[0] is xf


def test_describe_is_json_with_every_magnitude() -> None:
    aug = build_augment("simple+mixup", 64, 1, rotate=10, fill=20)
    d = json.loads(json.dumps(aug.describe()))
    assert d["spec"] == "simple+mixup" and d["image_size"] == 64
    assert d["magnitudes"]["rotate"] == 10 and d["magnitudes"]["fill"] == [20.0]
    assert d["magnitudes"]["mixup_alpha"] == 0.2
    assert d["magnitudes"]["shift"] == 5  # 2 px at 28, scaled to 64
    assert build_augment("simple", 224, 1).describe()["magnitudes"]["crop_padding"] == 16
    assert build_augment("simple", 28, 1, rotate=None).magnitudes["rotate"] == 15.0


# --- the simple policy's ops do what they say ------------------------------------------------

ALL_OFF = dict(p_hflip=0, p_vflip=0, p_shift=0, p_rotate=0, p_crop=0, p_jitter=0, p_noise=0)


def only(**kw) -> dict:
    return {**ALL_OFF, **kw}


def dot(size: int = 28, r: int = 10, c: int = 12, n: int = 1) -> torch.Tensor:
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    x[:, :, r, c] = 200
    return x


def test_translate_directions() -> None:
    x = dot().float()
    fill = torch.zeros(1)
    for dx, dy, where in ((-3, 0, (10, 9)), (3, 0, (10, 15)), (0, -4, (6, 12)), (0, 2, (12, 12))):
        m = aops.translate_matrix(torch.tensor([float(dx)]), torch.tensor([float(dy)]))
        out = aops.warp(x, m, fill).round()
        assert out[0, 0, where[0], where[1]] == 200 and out.sum() == 200, (dx, dy)


def test_simple_shift_is_exact_integer_move() -> None:
    x = dot(n=64)
    out = build_augment("simple", 28, 1, **only(p_shift=1, shift=3)).images(x, gen())
    moves = set()
    for img in out[:, 0]:
        assert int(img.sum()) == 200 and img.max() == 200  # moved, not blurred, not lost
        r, c = divmod(int(img.flatten().argmax()), 28)
        assert abs(r - 10) <= 3 and abs(c - 12) <= 3
        moves.add((r - 10, c - 12))
    assert len(moves) > 10  # left, right, up and down all occur


def test_simple_flips() -> None:
    x = images(4, 3)
    h = build_augment("simple", 28, 3, **only(p_hflip=1)).images(x, gen())
    v = build_augment("simple", 28, 3, **only(p_vflip=1)).images(x, gen())
    assert torch.equal(h, x.flip(-1)) and torch.equal(v, x.flip(-2))


def test_simple_crop_pads_with_fill() -> None:
    x = torch.full((32, 1, 28, 28), 100, dtype=torch.uint8)
    out = build_augment("simple", 28, 1, **only(p_crop=1, crop_padding=2), fill=7).images(x, gen())
    assert set(out.unique().tolist()) <= {7, 100}
    # a crop offset by k pixels leaves k rows/columns of fill, never more than the padding
    for img in out[:, 0]:
        inside = (img == 100).nonzero()
        assert inside[:, 0].min() <= 2 and inside[:, 0].max() >= 25
        assert inside[:, 1].min() <= 2 and inside[:, 1].max() >= 25
    assert (out == 7).any()


def test_noise_clamps_instead_of_wrapping() -> None:
    x = torch.full((8, 1, 28, 28), 254, dtype=torch.uint8)
    out = build_augment("simple", 28, 1, **only(p_noise=1, noise_std=20)).images(x, gen())
    assert int(out.min()) > 150  # 254 + 4 wrapped to 2 in the seed
    assert (out == 255).float().mean() > 0.3


def test_rotation_direction_matches_torch_rot90() -> None:
    x = images(2, 3)
    m = aops.rotate_matrix(torch.tensor([90.0, -90.0]), 28, 28)
    out = aops.warp(x.float(), m, torch.zeros(3)).round().to(torch.uint8)
    assert torch.equal(out[0], torch.rot90(x[0], 1, dims=(-2, -1)))  # counter-clockwise
    assert torch.equal(out[1], torch.rot90(x[1], -1, dims=(-2, -1)))


def test_jitter_on_grayscale_and_rgb() -> None:
    for c in (1, 3):
        x = images(16, c)
        out = build_augment("simple", 28, c, **only(p_jitter=1)).images(x, gen())
        assert not torch.equal(out, x)
    grey = torch.full((2, 3, 4, 4), 90.0)  # saturation and hue leave a grey image grey
    out = aops.hue(aops.saturation(grey, torch.tensor([1.9, 0.2])), torch.tensor([0.3, -0.3]))
    assert torch.equal(out.round(), grey)
    x = images(4, 3)
    shifts = [0.04, -0.1, 1 / 3, 0.5]
    ours = aops.hue(x.float(), torch.tensor(shifts)).round()
    for i, h in enumerate(shifts):  # per-sample shifts, each as torchvision's per-image hue
        assert (ours[i] - TF.adjust_hue(x[i], h).float()).abs().max() <= 1


# --- AutoAugment family: tables and ops match the reference ----------------------------------


@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_autoaugment_tables_are_the_original_25(policy: str) -> None:
    reference = TVAutoAugment(AutoAugmentPolicy(policy)).policies
    assert len(AUTOAUGMENT_POLICIES[policy]) == 25
    assert [tuple(map(tuple, s)) for s in AUTOAUGMENT_POLICIES[policy]] == [tuple(map(tuple, s)) for s in reference]


def _reference(name: str, m: float, c: int):
    near = InterpolationMode.NEAREST
    fill = [0.0] * c

    def affine(**kw):
        base = dict(angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0])
        return lambda i: TF.affine(i, **{**base, **kw}, interpolation=near, fill=fill)

    return {
        "Brightness": lambda i: TF.adjust_brightness(i, 1 + m),
        "Color": lambda i: TF.adjust_saturation(i, 1 + m),
        "Contrast": lambda i: TF.adjust_contrast(i, 1 + m),
        "Sharpness": lambda i: TF.adjust_sharpness(i, 1 + m),
        "Posterize": lambda i: TF.posterize(i, int(m)),
        "Solarize": lambda i: TF.solarize(i, m),
        "AutoContrast": TF.autocontrast,
        "Equalize": TF.equalize,
        "Invert": TF.invert,
        "Rotate": lambda i: TF.rotate(i, m, interpolation=near, fill=fill),
        "TranslateX": affine(translate=[int(m), 0]),
        "TranslateY": affine(translate=[0, int(m)]),
        "ShearX": affine(shear=[math.degrees(math.atan(m)), 0.0], center=[0, 0]),
        "ShearY": affine(shear=[0.0, math.degrees(math.atan(m))], center=[0, 0]),
    }[name]


OP_CASES = [
    ("Brightness", 0.5),
    ("Color", -0.5),
    ("Contrast", 0.6),
    ("Sharpness", 0.9),
    ("Posterize", 3),
    ("Solarize", 100),
    ("AutoContrast", 0),
    ("Equalize", 0),
    ("Invert", 0),
    ("Rotate", 30),
    ("TranslateX", 5),
    ("TranslateY", -4),
    ("ShearX", 0.3),
    ("ShearY", -0.27),
]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("name", "m"), OP_CASES)
def test_batched_op_matches_torchvision(name: str, m: float, channels: int) -> None:
    """Each batched op equals torchvision's per-image op (±1 grey level: we round where
    torchvision truncates)."""
    x = images(6, channels)
    op, mag = torch.full((6,), OP[name]), torch.full((6,), float(m))
    ours = apply_stage(x.float(), op, mag, torch.zeros(channels), "nearest").to(torch.uint8)
    ref = _reference(name, m, channels)(x)
    assert (ours.int() - ref.int()).abs().max() <= 1


def test_stage_applies_each_samples_own_op() -> None:
    x = images(3, 1)
    op = torch.tensor([OP["Invert"], OP["Identity"], OP["Posterize"]])
    out = apply_stage(x.float(), op, torch.tensor([0.0, 0.0, 2.0]), torch.zeros(1), "bilinear")
    assert torch.equal(out[0], 255 - x[0].float()) and torch.equal(out[1], x[1].float())
    assert set(out[2].unique().tolist()) <= {0, 64, 128, 192}


# --- MixUp / CutMix ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MIX_POLICIES)
def test_mix_targets_match_pixels_and_sum_to_one(name: str) -> None:
    """Image i is the constant i with target one-hot(i): a mixed image's mean must equal the
    target-weighted mean of the constants, and one-hot rows must still sum to 1."""
    aug = build_augment(name, 28, 3)
    assert aug.mixes
    n = 16
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 28, 28).contiguous()
    y = torch.eye(n)
    mx, my = aug.mix(x, y, gen(1))
    assert mx.shape == x.shape and my.shape == y.shape
    assert torch.allclose(my.sum(1), torch.ones(n), atol=1e-5)
    assert (my >= 0).all() and (my <= 1).all()
    expected = my @ torch.arange(n, dtype=torch.float32)
    assert torch.allclose(mx.mean(dim=(1, 2, 3)), expected, atol=1e-4)
    assert (my.max(1).values < 1).any()  # something was actually mixed


@pytest.mark.parametrize("name", MIX_POLICIES)
def test_mix_multi_hot_stays_in_unit_interval(name: str) -> None:
    y = (torch.rand(32, 14, generator=gen()) < 0.3).float()
    _, my = build_augment(name, 28, 1).mix(images(32, 1).float(), y, gen())
    assert (my >= 0).all() and (my <= 1).all()
    assert ((my > 0) & (my < 1)).any()


def test_image_policy_combines_with_mix() -> None:
    aug = build_augment("autoaugment-svhn+cutmix", 28, 1, cutmix_alpha=0.5)
    assert aug.mixes and aug.names == ["autoaugment-svhn", "cutmix"]
    assert build_augment("mixup+simple", 28, 1).spec == "simple+mixup"
    out = aug.images(images(4, 1), gen())
    assert out.dtype == torch.uint8


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kw", "words"),
    [
        ("autoaugment-imagnet", {}, ["autoaugment-imagenet", "randaugment", "choose one of"]),
        ("simple+randaugment", {}, ["one image policy", "mixup"]),
        ("simple+", {}, ["empty"]),
        ("simple+simple", {}, ["twice"]),
        ("simple", {"rotate": 400}, ["rotate", "400", "[0, 180]"]),
        ("simple", {"shift": 20}, ["shift", "[0, 14]"]),
        ("simple", {"p_hflip": 1.5}, ["p_hflip", "[0, 1]"]),
        ("randaugment", {"magnitude": 31}, ["magnitude", "[0, 30]"]),
        ("randaugment", {"num_ops": 1.5}, ["num_ops", "integer"]),
        ("mixup", {"mixup_alpha": 0}, ["mixup_alpha"]),
        ("simple", {"rotation": 5}, ["rotation", "valid:", "rotate", "noise_std"]),
        ("none", {"rotate": 5}, ["rotate", "takes no magnitudes"]),
        ("simple", {"interpolation": "cubic"}, ["bilinear", "nearest"]),
    ],
)
def test_clear_errors(spec: str, kw: dict, words: list[str]) -> None:
    with pytest.raises(MedMNISTLabError) as err:
        build_augment(spec, 28, 1, **kw)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_fill_is_per_channel() -> None:
    assert build_augment("simple", 28, 3, fill=5).magnitudes["fill"] == [5.0, 5.0, 5.0]
    assert build_augment("simple", 28, 3, fill=[1, 2, 3]).magnitudes["fill"] == [1.0, 2.0, 3.0]
    with pytest.raises(MedMNISTLabError, match="1 channel"):
        build_augment("autoaugment-imagenet", 28, 1, fill=[0, 0, 0])  # the seed's Pillow crash
    with pytest.raises(MedMNISTLabError, match=r"0\.\.255"):
        build_augment("simple", 28, 1, fill=300)
    # a grey fill shows up in pixels rotated in from outside a black image
    x = torch.zeros(8, 1, 28, 28, dtype=torch.uint8)
    out = build_augment("simple", 28, 1, **only(p_rotate=1, rotate=45), fill=128).images(x, gen())
    assert int(out.max()) == 128


def test_wrong_channels_and_magnitude_parsing() -> None:
    with pytest.raises(MedMNISTLabError, match="1-channel"):
        build_augment("simple", 28, 1).images(images(2, 3), gen())
    assert parse_magnitudes(["rotate=30", "fill=0,1,2", "interpolation=nearest", "hue=0.1"]) == {
        "rotate": 30,
        "fill": [0, 1, 2],
        "interpolation": "nearest",
        "hue": 0.1,
    }
    with pytest.raises(MedMNISTLabError, match="NAME=VALUE"):
        parse_magnitudes(["rotate"])


# --- devices ----------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", [*RANDOM_POLICIES, "mixup+cutmix"])
def test_cuda_keeps_device_and_cpu_generator_matches(name: str) -> None:
    aug = build_augment(name, 28, 3)
    x = images(16, 3)
    on_gpu = aug.images(x.cuda(), torch.Generator(device="cuda").manual_seed(0))
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.uint8
    # with a CPU generator the parameters are the same on both devices
    a, b = aug.images(x, gen(5)), aug.images(x.cuda(), gen(5)).cpu()
    assert (a.int() - b.int()).abs().gt(1).float().mean() < 0.01
    mx, my = aug.mix(on_gpu.float(), torch.eye(16, device="cuda"), torch.Generator(device="cuda"))
    assert mx.device.type == "cuda" and my.device.type == "cuda"


# --- offline expansion --------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["breastmnist", "dermamnist"])
def test_expand_keeps_originals_and_adds_k_copies(flag: str, synthetic_root, tmp_path) -> None:
    out = expand_dataset(flag, "simple", 2, tmp_path / "x.npz", root=synthetic_root, seed=3, rotate=5)
    src = np.load(synthetic_root / f"{flag}.npz")
    new = np.load(out)
    n = len(src["train_images"])
    assert len(new["train_images"]) == 3 * n
    assert np.array_equal(new["train_images"][:n], src["train_images"])
    assert np.array_equal(new["train_labels"], np.concatenate([src["train_labels"]] * 3))
    for k in (1, 2):
        copy = new["train_images"][k * n : (k + 1) * n]
        assert copy.shape == src["train_images"].shape and not np.array_equal(copy, src["train_images"])
    assert not np.array_equal(new["train_images"][n : 2 * n], new["train_images"][2 * n :])
    for split in ("val", "test"):
        for what in ("images", "labels"):
            key = f"{split}_{what}"
            assert np.array_equal(new[key], src[key]) and new[key].dtype == src[key].dtype
    meta = json.loads(str(new[META_KEY]))
    assert meta["policy"] == "simple" and meta["factor"] == 2 and meta["seed"] == 3
    assert meta["dataset"] == flag and meta["augment"]["magnitudes"]["rotate"] == 5
    # the loader accepts it, and the same seed writes the same file contents
    assert len(load_split(flag, "train", path=out)) == 3 * n
    again = expand_dataset(flag, "simple", 2, tmp_path / "y.npz", root=synthetic_root, seed=3, rotate=5)
    assert np.array_equal(np.load(again)["train_images"], new["train_images"])
    assert not list(tmp_path.glob("*.part"))


def test_expand_rejects_mixing_and_bad_factor(synthetic_root, tmp_path) -> None:
    with pytest.raises(MedMNISTLabError, match="soft labels"):
        expand_dataset("breastmnist", "simple+mixup", 1, tmp_path / "x.npz", root=synthetic_root)
    with pytest.raises(MedMNISTLabError, match="factor"):
        expand_dataset("breastmnist", "simple", 0, tmp_path / "x.npz", root=synthetic_root)


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_preview_writes_grid(synthetic_root, tmp_path, capsys) -> None:
    png = tmp_path / "grid.png"
    rc = main(
        [
            "augment",
            "preview",
            "dermamnist",
            "--policy",
            "autoaugment-cifar10+mixup",
            "-o",
            str(png),
            "--root",
            str(synthetic_root),
            "--n",
            "3",
            "--copies",
            "2",
            "--cell",
            "20",
            "--augment-set",
            "mixup_alpha=0.4",
        ]
    )
    assert rc == 0 and "wrote" in capsys.readouterr().out
    with Image.open(png) as im:
        assert im.size == (150 + 3 * 22 + 2, 3 * 22 + 2)  # label column + 3 columns, 3 rows


def test_cli_expand_list_and_errors(synthetic_root, tmp_path, capsys) -> None:
    out = tmp_path / "e.npz"
    assert (
        main(
            [
                "augment",
                "expand",
                "breastmnist",
                "--policy",
                "randaugment",
                "--factor",
                "1",
                "-o",
                str(out),
                "--root",
                str(synthetic_root),
                "--augment-set",
                "magnitude=5",
            ]
        )
        == 0
    )
    assert len(load_split("breastmnist", "train", path=out)) == 80
    assert main(["augment", "list", "-v"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in POLICIES) and "noise_std" in listed
    rc = main(
        [
            "augment",
            "preview",
            "breastmnist",
            "--policy",
            "autoaugment",
            "-o",
            str(tmp_path / "g.png"),
            "--root",
            str(synthetic_root),
        ]
    )
    err = capsys.readouterr().err
    assert rc != 0 and "autoaugment-imagenet" in err and "Traceback" not in err
    rc = main(
        [
            "augment",
            "preview",
            "breastmnist",
            "--policy",
            "simple",
            "--augment-set",
            "rotate=999",
            "-o",
            str(tmp_path / "g.png"),
            "--root",
            str(synthetic_root),
        ]
    )
    assert rc != 0 and "[0, 180]" in capsys.readouterr().err


# --- real data ----------------------------------------------------------------------------------


def test_real_files_augment(real_root) -> None:
    for flag, c in (("breastmnist", 1), ("retinamnist", 3)):
        x = load_split(flag, "train", 28, real_root, subset=64).images
        for name in ("simple", "autoaugment-imagenet", "autoaugment-svhn"):
            out = build_augment(name, 28, c).images(x, gen())
            assert out.shape == x.shape and not torch.equal(out, x)
    x64 = load_split("breastmnist", "train", 64, real_root, subset=16).images
    assert build_augment("trivialaugment", 64, 1).images(x64, gen()).shape == (16, 1, 64, 64)
