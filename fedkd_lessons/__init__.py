"""fedkd_lessons: the tested implementations behind the fedkd-lessons notebooks.

The ideas sit at the top, one module each, named as their papers name them (temperature,
distillation, fedavg, adaptation, fedmd, after_fedmd); below them engine/ (how models train),
data/, flower/ (the Flower app and its launcher), figures/, experiments/, exercises/ and course/
(the course's own machinery); the README's package map draws it. The names below are
loaded on first use, so that ``import fedkd_lessons.fedmd`` in each of lesson 6's Flower
processes does not also pay for scikit-learn and the data it does not need.
"""

import importlib

_HOMES = {
    "DIGIT_CLASSES": "data.digits",
    "ImageSplit": "data.digits",
    "load_digits_split": "data.digits",
    "stratified_indices": "data.digits",
    "accuracy": "engine.models",
    "count_parameters": "engine.models",
    "last_linear_layer": "engine.models",
    "make_cnn": "engine.models",
    "make_mlp": "engine.models",
    "predict_logits": "engine.models",
    "seed_everything": "engine.seeding",
    "entropy": "temperature",
    "log_softmax_with_temperature": "temperature",
    "softmax_with_temperature": "temperature",
    "train": "engine.training",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'fedkd_lessons' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
