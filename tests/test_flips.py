"""Test-time flips, one rule everywhere (issue "One house", point 3): `evaluate`, `predict --tta`
(Predictor API and CLI, checkpoint and ONNX) and the exported ONNX graph give the same
probabilities on the same real images, and a run trained with `tta` runs its mirror once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from medmnist_lab.cli.main import main
from medmnist_lab.deploy.export import export_model
from medmnist_lab.deploy.predictor import LOGITS_OUTPUT, OnnxPredictor, Predictor, TorchPredictor
from medmnist_lab.engine import fit, resolve_config, scoring
from medmnist_lab.engine.scoring import evaluate

pytestmark = pytest.mark.slow  # every test uses the module fixture that trains two real runs: ~20 s on 2 busy cores
TINY = dict(width=8, batch_size=64, amp=False)
TOLERANCE = 1e-5  # fp32 throughout; the bound for "the same numbers"
N_TEST = 156  # BreastMNIST's test split


@pytest.fixture(scope="module")
def runs(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny real BreastMNIST runs, one trained without and one with `tta`: their best.pt."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("flips")
    found = {}
    for name, tta in (("plain", False), ("tta", True)):
        cfg = resolve_config("breastmnist", root=str(real_root), out_dir=str(out), name=name, epochs=2, tta=tta, **TINY)
        found[name] = fit(cfg, progress=False).run_dir / "best.pt"
    return found


@pytest.fixture(scope="module")
def exports(runs: dict[str, Path]) -> dict[str, Path]:
    return {name: export_model(ckpt, "onnx", ckpt.with_name("model.onnx"))[0] for name, ckpt in runs.items()}


@pytest.fixture(scope="module")
def test_npz(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real test split as an npz of the official layout, as a user would pass it to predict."""
    path = tmp_path_factory.mktemp("npz") / "test.npz"
    with np.load(real_root / "breastmnist.npz") as npz:
        np.savez(path, test_images=npz["test_images"])
    return path


@pytest.fixture(scope="module")
def images(test_npz: Path) -> np.ndarray:
    with np.load(test_npz) as npz:
        return npz["test_images"][:, None]  # (N, 1, 28, 28) uint8, the predictor's layout


def cli_probabilities(model: Path, npz: Path, out: Path, *flags: str) -> np.ndarray:
    """`medmnist-lab predict MODEL test.npz [--tta] -o out.json`: the probabilities, unrounded."""
    rc = main(["predict", str(model), str(npz), "-o", str(out), "--overwrite", *flags])
    assert rc == 0
    report = json.loads(out.read_text())
    assert [p["path"] for p in report["predictions"]] == [f"{npz}#test/{i}" for i in range(N_TEST)]
    return np.array([list(p["probabilities"].values()) for p in report["predictions"]])


def graph_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    """The exported file run with plain onnxruntime, as docs/deploy.md shows: its first output."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.astype(np.float32)})[0].astype(np.float64)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape == (N_TEST, 2)
    return float(np.abs(a - b).max())


@contextmanager
def counting(module: torch.nn.Module) -> Iterator[list[int]]:
    """The batch size of every forward pass of `module` while inside."""
    seen: list[int] = []
    handle = module.register_forward_hook(lambda _m, args, _out: seen.append(int(args[0].shape[0])))
    try:
        yield seen
    finally:
        handle.remove()


def test_a_model_trained_without_tta_gives_the_same_flipped_numbers_on_every_path(
    runs: dict[str, Path], exports: dict[str, Path], images: np.ndarray, test_npz: Path, real_root: Path, tmp_path: Path
) -> None:
    ckpt, onnx_file = runs["plain"], exports["plain"]
    flipped = evaluate(ckpt, "test", root=str(real_root), tta=True).result.scores
    plain = evaluate(ckpt, "test", root=str(real_root)).result.scores
    assert max_diff(flipped, plain) > 1e-3  # the mirror did change the numbers: the test can tell
    got = {
        "predict --tta (checkpoint, API)": Predictor.load(ckpt).probabilities(images, tta=True),
        "predict --tta (checkpoint, CLI)": cli_probabilities(ckpt, test_npz, tmp_path / "a.json", "--tta"),
        "predict --tta (ONNX, API)": Predictor.load(onnx_file).probabilities(images, tta=True),
        "predict --tta (ONNX, CLI)": cli_probabilities(onnx_file, test_npz, tmp_path / "b.json", "--tta"),
    }
    diffs = {name: max_diff(probs, flipped) for name, probs in got.items()}
    print("\nplain run, with flips, max abs diff to evaluate(tta=True):", diffs)
    assert all(d <= TOLERANCE for d in diffs.values()), diffs
    # without --tta: the graph's own output, the predictors and evaluate agree unflipped
    without = {
        "predict (checkpoint)": Predictor.load(ckpt).probabilities(images),
        "predict (ONNX)": Predictor.load(onnx_file).probabilities(images),
        "ONNX graph (onnxruntime)": graph_probabilities(onnx_file, images),
    }
    diffs = {name: max_diff(probs, plain) for name, probs in without.items()}
    print("plain run, no flips, max abs diff to evaluate():", diffs)
    assert all(d <= TOLERANCE for d in diffs.values()), diffs


def test_a_model_trained_with_tta_gives_its_flipped_numbers_on_every_path(
    runs: dict[str, Path], exports: dict[str, Path], images: np.ndarray, test_npz: Path, real_root: Path, tmp_path: Path
) -> None:
    ckpt, onnx_file = runs["tta"], exports["tta"]
    reference = evaluate(ckpt, "test", root=str(real_root)).result.scores
    got = {
        "evaluate(tta=True)": evaluate(ckpt, "test", root=str(real_root), tta=True).result.scores,
        "predict (checkpoint)": Predictor.load(ckpt).probabilities(images),
        "predict --tta (checkpoint, API)": Predictor.load(ckpt).probabilities(images, tta=True),
        "predict --tta (checkpoint, CLI)": cli_probabilities(ckpt, test_npz, tmp_path / "a.json", "--tta"),
        "predict --tta (ONNX, API)": Predictor.load(onnx_file).probabilities(images, tta=True),
        "predict --tta (ONNX, CLI)": cli_probabilities(onnx_file, test_npz, tmp_path / "b.json", "--tta"),
        "ONNX graph (onnxruntime)": graph_probabilities(onnx_file, images),
    }
    diffs = {name: max_diff(probs, reference) for name, probs in got.items()}
    print("\ntta run, max abs diff to evaluate():", diffs)
    assert all(d <= TOLERANCE for d in diffs.values()), diffs
    # the checkpoint paths run the very same code: bit for bit
    assert np.array_equal(got["predict --tta (checkpoint, API)"], reference)
    assert np.array_equal(got["evaluate(tta=True)"], reference)


@pytest.mark.parametrize(
    "run,tta,passes", [("plain", False, 1), ("plain", True, 2), ("tta", False, 2), ("tta", True, 2)]
)
def test_the_checkpoint_predictor_runs_the_mirror_once(
    runs: dict[str, Path], images: np.ndarray, run: str, tta: bool, passes: int
) -> None:
    """`predict --tta` of a run trained with `tta`: the image and its mirror, each once (not four)."""
    predictor = Predictor.load(runs[run])
    assert isinstance(predictor, TorchPredictor)
    with counting(predictor.model) as seen:
        predictor.probabilities(images, tta=tta, batch_size=N_TEST)
    assert seen == [N_TEST] * passes
    with counting(predictor.model) as seen:  # in batches: each batch twice at most, too
        predictor.probabilities(images, tta=tta, batch_size=100)
    assert seen == [100] * passes + [N_TEST - 100] * passes


@pytest.mark.parametrize(
    "run,tta,passes", [("plain", False, 1), ("plain", True, 2), ("tta", False, 2), ("tta", True, 2)]
)
def test_evaluate_runs_the_mirror_once(
    runs: dict[str, Path], real_root: Path, monkeypatch: pytest.MonkeyPatch, run: str, tta: bool, passes: int
) -> None:
    seen: list[int] = []
    original = scoring.predict

    def predict(model: torch.nn.Module, *args: object) -> torch.Tensor:
        with counting(model) as batches:
            logits = original(model, *args)
        seen.extend(batches)
        return logits

    monkeypatch.setattr(scoring, "predict", predict)
    evaluate(runs[run], "test", root=str(real_root), tta=tta)
    assert seen == [N_TEST] * passes  # the split fits one evaluation batch


def conv_count(path: Path) -> int:
    return sum(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def test_the_onnx_paths_run_the_mirror_once(
    exports: dict[str, Path], images: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph of a `tta` run holds the network twice (image and mirror), a plain run's once; the
    ONNX predictor runs a `tta` graph once per batch whatever --tta says, a plain one twice with it."""
    assert conv_count(exports["tta"]) == 2 * conv_count(exports["plain"]) > 0
    for name, tta, runs_per_batch in (("plain", False, 1), ("plain", True, 2), ("tta", False, 1), ("tta", True, 1)):
        predictor = Predictor.load(exports[name])
        assert isinstance(predictor, OnnxPredictor) and predictor.has_logits
        calls: list[int] = []
        session_run = predictor.session.run

        def run(names: list[str] | None, feeds: dict[str, np.ndarray], _run=session_run, _calls=calls) -> list:
            _calls.append(len(next(iter(feeds.values()))))
            return _run(names, feeds)

        monkeypatch.setattr(predictor, "session", _Proxy(predictor.session, run))
        predictor.probabilities(images, tta=tta, batch_size=N_TEST)
        assert calls == [N_TEST] * runs_per_batch, (name, tta)


class _Proxy:
    """An onnxruntime session whose `run` is replaced (the real one's attributes are read-only)."""

    def __init__(self, session: ort.InferenceSession, run: Callable[..., list]) -> None:
        self._session, self.run = session, run

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)


def test_the_onnx_export_has_a_logits_output(exports: dict[str, Path], images: np.ndarray) -> None:
    """The probabilities are the logits' softmax, in the graph as in `scores_from_logits`."""
    session = ort.InferenceSession(str(exports["plain"]), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities", LOGITS_OUTPUT]
    probs, logits = session.run(None, {"images": images.astype(np.float32)})
    assert np.abs(torch.softmax(torch.from_numpy(logits), 1).numpy() - probs).max() <= 1e-6


def test_evaluate_cli_tta_scores_as_predict_tta(
    runs: dict[str, Path], real_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`medmnist-lab evaluate CKPT --tta`: the flipped numbers, and its record says they are."""
    ckpt = runs["plain"]
    for flags, tta in (((), False), (("--tta",), True)):
        assert main(["evaluate", str(ckpt), "--json", *flags]) == 0
        record = json.loads(capsys.readouterr().out.split("\nsaved:")[0])
        want = evaluate(ckpt, "test", root=str(real_root), tta=tta).result.metrics
        assert record["tta"] is tta and (record["auc"], record["acc"]) == (want.auc, want.acc)
