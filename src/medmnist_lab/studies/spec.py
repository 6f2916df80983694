"""Study specs: a base config plus axes, expanded to cells (one resolved RunConfig each).

    name: resnet18-vs-50
    description: the seed's table
    base: {recipe: medmnist-v2, size: 28}        # RunConfig fields; `recipe` picks the preset
    axes:                                        # the cross product of these lists...
      dataset: [breastmnist, retinamnist]
      model: [resnet18, resnet50]
      seed: [0, 1, 2]
    include: [{dataset: breastmnist, size: 64}]  # ...plus these cells (merged over base)
    exclude: [{model: resnet50, dataset: retinamnist}]   # minus cells matching every given field
    trials: 30                                   # only with range axes: a hyper-parameter search
    axes: {lr: {log_uniform: [1.0e-4, 1.0e-1]}}  # a range instead of a list
    trust: {calibrate: temperature, conformal: 0.1, corruptions: all}   # after training (studies.trust)

A cell is identified by a hash of its resolved config, without the fields that say where things
are (name, out_dir, root): the same experiment hashes alike wherever it runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medmnist_lab.engine.config import LATER_FIELDS, LOCATION_FIELDS, RunConfig, cell_hash
from medmnist_lab.errors import MedMNISTLabError
from medmnist_lab.studies.trust import parse_trust

__all__ = ["LATER_FIELDS", "LOCATION_FIELDS", "cell_hash"]  # re-exported: they live with the config

SPEC_KEYS = ("name", "description", "base", "axes", "include", "exclude", "trials", "search", "trust")
RANGE_KINDS = ("uniform", "log_uniform", "int", "log_int")


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


@dataclass(frozen=True)
class Range:
    """A search range of one field: uniform/log_uniform floats, int/log_int integers."""

    field: str
    kind: str
    low: float
    high: float

    def distribution(self) -> Any:
        import optuna

        log = self.kind.startswith("log")
        if self.kind in ("int", "log_int"):
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=log)


@dataclass(frozen=True)
class Cell:
    config: Any  # RunConfig (resolved and validated)
    hash: str
    search: str | None = None  # the search group this trial belongs to
    trial: int | None = None

    @property
    def label(self) -> str:
        c = self.config
        aug = "" if c.augment == "none" else f" {c.augment}"
        conv = f" {c.conv}" if c.conv else ""
        return f"{c.dataset}_{c.size} {c.model}{conv} {c.recipe}{aug} seed {c.seed}"


@dataclass
class StudySpec:
    name: str
    description: str = ""
    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    ranges: list[Range] = field(default_factory=list)
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    trials: int | None = None
    source: str = ""
    trust: dict[str, Any] | None = None  # the trust steps after training (studies.trust), or None

    @property
    def is_search(self) -> bool:
        return bool(self.ranges)

    def to_dict(self) -> dict[str, Any]:
        axes: dict[str, Any] = dict(self.axes)
        for r in self.ranges:
            axes[r.field] = {r.kind: [r.low, r.high]}
        out = {"name": self.name, "description": self.description, "base": self.base, "axes": axes}
        if self.include:
            out["include"] = self.include
        if self.exclude:
            out["exclude"] = self.exclude
        if self.trials is not None:
            out["trials"] = self.trials
        if self.trust is not None:
            out["trust"] = self.trust
        return out


def _check_fields(keys: Iterable[str], where: str) -> None:
    valid = config_fields()
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        from medmnist_lab.errors import unknown_name

        raise MedMNISTLabError(f"{where}: {unknown_name('config field', unknown[0], valid)}")


def parse_spec(data: Any, source: str = "<spec>") -> StudySpec:
    """Check the structure of a loaded YAML spec; field values are checked when cells are built."""
    if not isinstance(data, dict):
        raise MedMNISTLabError(f"{source}: a study spec is a YAML mapping with keys {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise MedMNISTLabError(f"{source}: unknown key {unknown[0]!r}; a spec has: {', '.join(SPEC_KEYS)}")
    name = str(data.get("name") or Path(source).stem)
    base = data.get("base") or {}
    axes_in = data.get("axes") or {}
    for key, value in (("base", base), ("axes", axes_in)):
        if not isinstance(value, dict):
            raise MedMNISTLabError(f"{source}: '{key}' must be a mapping of config fields, got {value!r}")
    _check_fields(base, f"{source} base")
    _check_fields(axes_in, f"{source} axes")
    axes: dict[str, list[Any]] = {}
    ranges: list[Range] = []
    for key, value in axes_in.items():
        if isinstance(value, dict):
            ranges.append(_parse_range(key, value, source))
        elif isinstance(value, list):
            if not value:
                raise MedMNISTLabError(f"{source}: axis '{key}' is an empty list: the grid would have no cells")
            axes[key] = value
        else:
            axes[key] = [value]
    include, exclude = (_cell_list(data.get(k), k, source) for k in ("include", "exclude"))
    trials = data.get("trials")
    if ranges and (not isinstance(trials, int) or isinstance(trials, bool) or trials <= 0):
        raise MedMNISTLabError(
            f"{source}: a spec with range axes needs 'trials: N' (a positive integer), got {trials!r}"
        )
    if trials is not None and not ranges:
        raise MedMNISTLabError(
            f"{source}: 'trials' needs at least one range axis, e.g. lr: {{log_uniform: [1e-4, 1e-1]}}"
        )
    trust = parse_trust(data.get("trust"), source)
    return StudySpec(
        name, str(data.get("description") or ""), base, axes, ranges, include, exclude, trials, source, trust
    )


def _parse_range(key: str, value: dict[str, Any], source: str) -> Range:
    if len(value) != 1 or next(iter(value)) not in RANGE_KINDS:
        raise MedMNISTLabError(
            f"{source}: axis '{key}': a range is one of {', '.join(f'{{{k}: [LOW, HIGH]}}' for k in RANGE_KINDS)}; "
            f"got {value!r}"
        )
    from medmnist_lab.engine.config import as_number

    kind, bounds = next(iter(value.items()))
    bounds = [as_number(b) for b in bounds] if isinstance(bounds, list) else bounds
    ok = isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds)
    if not ok or not all(math.isfinite(b) for b in bounds) or not bounds[0] < bounds[1]:
        raise MedMNISTLabError(
            f"{source}: axis '{key}': {kind} needs [LOW, HIGH] with finite LOW < HIGH, got {bounds!r}"
        )
    if kind.startswith("log") and bounds[0] <= 0:
        raise MedMNISTLabError(f"{source}: axis '{key}': {kind} needs LOW > 0, got {bounds[0]}")
    return Range(key, kind, float(bounds[0]), float(bounds[1]))


def _cell_list(value: Any, key: str, source: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise MedMNISTLabError(f"{source}: '{key}' must be a list of mappings (config field: value), got {value!r}")
    for i, cell in enumerate(value):
        _check_fields(cell, f"{source} {key}[{i}]")
    return value


def load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MedMNISTLabError(f"{path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedMNISTLabError(f"cannot read study spec {path}: {exc}") from None


# --- built-in studies: YAML files shipped in the package ---------------------------------------


def builtin_names() -> list[str]:
    folder = resources.files("medmnist_lab.studies") / "builtin"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_spec(name_or_path: str) -> StudySpec:
    """A YAML file path, or the name of a built-in study."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise MedMNISTLabError(f"study spec {path} does not exist (built-in studies: {', '.join(builtin_names())})")
        return parse_spec(load_yaml(path), str(path))
    names = builtin_names()
    if name_or_path not in names:
        from medmnist_lab.errors import unknown_name

        raise unknown_name("study", name_or_path, names)
    text = (resources.files("medmnist_lab.studies") / "builtin" / f"{name_or_path}.yaml").read_text()
    return parse_spec(yaml.safe_load(text), name_or_path)


# --- overrides from the command line -----------------------------------------------------------


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """`--set FIELD=VALUE`: VALUE read as YAML (1 -> int, 1e-3 -> float, null -> None, [a, b] -> list)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise MedMNISTLabError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set epochs=1")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise MedMNISTLabError(f"--set {item!r}: {text!r} is not a valid value") from None
    _check_fields(out, "--set")
    from medmnist_lab.engine.config import coerce_fields

    return coerce_fields(out, "--set")


def apply_overrides(
    spec: StudySpec,
    sets: dict[str, Any] | None = None,
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    trials: int | None = None,
    sizes: Sequence[int] | None = None,
) -> StudySpec:
    """`--set` fixes a field for every cell (it replaces that axis); `--datasets`/`--seeds`/`--sizes`
    replace the dataset/seed/size axes (e.g. the resolution study on a 3D dataset, which has 28 and 64
    only)."""
    base, axes = dict(spec.base), dict(spec.axes)
    ranges = list(spec.ranges)
    for key, value in (sets or {}).items():
        base[key] = value
        axes.pop(key, None)
        ranges = [r for r in ranges if r.field != key]
    for name, values in (("dataset", datasets), ("seed", seeds), ("size", sizes)):
        if values is not None and len(values):
            axes[name] = list(values)
            base.pop(name, None)
    if trials is not None and not ranges:  # said, not ignored: a grid has no trials to count
        raise MedMNISTLabError(f"--trials {trials} applies to searches (specs with range axes); {spec.name} is a grid")
    return dataclasses.replace(
        spec, base=base, axes=axes, ranges=ranges, trials=(trials or spec.trials) if ranges else None
    )


# --- expansion -----------------------------------------------------------------------------------


def _matches(values: dict[str, Any], pattern: dict[str, Any]) -> bool:
    return all(str(values.get(k)).lower() == str(v).lower() for k, v in pattern.items())


def grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    """The cross product of the list axes, plus include, minus exclude (field -> value dicts)."""
    keys = list(spec.axes)
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(spec.axes[k] for k in keys))]
    points += [dict(c) for c in spec.include]
    return [p for p in points if not any(_matches({**spec.base, **p}, ex) for ex in spec.exclude)]


def build_config(spec: StudySpec, point: dict[str, Any], out_dir: Path) -> Any:
    """Resolve one cell: defaults <- the recipe <- base <- the point; every field validated."""
    from medmnist_lab.engine.config import resolve_config

    values = {**spec.base, **point}
    if "dataset" not in values:
        raise MedMNISTLabError(f"{spec.source}: no dataset: give it in base, as an axis, or with --datasets")
    values = {k: v for k, v in values.items() if k not in LOCATION_FIELDS or k == "root"}
    dataset, recipe = values.pop("dataset"), values.pop("recipe", "medmnist-v2")
    try:
        config = resolve_config(str(dataset), str(recipe), **values)
    except MedMNISTLabError as exc:
        # the usual cause: a size axis meant for 2D files (128, 224) crossed with a 3D dataset (28, 64 only)
        hint = "; --sizes replaces the size axis" if "size" in spec.axes and "size" in str(exc) else ""
        raise MedMNISTLabError(f"{spec.source}: cell {point}: {exc}{hint}") from None
    h = cell_hash(config.to_dict())
    return dataclasses.replace(config, out_dir=str(out_dir / "runs"), name=h[:12])


def expand(spec: StudySpec, out_dir: Path) -> list[Cell]:
    """Every grid cell, resolved; duplicates (two points resolving to one config) appear once."""
    points = grid_points(spec)
    if not points:
        raise MedMNISTLabError(f"{spec.source}: the grid is empty (every cell excluded, or no axes and no include)")
    cells: dict[str, Cell] = {}
    for point in points:
        config = build_config(spec, point, out_dir)
        h = cell_hash(config.to_dict())
        cells.setdefault(h, Cell(config, h))
    return list(cells.values())


def missing_data_files(cells: Sequence[Cell]) -> list[str]:
    """Data files the cells need that are not on disk (checked before any work starts)."""
    from medmnist_lab.data.paths import data_path
    from medmnist_lab.data.registry import get_dataset
    from medmnist_lab.studies import synthetic

    missing: dict[str, None] = {}
    for cell in cells:
        c = cell.config
        path = data_path(get_dataset(c.dataset, warn_alias=False), c.size, c.root)
        if not path.is_file():
            missing[str(path)] = None
        if synthetic.is_named(c.synthetic):
            synthetic.parse(c.synthetic)  # a bad setting fails here, before any work
        for extra in (c.train_npz, None if synthetic.is_named(c.synthetic) else c.synthetic):
            if extra and not Path(extra).is_file():
                missing[str(extra)] = None
    return list(missing)
