"""Interactive widgets that let a learner *see* temperature (lesson 1 on).

Each factory returns a ready ipywidgets widget; its callbacks close over the arguments only,
never over notebook globals. The figure is rendered to PNG inside an ``ipywidgets.Image`` so
it looks the same in JupyterLab, in nbconvert and in the tests, which read the exposed
``figure`` and text widgets.
"""

import io
import math

import ipywidgets as widgets
import matplotlib as mpl
import torch
from matplotlib.figure import Figure

from .plotting import COLOURS, COURSE_STYLE, show_digit
from .temperature import entropy, softmax_with_temperature
from .validation import as_logits

TEMPERATURE_RANGE = (0.05, 100.0)


def _render_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _readout_html(probs: torch.Tensor, temperature: float, class_names) -> str:
    top = int(probs.argmax())
    return (
        f"<b>T = {temperature:.3g}</b> &nbsp; entropy H = <b>{float(entropy(probs)):.3f}</b> nats "
        f"(0 = one-hot, {math.log(len(probs)):.3f} = uniform) &nbsp; "
        f"top probability = <b>{float(probs[top]):.3f}</b> (class {class_names[top]})"
    )


def temperature_widget(images, logits, labels=None, class_names=None, initial_temperature: float = 1.0):
    """A log-scale temperature slider over one chosen digit's softened class probabilities.

    Args:
        images: ``(N, 1, H, W)`` (or ``(N, H, W)``) images in [0, 1], the digits offered.
        logits: ``(N, C)`` a model's logits for those images.
        labels: optional ``(N,)`` true labels, shown in the picker.
        class_names: names of the ``C`` classes (default ``"0"``..``"C-1"``).
        initial_temperature: the slider's starting value, within ``TEMPERATURE_RANGE``.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``temperature_slider`` (``FloatLogSlider``,
        0.05-100), ``digit_picker`` (``Dropdown`` of indices), ``readout`` (``HTML`` with entropy
        and top probability), ``figure`` (the matplotlib figure: digit left, bars right, dashed
        uniform level, dotted one-hot outline), ``bars`` (its ``C`` probability bars) and
        ``image`` (the figure's PNG, what the learner sees).
    """
    logits = as_logits(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    if len(images) != len(logits):
        raise ValueError(f"images and logits differ in length: {len(images)} vs {len(logits)}")
    low, high = TEMPERATURE_RANGE
    if not low <= initial_temperature <= high:
        raise ValueError(f"initial_temperature must be in [{low}, {high}], got {initial_temperature!r}")
    num_classes = logits.shape[1]
    class_names = list(class_names or [str(c) for c in range(num_classes)])
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")

    def describe(i):
        return f"#{i}" + (f" (label {class_names[int(labels[i])]})" if labels is not None else "")

    slider = widgets.FloatLogSlider(
        value=initial_temperature, base=10, min=math.log10(low), max=math.log10(high), step=0.01,
        description="T", readout_format=".3g", continuous_update=True,
        layout=widgets.Layout(width="480px"),
    )
    picker = widgets.Dropdown(options=[(describe(i), i) for i in range(len(logits))], value=0, description="digit")
    readout = widgets.HTML()
    image = widgets.Image(format="png", layout=widgets.Layout(width="640px"))

    with mpl.rc_context(COURSE_STYLE):
        fig = Figure(figsize=(7.2, 2.8))
        image_ax, bar_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 3]})
        bars = bar_ax.bar(range(num_classes), [0.0] * num_classes, color="#56B4E9")
        one_hot = bar_ax.bar([0], [1.0], fill=False, edgecolor="#444444", linestyle=":", label="one-hot (T → 0)")[0]
        bar_ax.axhline(1 / num_classes, color=COLOURS["uniform"], linestyle="--", linewidth=1, label="uniform (T → ∞)")
        bar_ax.set_xticks(range(num_classes), class_names)
        bar_ax.set_ylim(0, 1.05)
        bar_ax.set_ylabel("probability")
        bar_ax.set_title("softmax(z / T)")
        bar_ax.legend(loc="upper right", fontsize=8, frameon=False)
        fig.tight_layout()

    def update(_change=None):
        index, temperature = picker.value, slider.value
        probs = softmax_with_temperature(logits[index], temperature)
        top = int(probs.argmax())
        for c, bar in enumerate(bars):
            bar.set_height(float(probs[c]))
            bar.set_color("#0072B2" if c == top else "#56B4E9")
        one_hot.set_x(top - one_hot.get_width() / 2)
        image_ax.clear()
        show_digit(image_ax, images[index], describe(index))
        bar_ax.set_title(f"softmax(z / {temperature:.3g})")
        readout.value = _readout_html(probs, temperature, class_names)
        image.value = _render_png(fig)

    slider.observe(update, names="value")
    picker.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([picker, slider]), readout, image])
    box.temperature_slider, box.digit_picker, box.readout = slider, picker, readout
    box.figure, box.bars, box.image = fig, list(bars), image
    return box
