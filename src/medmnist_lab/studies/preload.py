"""Imported once by the local backend's forkserver, so every cell's process starts with it loaded.

Beyond the engine itself: the modules torch and the scorer import lazily on first use. A profile
of a cell in a fresh process showed 4.2 of its 5.7 s in `torch._dynamo`, which torch.optim imports
the first time an optimizer is built; preloaded, a fresh process fits as fast as a warm one.
"""

import pandas  # noqa: F401  (the official prediction CSVs)
import sklearn.metrics  # noqa: F401  (AUC, extras)
import torch._dynamo  # (imported by the first optimizer)
import torch.optim  # noqa: F401

import medmnist_lab.engine  # (the package, its models and metrics)
import medmnist_lab.studies.worker  # noqa: F401
