"""fedkd_lessons: the tested implementations behind the fedkd-lessons notebooks.

Each module holds one idea of the course; the notebooks import from here.
"""

from .data import DIGIT_CLASSES, ImageSplit, load_digits_split, stratified_indices
from .models import accuracy, count_parameters, last_linear_layer, make_cnn, make_mlp, predict_logits
from .seeding import seed_everything
from .temperature import entropy, log_softmax_with_temperature, softmax_with_temperature
from .training import train

__all__ = [
    "DIGIT_CLASSES",
    "ImageSplit",
    "accuracy",
    "count_parameters",
    "entropy",
    "last_linear_layer",
    "load_digits_split",
    "log_softmax_with_temperature",
    "make_cnn",
    "make_mlp",
    "predict_logits",
    "seed_everything",
    "softmax_with_temperature",
    "stratified_indices",
    "train",
]
