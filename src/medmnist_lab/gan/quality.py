"""How good are a GAN's images: FID, precision/recall, CAS and a mode-collapse check.

All distances live in the feature space of a classifier trained on the real data of the same
dataset (see features.py). Inception-based FID is not used: its weights must be downloaded, and
an ImageNet network is out of its domain on 28 px grayscale scans, so its distances say little
about what a MedMNIST classifier would learn from the images.

- FID (Heusel et al., 2017): Fréchet distance between Gaussians fitted to real and generated
  features. Biased upwards for small n, so it is also given for a real held-out set (test vs
  train) at the same n: the floor a perfect generator would reach.
- Precision / recall (Kynkäänniemi et al., 2019): the real manifold is the union of balls around
  each real feature reaching its k-th nearest real neighbour (k = 3); precision is the share of
  generated samples inside it (fidelity), recall the share of real samples inside the generated
  manifold (coverage).
- CAS, classification accuracy score (Ravuri & Vinyals, 2019): a classifier trained on
  generated images only, tested on the real test split, next to the same recipe trained on real.
- Mode collapse: generated features spread far less than real ones, or many generated samples
  with a near-duplicate, relative to the same measures on the real set.
- Memorization: generated samples much closer to their nearest training image than real test
  images are; with a few hundred training images a GAN can copy them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medmnist_lab.data.arrays import load_split
from medmnist_lab.engine.device import resolve_device
from medmnist_lab.engine.summary import RunSummary, SplitMetrics
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.gan.features import (
    DEFAULT_EPOCHS,
    DEFAULT_MODEL,
    DEFAULT_RECIPE,
    DEFAULT_WIDTH,
    FeatureNet,
    classifier_config,
    default_feature_net,
    feature_run_name,
    fit_cached,
    load_feature_net,
)
from medmnist_lab.gan.sampling import (
    LoadedGAN,
    check_sample_memory,
    load_gan,
    proportional_counts,
    sample_counts,
    write_synthetic_npz,
)
from medmnist_lab.gan.summaries import (
    CASResult,
    DiversityReport,
    FIDReport,
    GANQuality,
    MemorizationReport,
    PrecisionRecall,
)

PR_K = 3  # the paper's choice
# Mode-collapse thresholds: generated spread below half the real one, or near-duplicates (closer
# than DUP_FRACTION x the real median nearest-neighbour distance) for over 10% of the samples
# and more than twice the real share.
SPREAD_WARN = 0.5
DUP_FRACTION = 0.1
DUP_WARN = 0.10
MEMO_WARN = 0.5  # generated-to-train nearest distance below half the test-to-train one


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(feats) < 2:
        raise MedMNISTLabError(f"need at least 2 samples for a covariance, got {len(feats)}")
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(0), np.cov(feats, rowvar=False)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)).

    tr((C1 C2)^(1/2)) equals the trace of the square root of the symmetric PSD matrix
    C1^(1/2) C2 C1^(1/2) (same eigenvalues), computed with eigh: no complex round-off and no
    failure on the singular covariances that small sets (n < D) always have.
    """
    s1 = _psd_sqrt(cov1)
    m = s1 @ cov2 @ s1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean, 0.0))


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def _pairwise(a: torch.Tensor, b: torch.Tensor, chunk: int = 2048):
    for start in range(0, len(a), chunk):
        yield start, torch.cdist(a[start : start + chunk], b)


def knn_radii(feats: np.ndarray, k: int = PR_K) -> np.ndarray:
    """Distance of each sample to its k-th nearest other sample."""
    x = torch.as_tensor(feats, dtype=torch.float64)
    if len(x) <= k:
        raise MedMNISTLabError(f"need more than k={k} samples for k-NN radii, got {len(x)}")
    out = torch.empty(len(x), dtype=torch.float64)
    for start, d in _pairwise(x, x):
        out[start : start + len(d)] = d.kthvalue(k + 1, dim=1).values  # +1: the sample itself is at 0
    return out.numpy()


def manifold_coverage(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> float:
    """Share of points inside at least one ball (center, radius)."""
    p = torch.as_tensor(points, dtype=torch.float64)
    c = torch.as_tensor(centers, dtype=torch.float64)
    r = torch.as_tensor(radii, dtype=torch.float64)
    inside = 0
    for _, d in _pairwise(p, c):
        inside += int((d <= r[None, :]).any(dim=1).sum())
    return inside / len(p)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PR_K) -> tuple[float, float]:
    precision = manifold_coverage(fake, real, knn_radii(real, k))
    recall = manifold_coverage(real, fake, knn_radii(fake, k))
    return precision, recall


def _nn_dist(feats: np.ndarray) -> np.ndarray:
    return knn_radii(feats, 1)


def _mean_pairwise(feats: np.ndarray) -> float:
    x = torch.as_tensor(feats, dtype=torch.float64)
    total = sum(float(d.sum()) for _, d in _pairwise(x, x))
    return total / (len(x) * (len(x) - 1))


def diversity(real: np.ndarray, fake: np.ndarray, what: str = "generated samples") -> DiversityReport:
    real_nn = _nn_dist(real)
    threshold = DUP_FRACTION * float(np.median(real_nn))
    dup_fake = float(np.mean(_nn_dist(fake) <= threshold))
    dup_real = float(np.mean(real_nn <= threshold))
    real_spread = _mean_pairwise(real)
    spread = _mean_pairwise(fake) / real_spread if real_spread > 0 else float("nan")
    warnings = []
    if spread < SPREAD_WARN:
        warnings.append(
            f"possible mode collapse: {what} spread {spread:.2f}x as far as real ones in feature space "
            f"(mean pairwise distance; below {SPREAD_WARN} is suspicious)"
        )
    if dup_fake > DUP_WARN and dup_fake > 2 * dup_real:
        warnings.append(
            f"possible mode collapse: {dup_fake:.0%} of {what} have a near-duplicate among them (real: {dup_real:.0%})"
        )
    return DiversityReport(spread, dup_fake, dup_real, threshold, warnings)


def nearest_distances(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Distance of each point to its nearest reference sample."""
    p = torch.as_tensor(points, dtype=torch.float64)
    r = torch.as_tensor(reference, dtype=torch.float64)
    out = torch.empty(len(p), dtype=torch.float64)
    for start, d in _pairwise(p, r):
        out[start : start + len(d)] = d.min(dim=1).values
    return out.numpy()


def memorization(train: np.ndarray, fake: np.ndarray, test: np.ndarray) -> MemorizationReport:
    """How close generated samples sit to their nearest training image, relative to how close
    unseen real images (test) sit. A GAN trained long on a few hundred images can copy them: a
    ratio well below 1 says so, which FID vs train would reward instead of punish."""
    gen, ref = float(np.median(nearest_distances(fake, train))), float(np.median(nearest_distances(test, train)))
    ratio = gen / ref if ref > 0 else float("nan")
    warnings = []
    if ratio < MEMO_WARN:
        warnings.append(
            f"possible memorization: generated samples sit {ratio:.2f}x as far from their nearest training image "
            f"as real test images do (median feature distance)"
        )
    return MemorizationReport(gen, ref, ratio, warnings)


def fid_with_reference(train: np.ndarray, fake: np.ndarray, test: np.ndarray, rng: np.random.Generator) -> FIDReport:
    """FID of generated vs real train, and the same at the size of the real test set next to the
    FID of that real test set: FID grows as n shrinks (strongly once n nears the feature
    dimension), so only values at equal n compare, and real-vs-real is the floor."""
    n_test = len(test)
    comparable = len(fake) >= n_test >= 2
    return FIDReport(
        generated_vs_train=fid(train, fake),
        n_generated=len(fake),
        test_n=n_test,
        generated_vs_train_at_test_n=fid(train, fake[rng.permutation(len(fake))[:n_test]]) if comparable else None,
        test_vs_train=fid(train, test) if n_test >= 2 else None,
    )


@dataclass(frozen=True)
class ClassifierSettings:
    """The settings of the feature classifier and the CAS classifiers (the same for all)."""

    root: str | None
    epochs: int
    width: int
    seed: int
    device: str

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


def default_quality_path(checkpoint: str | os.PathLike[str]) -> Path:
    """Where `gan evaluate` writes its record unless told otherwise: quality.json beside the checkpoint."""
    return Path(checkpoint).resolve().parent / "quality.json"


def evaluate_gan(
    checkpoint: str | os.PathLike[str],
    *,
    classifier: str | os.PathLike[str] | None = None,
    n: int | None = None,
    root: str | None = None,
    cas: bool = True,
    classifier_epochs: int = DEFAULT_EPOCHS,
    classifier_width: int = DEFAULT_WIDTH,
    seed: int = 0,
    device: str = "auto",
) -> GANQuality:
    """Score a GAN checkpoint. Writes nothing but its cache (the feature and CAS classifiers,
    under quality/ beside the checkpoint); save the record with `GANQuality.write`."""
    dev = resolve_device(device)
    gan = load_gan(checkpoint, dev)
    spec = gan.spec
    run_dir = Path(checkpoint).resolve().parent
    root = root if root is not None else gan.config.root
    if classifier is not None:  # first: a wrong classifier fails before any data is read
        net: FeatureNet = load_feature_net(classifier, spec.dataset, spec.size, device=str(dev))
    train = load_split(spec.dataset, "train", spec.size, root)
    test = load_split(spec.dataset, "test", spec.size, root)
    real_counts = torch.bincount(train.labels[:, 0], minlength=spec.n_classes).tolist()
    counts = real_counts if n is None else proportional_counts(real_counts, n)
    check_sample_memory(spec, sum(counts))
    # One set of classifier settings for the feature net and the CAS classifier: they must match.
    clf = ClassifierSettings(root=root, epochs=classifier_epochs, width=classifier_width, seed=seed, device=str(dev))
    if classifier is None:
        net, _ = default_feature_net(spec.dataset, spec.size, run_dir / "quality", **clf.kwargs())
    images, labels = sample_counts(gan, counts, seed=seed)
    f_fake, f_train, f_test = net(images), net(train.images), net(test.images)
    y_fake, y_train, y_test = labels[:, 0].numpy(), train.labels[:, 0].numpy(), test.labels[:, 0].numpy()
    rng = np.random.default_rng(seed)

    fid_per_class: dict[str, FIDReport] = {}
    div_per_class: dict[str, DiversityReport] = {}
    for k, name in enumerate(spec.class_names):
        a, b, t = f_train[y_train == k], f_fake[y_fake == k], f_test[y_test == k]
        if len(a) > PR_K and len(b) > PR_K:
            fid_per_class[name] = fid_with_reference(a, b, t, rng)
            div_per_class[name] = diversity(a, b, f"generated '{name}' samples")
    div = diversity(f_train, f_fake)
    memo = memorization(f_train, f_fake, f_test)
    precision, recall = precision_recall(f_train, f_fake)
    test_precision, test_recall = precision_recall(f_train, f_test)
    return GANQuality(
        checkpoint=str(Path(checkpoint).resolve()),
        dataset=spec.dataset,
        size=spec.size,
        mode=spec.mode,
        epoch=gan.epoch,
        seed=seed,
        n_generated=len(images),
        counts=counts,
        feature_extractor=net.description,
        fid=fid_with_reference(f_train, f_fake, f_test, rng),
        fid_per_class=fid_per_class,
        precision_recall=PrecisionRecall(PR_K, precision, recall, test_precision, test_recall),
        diversity=div,
        diversity_per_class=div_per_class,
        memorization=memo,
        warnings=div.warnings + [w for d in div_per_class.values() for w in d.warnings] + memo.warnings,
        cas=classification_accuracy_score(gan, real_counts, run_dir / "quality", clf) if cas else None,
    )


def classification_accuracy_score(
    gan: LoadedGAN, real_counts: list[int], cache: Path, clf: ClassifierSettings
) -> CASResult:
    """Train on as many generated images per class as the real train split has, test on real.

    Both classifiers use the engine's `short` recipe with the same width, epochs and seed, and are
    selected on the real validation split like every engine run; only the training data differ.
    """
    spec = gan.spec
    images, labels = sample_counts(gan, real_counts, seed=clf.seed + 1)  # fresh draws, not the FID set
    # Named by the images' digest: the cached CAS run is reused only for exactly these images.
    digest = hashlib.sha1(images.numpy().tobytes()).hexdigest()[:10]
    npz = cache / f"cas_synthetic_{digest}.npz"
    write_synthetic_npz(
        npz,
        images,
        labels,
        {
            "dataset": spec.dataset,
            "size": spec.size,
            "n_classes": spec.n_classes,
            "mode": spec.mode,
            "checkpoint": str(gan.path.resolve()),
            "epoch": gan.epoch,
            "purpose": "CAS",
            "seed": clf.seed + 1,
        },
    )
    name = f"cas-{digest}-w{clf.width}-e{clf.epochs}-s{clf.seed}"
    _, syn = fit_cached(classifier_config(spec.dataset, spec.size, cache, name, train_npz=str(npz), **clf.kwargs()))
    real_name = feature_run_name(clf.width, clf.epochs, clf.seed)
    _, real = fit_cached(classifier_config(spec.dataset, spec.size, cache, real_name, **clf.kwargs()))

    def test_auc_acc(summary: RunSummary) -> SplitMetrics:
        test = summary.split("test")
        return SplitMetrics(test.auc, test.acc)  # the headline pair, without the extras

    return CASResult(
        synthetic_trained=test_auc_acc(syn),
        real_trained=test_auc_acc(real),
        n_synthetic=len(images),
        recipe=DEFAULT_RECIPE,
        model=f"{DEFAULT_MODEL} width {clf.width}, {clf.epochs} epochs",
    )
