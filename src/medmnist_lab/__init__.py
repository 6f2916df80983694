"""medmnist-lab: train, augment, synthesize and benchmark classifiers on MedMNIST."""

from medmnist_lab.errors import MedMNISTLabError

__version__ = "0.1.0"
__all__ = ["MedMNISTLabError", "__version__"]
