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

from fedkd_lessons.distillation import distillation_loss
from fedkd_lessons.figures.plotting import COLOURS, COURSE_STYLE, show_digit
from fedkd_lessons.temperature import entropy, softmax_with_temperature
from fedkd_lessons.engine.validation import Each, Instance, Optional, Real, Tensor, as_logits, checked_arguments

# The slider's log10 range: 10**-1.5 = 0.032 to 100, on a 0.01 grid that holds T = 1 exactly.
LOG10_TEMPERATURE_RANGE = (-1.5, 2.0)
DISTILLATION_TEMPERATURE_RANGE = (0.5, 50.0)

# What both widgets take: digit images (N, 1, H, W) or (N, H, W), logits (N, C) (-inf masks a
# class out: as_logits then refuses NaN and +inf), labels (N,), one name per class.
IMAGES = Tensor(ndim=(3, 4), dtype="float")
LOGITS = Tensor(ndim=2, finite=False)
LABELS = Tensor(ndim=1, dtype="integer")
CLASS_NAMES = Optional(Each(Instance(str)))


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


@checked_arguments(images=IMAGES, logits=LOGITS, labels=Optional(LABELS), class_names=CLASS_NAMES,
                   ids=Optional(LABELS),
                   initial_temperature=Real(10**LOG10_TEMPERATURE_RANGE[0], 10**LOG10_TEMPERATURE_RANGE[1]))
def temperature_widget(images, logits, labels=None, class_names=None, ids=None, initial_temperature: float = 1.0):
    """A log-scale temperature slider over one chosen digit's softened class probabilities.

    Args:
        images: ``(N, 1, H, W)`` (or ``(N, H, W)``) images in [0, 1], the digits offered.
        logits: ``(N, C)`` a model's logits for those images.
        labels: optional ``(N,)`` true labels, shown in the picker.
        class_names: names of the ``C`` classes (default ``"0"`` to ``"C-1"``).
        ids: how the picker names each digit, e.g. its index in the test set (default 0..N-1).
        initial_temperature: the slider's starting value, within 0.032-100.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``temperature_slider`` (``FloatLogSlider``,
        0.032-100), ``digit_picker`` (``Dropdown`` of indices), ``readout`` (``HTML`` with entropy
        and top probability), ``figure`` (the matplotlib figure: digit left, bars right, dashed
        uniform level, dotted one-hot outline), ``bars`` (its ``C`` probability bars) and
        ``image`` (the figure's PNG, what the learner sees).
    """
    logits = as_logits(logits)
    if len(images) != len(logits):
        raise ValueError(f"images and logits differ in length: {len(images)} vs {len(logits)}")
    num_classes = logits.shape[1]
    class_names = list(class_names or [str(c) for c in range(num_classes)])
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")

    ids = list(range(len(logits))) if ids is None else ids.tolist()
    if len(ids) != len(logits):
        raise ValueError(f"ids has {len(ids)} entries for {len(logits)} digits")

    def describe(i):
        return f"#{ids[i]}" + (f" (label {class_names[int(labels[i])]})" if labels is not None else "")

    slider = widgets.FloatLogSlider(
        value=initial_temperature, base=10, min=LOG10_TEMPERATURE_RANGE[0], max=LOG10_TEMPERATURE_RANGE[1], step=0.01,
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
        image.value = _render_png(fig)
        readout.value = _readout_html(probs, temperature, class_names)  # last: the browser test waits on it

    slider.observe(update, names="value")
    picker.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([picker, slider]), readout, image])
    box.temperature_slider, box.digit_picker, box.readout = slider, picker, readout
    box.figure, box.bars, box.image = fig, list(bars), image
    return box


def _distillation_readout_html(teacher_probs, student_probs, soft_term, hard_term, temperature, alpha, label, class_names) -> str:
    return (
        f"<b>T = {temperature:.3g}, alpha = {alpha:.2f}</b> &nbsp; "
        f"soft term alpha·T²·KL = <b>{soft_term:.4f}</b> &nbsp; "
        f"hard term (1−alpha)·CE = <b>{hard_term:.4f}</b> &nbsp; total = <b>{soft_term + hard_term:.4f}</b><br>"
        f"label {class_names[label]}: teacher gives it {float(teacher_probs[label]):.3f}, "
        f"student {float(student_probs[label]):.3f} at this T"
    )


@checked_arguments(images=IMAGES, teacher_logits=LOGITS, student_logits=LOGITS, labels=LABELS,
                   class_names=CLASS_NAMES, initial_temperature=Real(*DISTILLATION_TEMPERATURE_RANGE),
                   initial_alpha=Real(0, 1))
def distillation_widget(images, teacher_logits, student_logits, labels, class_names=None,
                        initial_temperature: float = 4.0, initial_alpha: float = 0.9):
    """Sliders for ``T`` and ``alpha`` over one digit: the teacher's and the student's softened
    distributions side by side and the two terms of the distillation loss (lesson 2).

    Args:
        images: ``(N, 1, H, W)`` images in [0, 1], the digits offered.
        teacher_logits, student_logits: ``(N, C)`` the two models' logits for those images.
        labels: ``(N,)`` true labels (the hard term needs them).
        class_names: names of the ``C`` classes (default ``"0"`` to ``"C-1"``).
        initial_temperature: in ``DISTILLATION_TEMPERATURE_RANGE``; initial_alpha: in [0, 1].

    Returns:
        An ``ipywidgets.VBox`` with attributes ``temperature_slider`` (``FloatLogSlider``),
        ``alpha_slider`` (``FloatSlider``, 0-1), ``digit_picker`` (``Dropdown``), ``readout``
        (``HTML``: the soft term ``alpha T^2 KL(p||q)``, the hard term ``(1-alpha) CE`` and their sum
        for this one digit, as :func:`fedkd_lessons.distillation.distillation_loss` computes them),
        ``figure``, ``teacher_bars``, ``student_bars`` (``C`` bars each), ``term_bars`` (soft and hard
        term) and ``image`` (the PNG shown).
    """
    teacher_logits = as_logits(teacher_logits, "teacher_logits")
    student_logits = as_logits(student_logits, "student_logits")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits and student_logits must both have shape (N, C), got "
            f"{tuple(teacher_logits.shape)} and {tuple(student_logits.shape)}"
        )
    if len(images) != len(teacher_logits) or len(labels) != len(teacher_logits):
        raise ValueError(
            f"images, logits and labels differ in length: {len(images)}, {len(teacher_logits)}, {len(labels)}"
        )
    low, high = DISTILLATION_TEMPERATURE_RANGE
    num_classes = teacher_logits.shape[1]
    class_names = list(class_names or [str(c) for c in range(num_classes)])
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")

    temperature_slider = widgets.FloatLogSlider(
        value=initial_temperature, base=10, min=math.log10(low), max=math.log10(high), step=0.01,
        description="T", readout_format=".3g", layout=widgets.Layout(width="420px"),
    )
    alpha_slider = widgets.FloatSlider(value=initial_alpha, min=0.0, max=1.0, step=0.05, description="alpha",
                                       readout_format=".2f", layout=widgets.Layout(width="320px"))
    picker = widgets.Dropdown(options=[(f"#{i} (label {class_names[int(labels[i])]})", i) for i in range(len(labels))],
                              value=0, description="digit")
    readout = widgets.HTML()
    image = widgets.Image(format="png", layout=widgets.Layout(width="680px"))

    with mpl.rc_context(COURSE_STYLE):
        fig = Figure(figsize=(9.0, 2.8))
        image_ax, bar_ax, loss_ax = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 3, 1.1]})
        positions = torch.arange(num_classes, dtype=torch.float64)
        teacher_bars = bar_ax.bar(positions - 0.2, [0.0] * num_classes, 0.4, color=COLOURS["teacher"], label="teacher p")
        student_bars = bar_ax.bar(positions + 0.2, [0.0] * num_classes, 0.4, color=COLOURS["soft targets"], label="student q")
        bar_ax.axhline(1 / num_classes, color=COLOURS["uniform"], linestyle="--", linewidth=1)
        bar_ax.set_xticks(range(num_classes), class_names)
        bar_ax.set_ylim(0, 1.05)
        bar_ax.set_ylabel("probability at T")
        bar_ax.legend(loc="upper right", fontsize=8, frameon=False)
        term_bars = loss_ax.bar([0, 1], [0.0, 0.0], color=[COLOURS["soft targets"], COLOURS["hard labels"]])
        loss_ax.set_xticks([0, 1], ["soft\nαT²KL", "hard\n(1−α)CE"])
        loss_ax.set_ylabel("loss term")
        # Placeholder titles, so that tight_layout leaves room for the ones update() writes.
        for ax in (image_ax, bar_ax, loss_ax):
            ax.set_title("#0 (label 0)")
        fig.tight_layout()

    def update(_change=None):
        index, temperature, alpha = picker.value, temperature_slider.value, alpha_slider.value
        teacher_probs = softmax_with_temperature(teacher_logits[index], temperature)
        student_probs = softmax_with_temperature(student_logits[index], temperature)
        for bars, probs in ((teacher_bars, teacher_probs), (student_bars, student_probs)):
            for bar, value in zip(bars, probs):
                bar.set_height(float(value))
        label = int(labels[index])
        one = slice(index, index + 1)
        soft = float(distillation_loss(student_logits[one], teacher_logits[one], None, temperature, 1.0)) * alpha
        hard = float(distillation_loss(student_logits[one], teacher_logits[one], labels[one], temperature, 0.0)) * (1 - alpha)
        for bar, value in zip(term_bars, (soft, hard)):
            bar.set_height(value)
        loss_ax.set_ylim(0, max(1.0, 1.1 * max(soft, hard)))
        loss_ax.set_title(f"total {soft + hard:.3f}")
        image_ax.clear()
        show_digit(image_ax, images[index], f"#{index} (label {class_names[label]})")
        bar_ax.set_title(f"softmax(logits / {temperature:.3g}): teacher vs student")
        readout.value = _distillation_readout_html(teacher_probs, student_probs, soft, hard, temperature, alpha,
                                                   label, class_names)
        image.value = _render_png(fig)

    for control in (temperature_slider, alpha_slider, picker):
        control.observe(update, names="value")
    update()
    box = widgets.VBox([picker, widgets.HBox([temperature_slider, alpha_slider]), readout, image])
    box.temperature_slider, box.alpha_slider, box.digit_picker, box.readout = temperature_slider, alpha_slider, picker, readout
    box.figure, box.teacher_bars, box.student_bars, box.image = fig, list(teacher_bars), list(student_bars), image
    box.term_bars = list(term_bars)
    return box

