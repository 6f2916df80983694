"""The dataset registry: 12 MedMNIST v2 2D datasets and 6 3D ones read from `medmnist.INFO`
(the 3D entries are tested further in test_data3d.py)."""

from __future__ import annotations

import pytest
from medmnist.info import INFO

from medmnist_lab.data.registry import FLAGS_2D, FLAGS_3D, SIZES, TASKS, get_dataset, list_datasets
from medmnist_lab.errors import DataFileError, MedMNISTLabError, UnknownNameError

V2_FLAGS = {
    "pathmnist",
    "chestmnist",
    "dermamnist",
    "octmnist",
    "pneumoniamnist",
    "retinamnist",
    "breastmnist",
    "bloodmnist",
    "tissuemnist",
    "organamnist",
    "organcmnist",
    "organsmnist",
}


def test_twelve_2d_and_six_3d_datasets() -> None:
    infos = list_datasets()
    assert len(infos) == 18
    flat = [i for i in infos if not i.is_3d]
    assert {i.flag for i in flat} == V2_FLAGS == set(FLAGS_2D)
    assert {i.flag for i in infos if i.is_3d} == set(FLAGS_3D)
    assert {i.spatial_dims for i in flat} == {2}


def test_every_task_type_and_channel_count_is_covered() -> None:
    infos = list_datasets()
    assert {i.task for i in infos} == set(TASKS)
    assert {i.n_channels for i in infos} == {1, 3}


@pytest.mark.parametrize(
    ("flag", "task", "channels", "classes", "width"),
    [
        ("breastmnist", "binary-class", 1, 2, 1),
        ("dermamnist", "multi-class", 3, 7, 1),
        ("chestmnist", "multi-label, binary-class", 1, 14, 14),
        ("retinamnist", "ordinal-regression", 3, 5, 1),
        ("pathmnist", "multi-class", 3, 9, 1),
        ("organsmnist", "multi-class", 1, 11, 1),
    ],
)
def test_entry_facts(flag: str, task: str, channels: int, classes: int, width: int) -> None:
    info = get_dataset(flag)
    assert (info.task, info.n_channels, info.n_classes, info.label_width) == (
        task,
        channels,
        classes,
        width,
    )
    assert info.is_multilabel == (task == "multi-label, binary-class")


@pytest.mark.parametrize("flag", sorted(V2_FLAGS))
def test_entries_match_the_official_info(flag: str) -> None:
    info, official = get_dataset(flag), INFO[flag]
    assert info.sizes == SIZES == (28, 64, 128, 224)
    assert info.n_samples == official["n_samples"]
    assert info.label_names == tuple(official["label"][str(i)] for i in range(info.n_classes))
    assert info.license == official["license"]
    assert info.urls[28] == official["url"] and info.md5s[28] == official["MD5"]
    assert info.urls[224] == official["url_224"] and info.md5s[224] == official["MD5_224"]
    assert info.filename(28) == f"{flag}.npz"
    assert info.filename(128) == f"{flag}_128.npz"


def test_lookup_is_case_insensitive() -> None:
    assert get_dataset("BreastMNIST").flag == "breastmnist"


@pytest.mark.parametrize(
    ("alias", "flag"),
    [
        ("organmnist_axial", "organamnist"),
        ("organmnist_coronal", "organcmnist"),
        ("organmnist_sagittal", "organsmnist"),
    ],
)
def test_v1_aliases_resolve_with_a_notice(alias: str, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert get_dataset(alias).flag == flag
    err = capsys.readouterr().err
    assert err.count("\n") == 1, "the notice is one line"
    assert alias in err and flag in err and "v2" in err and "blank slices" in err


def test_v2_name_has_no_notice(capsys: pytest.CaptureFixture[str]) -> None:
    get_dataset("organamnist")
    assert capsys.readouterr().err == ""


def test_unknown_name_lists_valid_names_and_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError) as exc:
        get_dataset("breastmnst")
    msg = str(exc.value)
    assert "'breastmnst'" in msg
    assert "did you mean 'breastmnist'" in msg
    assert all(flag in msg for flag in V2_FLAGS)
    assert isinstance(exc.value, MedMNISTLabError)


def test_unknown_name_far_from_anything_has_no_suggestion() -> None:
    with pytest.raises(UnknownNameError) as exc:
        get_dataset("cifar10")
    assert "did you mean" not in str(exc.value)
    assert "pathmnist" in str(exc.value)


@pytest.mark.parametrize("size", [32, 0, 256])
def test_unavailable_size_is_a_clear_error(size: int) -> None:
    info = get_dataset("breastmnist")
    with pytest.raises(DataFileError) as exc:
        info.filename(size)
    msg = str(exc.value)
    assert f"size {size}" in msg and "breastmnist" in msg and "28, 64, 128, 224" in msg
