"""Every figure's cross-argument checks, one rejection each: arguments that do not fit together are
named before matplotlib draws anything (the per-argument checks are declared with
@checked_arguments and exercised for every figure by tests/engine/test_validation.py)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fedkd_lessons.engine.validation import Real  # noqa: E402
from fedkd_lessons.experiments.intervals import paired_interval  # noqa: E402
from fedkd_lessons.fedavg import FedAvgHistory  # noqa: E402
from fedkd_lessons.fedmd import FedMDHistory, make_parties  # noqa: E402
from fedkd_lessons.figures import (lesson1_temperature as l1, lesson2_distillation as l2,  # noqa: E402
                                   lesson3_federated as l3, lesson4_adaptation as l4, lesson5_fedmd as l5,
                                   lesson6_flower as l6)
from fedkd_lessons.figures.plotting import (MappingOf, Numbers, draw_probability_bars,  # noqa: E402
                                            paired_differences_figure)
from fedkd_lessons.flower.launcher import FlowerFedMDRun  # noqa: E402
from fedkd_lessons.engine.models import make_mlp  # noqa: E402

IMAGE = torch.rand(1, 8, 8)
LOGITS = torch.tensor([2.0, 0.5, -1.0])
ACC = np.array([0.5, 0.75, 1.0])


def _axes():
    return matplotlib.pyplot.subplots()[1]


def _history(rows):
    rows = np.array(rows, dtype=float)
    return FedMDHistory(rows, tuple(f"p{k}" for k in range(rows.shape[1])), [], {})


def _parties():
    private = [(torch.rand(6, 1, 8, 8), torch.arange(10, 16))]
    return make_parties([("mlp", make_mlp((4,), num_classes=16))], private)


def _flower(accuracy):
    return FlowerFedMDRun(np.asarray(accuracy, dtype=float), ("a", "b"), [], [], None, 1.0, [], [], {})


REJECTIONS = {
    # plotting
    "probability bars: a class name per bar":
        (lambda: draw_probability_bars(_axes(), [0.5, 0.5], ["0"]), r"^class_names must hold 2 entries, one per class"),
    "probability bars: highlight among the bars":
        (lambda: draw_probability_bars(_axes(), [0.5, 0.5], ["0", "1"], highlight=2),
         r"^highlight must be a class below 2"),
    # lesson 1
    "temperature figure: a class name per logit":
        (lambda: l1.temperature_figure(IMAGE, LOGITS, class_names=["a", "b"]), r"^class_names must hold 3 entries"),
    "entropy curves: at most three curves":
        (lambda: l1.entropy_curves_figure({str(k): LOGITS for k in range(4)}), r"^named_logits must hold at most 3"),
    "entropy curves: the same classes":
        (lambda: l1.entropy_curves_figure({"a": LOGITS, "b": LOGITS[:2]}),
         r"^named_logits must hold logits over the same"),
    "wrong-class curves: label among the classes":
        (lambda: l1.wrong_class_curves_figure(IMAGE, LOGITS, label=3, highlight=1),
         r"^label must be a class below 3"),
    "wrong-class curves: highlight among the classes":
        (lambda: l1.wrong_class_curves_figure(IMAGE, LOGITS, label=0, highlight=5),
         r"^highlight must be a class below 3"),
    "wrong-class curves: highlight a wrong class":
        (lambda: l1.wrong_class_curves_figure(IMAGE, LOGITS, label=1, highlight=1),
         r"^highlight must be a wrong class"),
    "dark knowledge: a class name per class":
        (lambda: l1.dark_knowledge_figure(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), 2.0, class_names=["a"]),
         r"^class_names must hold 3 entries"),
    # lesson 2
    "soft targets: an image per row of logits":
        (lambda: l2.soft_targets_figure(torch.rand(3, 1, 8, 8), torch.randn(2, 3), torch.tensor([0, 1])),
         r"^images must hold 2 entries, one per row of teacher_logits"),
    "soft targets: a label per row of logits":
        (lambda: l2.soft_targets_figure(torch.rand(2, 1, 8, 8), torch.randn(2, 3), torch.tensor([0])),
         r"^labels must hold 2 entries"),
    "soft targets: labels among the classes":
        (lambda: l2.soft_targets_figure(torch.rand(2, 1, 8, 8), torch.randn(2, 3), torch.tensor([0, 3])),
         r"^labels must be classes in \[0, 3\)"),
    "soft targets: a class name per class":
        (lambda: l2.soft_targets_figure(torch.rand(2, 1, 8, 8), torch.randn(2, 3), torch.tensor([0, 1]),
                                        class_names=["a"]),
         r"^class_names must hold 3 entries"),
    "gradient scale: a norm per temperature":
        (lambda: l2.gradient_scale_figure([1, 2, 4], [1.0, 0.5], [1.0, 1.0, 1.0]),
         r"^norms_without must hold 3 entries"),
    "student comparison: every group the same methods":
        (lambda: l2.student_comparison_figure({"16": {"hard labels": [0.9]}, "32": {"soft targets": [0.9]}},
                                              {"50": {"hard labels": [0.8]}}),
         r"^same_set\['32'\] must hold the methods of the first group"),
    "student comparison: methods with a course colour":
        (lambda: l2.student_comparison_figure({"16": {"mine": [0.9]}}, {"50": {"hard labels": [0.8]}}),
         r"^same_set names methods without a course colour \['mine'\]"),
    "sweep heatmap: a title per grid":
        (lambda: l2.sweep_heatmap_figure([np.full((2, 3), 0.9)], [1, 4, 8], [0.5, 1.0], ["a", "b"]),
         r"^titles must hold 1 entries, one per grid"),
    "sweep heatmap: a grid of alphas by temperatures":
        (lambda: l2.sweep_heatmap_figure([np.full((3, 2), 0.9)], [1, 4, 8], [0.5, 1.0], ["a"]),
         r"^grids\[0\] must have shape \(len\(alphas\), len\(temperatures\)\) = \(2, 3\)"),
    "bias shift: an accuracy per shift":
        (lambda: l2.bias_shift_figure([0, 1, 2], [0.9, 0.95], 1.0), r"^validation_accuracy must hold 3 entries"),
    # lesson 3
    "partition: labels among num_classes":
        (lambda: l3.plot_partition([[0, 1]], [0, 12], num_classes=10), r"^labels must be classes below num_classes"),
    "partition: indices into labels":
        (lambda: l3.plot_partition([[0, 5]], [0, 1]), r"^client_indices\[0\] must index labels \(below 2\)"),
    "aggregator cost: a baseline among the aggregators":
        (lambda: l3.plot_aggregator_cost({"median": ACC}, {"median": ACC}, "t"),
         r"^baseline must be one of per_client's"),
    "aggregator cost: as many classes everywhere":
        (lambda: l3.plot_aggregator_cost({"mean": ACC, "median": ACC[:2]}, {"mean": ACC}, "t"),
         r"^per_class\['median'\] must hold 3 entries, one per class"),
    "aggregator cost: as many clients everywhere":
        (lambda: l3.plot_aggregator_cost({"mean": ACC}, {"mean": ACC, "median": ACC[:2]}, "t"),
         r"^per_client\['median'\] must hold 3 entries, one per client"),
    "client examples: clients of the federation":
        (lambda: l3.plot_client_examples([(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))], clients=(0, 1)),
         r"^clients must be clients below 1"),
    # lesson 4
    "client spread: a value per client":
        (lambda: l4.client_spread_figure(ACC, ACC[:2], [30, 31, 32], [10, 11, 12]),
         r"^local_accuracy must hold 3 entries"),
    "method comparison: as many clients per method":
        (lambda: l4.method_comparison_figure({"global": ACC, "local": ACC[:2]}),
         r"^accuracies\['local'\] must hold 3 entries, one per client"),
    "who gains: a gain per client":
        (lambda: l4.who_gains_figure(ACC, {"finetune": [0.1, 0.0]}), r"^gains\['finetune'\] must hold 3 entries"),
    "overfitting: a curve row per epoch count":
        (lambda: l4.overfitting_figure((0, 5), {"finetune": np.full((3, 2), 0.9)}, 0.9, 10, ["5"],
                                       {"finetune": [0.0]}),
         r"^curves\['finetune'\] must hold one row per entry of epochs_grid \(2\)"),
    "overfitting: a gain per size":
        (lambda: l4.overfitting_figure((0, 5), {"finetune": np.full((2, 2), 0.9)}, 0.9, 10, ["5", "all"],
                                       {"finetune": [0.0]}),
         r"^size_gains\['finetune'\] must hold 2 entries, one per size"),
    "overfitting: a label per size":
        (lambda: l4.overfitting_figure((0, 5), {"finetune": np.full((2, 2), 0.9)}, 0.9, 10, ["5"],
                                       {"finetune": [0.0]}, size_labels=["5", "all"]),
         r"^size_labels must hold 1 entries"),
    "aggregator recovery: every aggregator the same methods":
        (lambda: l4.aggregator_recovery_figure({"mean": {"global": ACC}, "dp": {"ewc": ACC}}),
         r"^results\['dp'\] must hold the methods of the first aggregator"),
    "distill sweep: a gain per alpha and temperature":
        (lambda: l4.distill_sweep_figure(np.zeros((3, 2)), (1, 4), (0.5, 0.95)),
         r"^gains must have shape \(len\(alphas\), len\(temperatures\)\) = \(2, 2\)"),
    "distill sweep: marked pairs on the grid":
        (lambda: l4.distill_sweep_figure(np.zeros((2, 2)), (1, 4), (0.5, 0.95), marked=[(0.7, 4)]),
         r"^marked must hold \(alpha, T\) pairs of the grid"),
    "who gains by local: a gain per client":
        (lambda: l4.who_gains_by_local_figure(ACC, {"global": [0.1]}, [True, False, True]),
         r"^gains\['global'\] must hold 3 entries"),
    "who gains by local: a mirrored flag per client":
        (lambda: l4.who_gains_by_local_figure(ACC, {"global": [0.1, 0.0, 0.0]}, [True]),
         r"^mirrored must hold 3 entries"),
    # lesson 5
    "validation curves: a column per checkpoint":
        (lambda: l5.validation_curves_figure([0, 5, 10], np.full((2, 2), 0.5), np.full((2, 3), 0.5), 5),
         r"^with_digits must hold one column per checkpoint \(3\)"),
    "rounds over seeds: as many rounds in every run":
        (lambda: l5.rounds_over_seeds_figure([_history([[0.5], [0.6]])], [_history([[0.5]])], 0.5),
         r"^control\[0\] must have the 2 rounds of fedmd\[0\]"),
    "party gains: a name per party":
        (lambda: l5.party_gains_figure(np.zeros((2, 3)), ["p0", "p1"], "t"), r"^party_names must hold 3 entries"),
    "letter reading: a label per public image":
        (lambda: l5.letter_reading(_parties(), torch.rand(20, 1, 8, 8), torch.arange(19) % 10),
         r"^public_labels must hold 20 entries, one per public image"),
    "letter reading: per_digit images of every digit":
        (lambda: l5.letter_reading(_parties(), torch.rand(20, 1, 8, 8), torch.arange(20) % 10, per_digit=3),
         r"^per_digit must be at most the fewest images of any public digit in public_labels \(2"),
    "compare runs: at most one run per colour":
        (lambda: l5.compare_runs_figure({str(k): _history([[0.5]]) for k in range(7)}, "t"),
         r"^runs must hold at most 6 runs"),
    # lesson 6
    "flower architecture: the stopped party among the parties":
        (lambda: l6.flower_architecture_figure(["a", "b"], stopped=2), r"^stopped must be a party below 2"),
    "flower against in-process: the same rounds":
        (lambda: l6.flower_vs_in_process_figure(_flower([[0.5, 0.5]]), _history([[0.5, 0.5], [0.6, 0.6]])),
         r"^flower_run must have in_process's 2 rows \(rounds\) and at least its 2 parties, got accuracy of shape "
         r"\(1, 2\)"),
    "flower against in-process: in_process's parties":
        (lambda: l6.flower_vs_in_process_figure(_flower([[0.5], [0.6]]), _history([[0.5, 0.5], [0.6, 0.6]])),
         r"^flower_run must have in_process's 2 rows \(rounds\) and at least its 2 parties"),
}


@pytest.mark.parametrize("draw, message", list(REJECTIONS.values()), ids=list(REJECTIONS))
def test_arguments_that_do_not_fit_together_are_named(draw, message):
    with pytest.raises(ValueError, match=message):
        draw()
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("constraint, good, bad", [
    (Numbers(), [[1, 2.5], np.arange(3), torch.tensor([0.5])], [[], [[1.0]], ["a"], [np.nan], "12", None]),
    (Numbers(ndim=2, within=Real(0, 1)), [[[0.0, 1.0]], np.full((2, 2), 0.5)], [[0.5], [[1.5]], [[-0.1]]]),
    (Numbers(integer=True, within=Real(0), min_length=0), [[], [0, 3], np.array([2.0])], [[0.5], [-1]]),
    (MappingOf(Numbers()), [{"a": [1.0]}, {"a": [1], "b": np.ones(2)}], [{}, [1.0], {"a": []}, {"a": "x"}]),
])
def test_figure_constraints_accept_and_reject_by_hand(constraint, good, bad):
    for value in good:
        constraint.check(value, "argument")
    for value in bad:
        with pytest.raises(ValueError, match=r"^argument"):
            constraint.check(value, "argument")


def test_numbers_come_back_as_arrays_of_their_own_dtype_and_mappings_keep_their_order():
    assert Numbers().check([1, 2], "x").dtype.kind == "i" and Numbers().check([0.1], "x")[0] == 0.1
    assert list(MappingOf(Numbers()).check({"b": [1], "a": [2]}, "x")) == ["b", "a"]


def test_a_figure_given_good_arguments_still_draws():
    comparisons = {"A - B": paired_interval([0.9, 0.8], [0.8, 0.8])}
    figures = [paired_differences_figure(comparisons, "A beats B"),
               l3.plot_accuracy_curves({"a": FedAvgHistory(global_accuracy=[0.1, 0.5])}, "t")]
    assert all(isinstance(figure, Figure) for figure in figures)
    matplotlib.pyplot.close("all")
