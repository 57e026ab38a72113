"""fedkd_lessons: the tested implementations behind the fedkd-lessons notebooks.

Each module holds one idea of the course; the notebooks import from here. The names below are
loaded on first use, so that ``import fedkd_lessons.fedmd`` in each of lesson 6's Flower
processes does not also pay for scikit-learn and the data it does not need.
"""

import importlib

_HOMES = {
    "DIGIT_CLASSES": "data",
    "ImageSplit": "data",
    "load_digits_split": "data",
    "stratified_indices": "data",
    "accuracy": "models",
    "count_parameters": "models",
    "last_linear_layer": "models",
    "make_cnn": "models",
    "make_mlp": "models",
    "predict_logits": "models",
    "seed_everything": "seeding",
    "entropy": "temperature",
    "log_softmax_with_temperature": "temperature",
    "softmax_with_temperature": "temperature",
    "train": "training",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'fedkd_lessons' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
