"""Lesson 6's figures: FedMD's processes on Flower, the run against lesson 5's, the bytes on the wire.

Each function returns a matplotlib Figure and reads nothing but its arguments.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from fedkd_lessons.engine.validation import Each, Instance, Integer, Optional, checked_arguments
from fedkd_lessons.fedmd import FedMDHistory
from fedkd_lessons.figures.plotting import COLOURS, TITLE
from fedkd_lessons.flower.launcher import FlowerFedMDRun

PARTY_COLOURS = (COLOURS["fedmd"], COLOURS["ewc"], COLOURS["finetune"], COLOURS["local"], COLOURS["upper bound"],
                 COLOURS["control"], COLOURS["global"], COLOURS["teacher"])


@checked_arguments(party_names=Each(TITLE), subset_size=Integer(1), num_classes=Integer(1),
                   stopped=Optional(Integer(0)))
def flower_architecture_figure(party_names=("mlp 32", "cnn 8-16", "mlp 64-32-32"), subset_size: int = 500,
                               num_classes: int = 16, stopped: int | None = None):
    """The processes of a FedMD run on Flower and what travels between them.

    Server side: ``flwr run`` submits the app (a FAB) to the SuperLink, which starts the ServerApp.
    Party side: one SuperNode per party; for every message it starts a ClientApp that reads and
    writes the party's own disk. Arrows carry the message contents with their sizes for
    ``subset_size`` public samples and ``num_classes`` classes. ``stopped`` crosses one party out.
    """
    if stopped is not None and stopped >= len(party_names):
        raise ValueError(f"stopped must be a party below {len(party_names)} (party_names' length), got {stopped}")
    names = list(party_names)
    fig, ax = plt.subplots(figsize=(10.5, 5.6))
    ax.set_xlim(0, 10.5)
    ax.set_ylim(-0.4, 6.1)
    ax.axis("off")

    def box(x, y, w, h, text, colour, size=8.5, style="round,pad=0.05", **kwargs):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, facecolor=colour, edgecolor="#333333", **kwargs))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(start, end, colour, text="", offset=(0.0, 0.0), size=7.5, style="-|>"):
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=13, color=colour, linewidth=1.5))
        if text:
            ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, fontsize=size,
                    color=colour, ha="center", va="center", bbox=dict(facecolor="white", edgecolor="none", pad=0.4))

    # server side
    box(0.15, 4.9, 2.0, 0.8, "flwr run\n(builds the FAB,\nsubmits the run)", "#FFF3D6")
    box(3.3, 4.75, 3.9, 1.1, "flower-superlink  127.0.0.1:port\nServerApp: draws the subset, checks\n"
        "the replies, averages $\\tilde f = \\frac{1}{m}\\sum_k f_k$", "#F0F0F0")
    box(8.2, 4.9, 2.15, 0.8, "result.json\n(accuracy, bytes, who\nreplied, what dropped)", "#FFF3D6")
    arrow((2.2, 5.3), (3.25, 5.3), "#555555")
    arrow((7.25, 5.3), (8.15, 5.3), "#555555")

    width = 10.2 / len(names)
    floats = subset_size * num_classes
    for k, name in enumerate(names):
        x = 0.15 + k * width
        w = width - 0.35
        dead = k == stopped
        box(x, 2.05, w, 0.75, f"flower-supernode  (party {k})\nstarts a ClientApp per message", "#DCEBF7",
            alpha=0.35 if dead else 1.0)
        box(x, 0.2, w, 1.25, f"party {k}'s own disk\nmodel: {name}\nprivate letters a-f\n"
            "public digits, diary", "#FDE3CF", alpha=0.35 if dead else 1.0)
        centre = x + w / 2
        arrow((centre, 1.5), (centre, 2.0), COLOURS["local"], style="<|-|>")
        top = 4.7
        arrow((4.0 + 0.5 * k, top), (centre - 0.3, 2.85), COLOURS["global"],
              f"indices ({subset_size} ints)\n+ consensus ({floats:,} floats)" if k == 0 else "", offset=(-0.45, 0.2))
        arrow((centre + 0.3, 2.85), (4.6 + 0.5 * k, top), COLOURS["fedmd"],
              f"logits ({floats:,} floats)\n+ accuracy" if k == len(names) - 1 else "", offset=(0.55, -0.2))
        if dead:
            ax.plot([x, x + w], [0.2, 2.8], color=COLOURS["control"], linewidth=3)
            ax.plot([x, x + w], [2.8, 0.2], color=COLOURS["control"], linewidth=3)
            ax.text(centre, 1.7, "stopped mid-run", ha="center", fontsize=9, color=COLOURS["control"],
                    fontweight="bold", bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    ax.text(5.25, -0.22, "HTTPS (TLS) on loopback, registered SuperNodes only: no weights, no images, only indices and class scores",
            ha="center", fontsize=8, style="italic", color="#444444",
            bbox=dict(facecolor="white", edgecolor="#BBBBBB", boxstyle="round,pad=0.3"))
    ax.set_title("FedMD on Flower: one process per party, messages through the SuperLink", fontsize=12)
    fig.tight_layout()
    return fig


@checked_arguments(flower_run=Instance(FlowerFedMDRun), in_process=Instance(FedMDHistory))
def flower_vs_in_process_figure(flower_run, in_process):
    """Each party's test accuracy per round: lesson 5's in-process ``run_fedmd`` (lines) and the
    Flower run (markers). A stopped party's markers end where it stopped; a dotted line marks it."""
    # the Flower run may hold more parties (a cheater joins as the last one): it is drawn for in_process's
    rounds, parties = in_process.accuracy.shape
    if len(flower_run.accuracy) != rounds or flower_run.accuracy.shape[1] < parties:
        raise ValueError(f"flower_run must have in_process's {rounds} rows (rounds) and at least its {parties} "
                         f"parties, got accuracy of shape {flower_run.accuracy.shape}")
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    rounds = np.arange(len(in_process.accuracy))
    for k, name in enumerate(in_process.party_names):
        colour = PARTY_COLOURS[k % len(PARTY_COLOURS)]
        ax.plot(rounds, in_process.accuracy[:, k], color=colour, linewidth=2, alpha=0.6,
                label=f"party {k} ({name}), in one process")
        ax.plot(rounds, flower_run.accuracy[:, k], linestyle="none", marker="o", markersize=8, markerfacecolor="none",
                markeredgewidth=2, color=colour, label=f"party {k}, on Flower")
    if flower_run.stopped_party is not None:
        last = int(np.flatnonzero(~np.isnan(flower_run.accuracy[:, flower_run.stopped_party]))[-1])
        ax.axvline(last + 0.5, color=COLOURS["control"], linestyle=":", linewidth=2)
        ax.text(last + 0.55, 0.98, f"party {flower_run.stopped_party} stopped", fontsize=8, color=COLOURS["control"],
                transform=ax.get_xaxis_transform(), va="top")
    ax.set_xticks(rounds)
    ax.set_xlabel("FedMD round")
    ax.set_ylabel("test accuracy on letters (fraction)")
    ax.legend(fontsize=7, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    ax.set_title("Separate processes give the in-process numbers, until a party stops")
    fig.tight_layout()
    return fig


@checked_arguments(flower_run=Instance(FlowerFedMDRun), fedavg_bytes_per_round=Integer(1))
def wire_bytes_figure(flower_run, fedavg_bytes_per_round: int):
    """Payload bytes each message moved (server to parties, parties to server), measured from the
    messages, beside what one FedAvg round would move for the same models (log scale)."""
    down, up = map(np.array, zip(*flower_run.bytes_per_message()))
    labels = [f"message {j}" for j in range(len(down))] + ["FedAvg\n(one round)"]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    positions = np.arange(len(down))
    # dots, not bars: a bar's length means nothing on a log axis
    ax.plot(positions - 0.2, down, "o", markersize=8, color=COLOURS["global"], label="server to parties")
    ax.plot(positions + 0.2, up, "s", markersize=8, color=COLOURS["fedmd"], label="parties to server")
    ax.plot([len(down)], [fedavg_bytes_per_round], "D", markersize=8, color=COLOURS["control"],
            label="FedAvg: weights down and up")
    for position, value in [*zip(positions - 0.2, down), *zip(positions + 0.2, up), (len(down), fedavg_bytes_per_round)]:
        ax.text(position, value * 1.4, f"{value / 1e3:.1f} kB" if value < 1e4 else f"{value / 1e3:.0f} kB",
                ha="center", fontsize=7)
    ax.set_xticks([*positions, len(down)], labels)
    ax.set_yscale("log")
    ax.set_xlim(-0.7, len(down) + 0.7)
    ax.set_ylim(min(down.min(), up.min()) / 3, max(down.max(), up.max(), fedavg_bytes_per_round) * 30)
    ax.set_ylabel("payload bytes (log scale)")
    ax.legend(fontsize=8, loc="upper center", ncols=3, frameon=False)
    ax.set_title("Only indices and class scores travel")
    fig.tight_layout()
    return fig
