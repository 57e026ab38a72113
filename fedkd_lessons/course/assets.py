"""Draw the pictures in ``assets/`` (the README's lesson map) from the package's own code.

Run from the repository root: ``python -m fedkd_lessons.course.assets`` (or give another folder).
Each picture is made from a fixed seed, so re-running gives the same files.
"""

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from fedkd_lessons.data.digits import load_digits_split  # noqa: E402
from fedkd_lessons.figures.lesson4_adaptation import readme_figure as lesson4_adaptation  # noqa: E402
from fedkd_lessons.figures.lesson7_after_fedmd import methods_diagram  # noqa: E402
from fedkd_lessons.figures.lesson2_distillation import readme_figure as lesson2_soft_targets  # noqa: E402
from fedkd_lessons.figures.lesson3_federated import plot_partitions_by_concentration  # noqa: E402
from fedkd_lessons.figures.lesson5_fedmd import fedmd_diagram  # noqa: E402
from fedkd_lessons.figures.lesson6_flower import flower_architecture_figure  # noqa: E402
from fedkd_lessons.engine.models import make_mlp, predict_logits  # noqa: E402
from fedkd_lessons.figures.plotting import save_figure, use_course_style  # noqa: E402
from fedkd_lessons.engine.seeding import seed_everything  # noqa: E402
from fedkd_lessons.figures.lesson1_temperature import temperature_figure  # noqa: E402
from fedkd_lessons.engine.training import train  # noqa: E402
from fedkd_lessons.engine.validation import Instance, checked_arguments  # noqa: E402


def lesson1_temperature():
    """Lesson 1: a trained MLP's logits for the most ambiguous test digit, softened at five T."""
    seed_everything(0)
    split = load_digits_split()
    model = make_mlp((64,))
    train(model, split.train_images, split.train_labels, epochs=20, lr=1e-2, batch_size=64, progress=False)
    logits = predict_logits(model, split.test_images)
    top_two = logits.topk(2, dim=1).values
    ambiguous = int((top_two[:, 0] - top_two[:, 1]).argmin())
    return temperature_figure(split.test_images[ambiguous], logits[ambiguous], label=int(split.test_labels[ambiguous]))


FIGURES = {
    "01_temperature.png": lesson1_temperature,
    "02_soft_targets.png": lesson2_soft_targets,
    "03_partitions.png": plot_partitions_by_concentration,
    "04_adaptation.png": lesson4_adaptation,
    "05_fedmd.png": fedmd_diagram,
    "06_flower.png": flower_architecture_figure,
    "07_after_fedmd.png": methods_diagram,
}


@checked_arguments(folder=Instance((str, os.PathLike)))
def write_assets(folder) -> list[Path]:
    """Draw every figure in ``FIGURES`` into ``folder``; return the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    use_course_style()
    written = []
    for name, draw in FIGURES.items():
        save_figure(draw(), folder / name)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in write_assets(sys.argv[1] if len(sys.argv) > 1 else "assets"):
        print("wrote", path)
