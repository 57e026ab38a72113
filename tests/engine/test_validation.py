"""The declared argument checks: each constraint against hand-picked values, the decorator, and
every declared argument of every checked function in the package rejecting its constraint's
bad values with a message that names it."""

import importlib
import inspect
import math
import pkgutil

import numpy as np
import pytest
import torch

import fedkd_lessons
from fedkd_lessons.engine.validation import (CHECKED, Callable, Each, Instance, Integer, OneOf, Optional, Real,
                                             Tensor, check, check_fields, checked_arguments)

for module in pkgutil.walk_packages(fedkd_lessons.__path__, "fedkd_lessons."):
    importlib.import_module(module.name)  # every module's checked functions join CHECKED

# Modules whose every public function declares its checks (or is listed here with the reason it
# has nothing to check); the test below keeps them complete.
DECLARED_MODULES = ("fedkd_lessons.temperature", "fedkd_lessons.distillation", "fedkd_lessons.fedavg",
                    "fedkd_lessons.adaptation", "fedkd_lessons.fedmd", "fedkd_lessons.engine.training",
                    "fedkd_lessons.experiments.lesson3_federated", "fedkd_lessons.experiments.lesson3_client_drift",
                    "fedkd_lessons.experiments.lesson4_adaptation", "fedkd_lessons.figures.plotting",
                    "fedkd_lessons.figures.lesson1_temperature", "fedkd_lessons.figures.lesson2_distillation",
                    "fedkd_lessons.figures.lesson3_federated", "fedkd_lessons.figures.lesson4_adaptation",
                    "fedkd_lessons.figures.lesson5_fedmd", "fedkd_lessons.figures.lesson6_flower",
                    "fedkd_lessons.figures.lesson7_after_fedmd",
                    "fedkd_lessons.engine.models", "fedkd_lessons.engine.batched", "fedkd_lessons.engine.seeding",
                    "fedkd_lessons.data.digits", "fedkd_lessons.data.partition", "fedkd_lessons.data.letters",
                    "fedkd_lessons.data.paper_scale", "fedkd_lessons.experiments.lesson4_springs",
                    "fedkd_lessons.after_fedmd", "fedkd_lessons.experiments.claims", "fedkd_lessons.experiments.intervals",
                    "fedkd_lessons.experiments.lesson1_temperature", "fedkd_lessons.experiments.lesson2_distillation",
                    "fedkd_lessons.experiments.lesson5_fedmd", "fedkd_lessons.experiments.lesson7_after_fedmd",
                    "fedkd_lessons.experiments.lesson6_flower", "fedkd_lessons.flower.launcher",
                    "fedkd_lessons.flower.app.settings", "fedkd_lessons.flower.app.protocol",
                    "fedkd_lessons.flower.app.party_disk", "fedkd_lessons.flower.app.faults",
                    "fedkd_lessons.flower.app.credentials", "fedkd_lessons.flower.app.server_app",
                    "fedkd_lessons.flower.app.client_app",
                    "fedkd_lessons.exercises.feedback", "fedkd_lessons.exercises.lesson1_temperature",
                    "fedkd_lessons.exercises.lesson2_distillation", "fedkd_lessons.exercises.lesson3_federated",
                    "fedkd_lessons.exercises.lesson4_adaptation", "fedkd_lessons.exercises.lesson5_fedmd",
                    "fedkd_lessons.exercises.lesson6_flower", "fedkd_lessons.exercises.lesson7_after_fedmd",
                    "fedkd_lessons.course.widgets", "fedkd_lessons.course.classroom",
                    "fedkd_lessons.course.translation", "fedkd_lessons.course.website",
                    "fedkd_lessons.course.assets", "fedkd_lessons.course.bench", "fedkd_lessons.engine.progress",
                    )

NOTHING_TO_CHECK = {
    "fedkd_lessons.figures.plotting.use_course_style": "takes no argument",
    "fedkd_lessons.figures.plotting.check_lengths": "is itself the figures' check that named arguments match in length",
    "fedkd_lessons.figures.lesson2_distillation.readme_figure": "takes no argument",
    "fedkd_lessons.figures.lesson4_adaptation.readme_figure": "takes no argument",
    "fedkd_lessons.figures.lesson7_after_fedmd.methods_diagram": "takes no argument",
    "fedkd_lessons.temperature.strongest_lookalikes": "reads a resemblance_table's output",
    "fedkd_lessons.engine.progress.progress_enabled": "any value is read as a truth value",
    "fedkd_lessons.engine.progress.progress_bar": "wraps any iterable",
    "fedkd_lessons.engine.models.count_parameters": "any nn.Module",
    "fedkd_lessons.engine.models.last_linear_layer": "any nn.Module; raises when it has no nn.Linear",
    "fedkd_lessons.engine.models.make_fedmd_zoo": "passes its two arguments to make_mlp and make_cnn, which check them",
    "fedkd_lessons.distillation.teacher_logits_for": "a model or logits, checked by as_logits",
    "fedkd_lessons.engine.batched.check_same_architecture": "is itself the check of a list of models",
    "fedkd_lessons.engine.batched.architecture_key": "any nn.Module",
    "fedkd_lessons.engine.batched.group_by_architecture": "any models; the stacks built from the groups check them",
    "fedkd_lessons.engine.batched.batch_schedule": "called by train_stack with arguments it has checked",
    "fedkd_lessons.engine.batched.cross_entropy_per_example": "a loss inside train_stack's loop, on the engine's own tensors",
    "fedkd_lessons.data.paper_scale.data_folder": "takes no argument",
    "fedkd_lessons.data.paper_scale.load_mnist": "root is any path, download a truth value; torchvision names a missing file",
    "fedkd_lessons.adaptation.ewc_penalty": "runs on every mini-batch as the penalty: checks ewc_lambda inline; adapt_ewc and "
                                            "adapt_all check the fisher and the lambda before training",
    "fedkd_lessons.fedmd.consensus_loss": "runs on every mini-batch as digest's loss; digest declares kind and "
                                          "temperature before training",
    "fedkd_lessons.after_fedmd.fd_loss": "runs on every mini-batch as fd_train's loss: checks weight and temperature "
                                         "inline; fd_train declares both before training",
    "fedkd_lessons.experiments.claims.main": "argparse checks the command line (the lesson among its choices, int seeds)",
    "fedkd_lessons.experiments.lesson6_flower.largest_consensus_error": "reads the record of a FlowerFedMDRun the "
                                                                        "launcher built",
    "fedkd_lessons.experiments.lesson6_flower.full_round_message": "reads the record of a FlowerFedMDRun the launcher "
                                                                   "built; names a run without a full round",
    "fedkd_lessons.experiments.lesson6_flower.full_round_bytes_per_party": "reads the record of a FlowerFedMDRun the "
                                                                           "launcher built",
    "fedkd_lessons.flower.launcher.free_port": "takes no argument",
    "fedkd_lessons.flower.launcher.check_run_inputs": "is itself run_fedmd_on_flower's check of what its declared "
                                                      "arguments must agree on",
    "fedkd_lessons.flower.app.protocol.check_reply": "is itself the server's check of an untrusted reply: it returns "
                                                     "why to drop it and never raises",
    "fedkd_lessons.flower.app.faults.spoil_reply": "runs in a ClientApp on a fault that parse_faults accepted and on "
                                                   "the party's own logits",
    "fedkd_lessons.flower.app.faults.pause_if_asked": "runs in a ClientApp on a fault that parse_faults accepted",
    "fedkd_lessons.flower.app.server_app.party_order": "a sort key over party ids and node names",
    "fedkd_lessons.flower.app.server_app.main": "Flower calls it with its own Grid and Context; FedMDSettings, "
                                                "FlowerSettings and RunFacts check the run-config it reads",
    "fedkd_lessons.flower.app.client_app.fedmd_step": "Flower calls it with its own Message and Context; "
                                                      "read_server_message reads the message",
    "fedkd_lessons.exercises.feedback.grading": "takes no argument",
    "fedkd_lessons.exercises.feedback.graded": "takes the Feedback a checker built",
    "fedkd_lessons.exercises.feedback.checker": "a decorator the exercise modules give their own success sentence",
    "fedkd_lessons.exercises.feedback.as_tensor_answer": "is itself a checker's check of what a learner's function "
                                                         "returned: it raises Wrong, shown as feedback",
    "fedkd_lessons.exercises.feedback.assert_close_answer": "is itself a checker's check of what a learner's function "
                                                            "returned against the reference: it raises Wrong, shown "
                                                            "as feedback",
    "fedkd_lessons.course.classroom.is_solution_cell": "a predicate over the cells of a notebook that "
                                                       "with_nbgrader_metadata or a test has already read",
    "fedkd_lessons.course.classroom.is_check_cell": "a predicate over the cells of a notebook that "
                                                    "with_nbgrader_metadata or a test has already read",
    "fedkd_lessons.course.classroom.main": "argparse checks the command line (the command, the language among "
                                           "its choices); the functions it calls declare the folders",
    "fedkd_lessons.course.translation.validate_catalog": "is itself the check of a catalog's shape (the Catalog "
                                                         "constraint the other functions declare)",
    "fedkd_lessons.course.translation.main": "argparse checks the command line (the command among its choices) and "
                                             "main names a --root without README.md and notebooks/",
    "fedkd_lessons.course.website.package_modules": "takes no argument",
    "fedkd_lessons.course.website.api_docnames": "takes no argument",
    "fedkd_lessons.course.website.choose_language_page": "takes no argument",
    "fedkd_lessons.course.website.main": "argparse checks the command line (OUTDIR read as a path); build names an "
                                         "OUTDIR inside the sources",
    "fedkd_lessons.course.assets.lesson1_temperature": "takes no argument",
    "fedkd_lessons.course.bench.main": "argparse checks the command line (cases and engines among their choices); "
                                       "run_case declares --one's case and engine",
}


@pytest.mark.parametrize(("constraint", "good", "bad"), [
    (Integer(0), [0, 3, np.int64(7), torch.tensor(2)], [-1, 2.0, True, "1", None]),
    (Integer(1, 3), [1, 3], [0, 4]),
    (Real(0, closed="neither"), [1e-9, 2, 3.5, np.float32(0.5)], [0, -1.0, math.nan, math.inf, True, "1"]),
    (Real(0, 1), [0, 1, 0.5], [-0.01, 1.01]),
    (Real(0, 1, closed="left"), [0, 0.99], [1, 1.0]),
    (Real(0, 1, closed="right"), [1, 0.01], [0]),
    (OneOf("adam", "sgd"), ["adam", "sgd"], ["Adam", "", 1, None]),
    (Callable(), [len, lambda: 0], [1, "len", None, torch.zeros(2, 3)]),
    (Instance(torch.Generator), [torch.Generator()], [0, None]),
    (Optional(Integer(1)), [None, 1], [0, 1.5]),
    (Each(Integer(1)), [[1], (2, 3)], [[], [0], (1, 1.5), "12", 3]),
    (Each(Integer(1), min_length=0), [[], ()], [[0]]),
    (Tensor(ndim=2, dtype="float"), [torch.zeros(2, 3), [[1.0]]], [torch.zeros(3), torch.zeros(0, 2),
                                                                    torch.zeros(2, 2, dtype=torch.long),
                                                                    torch.tensor([[1.0, math.nan]]), "x"]),
    (Tensor(ndim=1, dtype="integer"), [torch.arange(3), [0, 1]], [torch.zeros(3), torch.tensor([True]),
                                                                  torch.zeros(2, 1, dtype=torch.long)]),
    (Tensor(min_rows=0, finite=False), [torch.zeros(0), torch.tensor([math.inf])], []),
])
def test_each_constraint_accepts_and_rejects_by_hand(constraint, good, bad):
    for value in good:
        assert constraint.accepts(value), value
        check(value, "argument", constraint)
    for value in bad:
        assert not constraint.accepts(value), value
        with pytest.raises(ValueError, match=r"^argument"):
            check(value, "argument", constraint)


def test_messages_say_what_the_argument_must_be():
    with pytest.raises(ValueError, match=r"^softmax_fn must be callable, got None$"):
        check(None, "softmax_fn", Callable())
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got 0$"):
        check(0, "lr", Real(0, closed="neither"))
    with pytest.raises(ValueError, match=r"^dropout must be a number in \[0, 1\), got 1$"):
        check(1, "dropout", Real(0, 1, closed="left"))
    with pytest.raises(ValueError, match=r"^epochs must be an integer >= 0, got -2$"):
        check(-2, "epochs", Integer(0))
    with pytest.raises(ValueError, match=r"^x contains NaN or infinity at 2 place\(s\)$"):
        check(torch.tensor([1.0, math.nan, math.inf]), "x", Tensor())
    with pytest.raises(ValueError, match=r"^hidden\[1\] must be an integer >= 1, got 0$"):
        check((4, 0), "hidden", Each(Integer(1)))


def test_checks_convert_what_they_accept():
    assert check(np.int64(3), "n", Integer()) == 3 and type(check(np.int64(3), "n", Integer())) is int
    assert type(check(2, "t", Real())) is float
    assert isinstance(check([[1, 2]], "x", Tensor()), torch.Tensor)
    assert check([1, 2], "h", Each(Integer())) == [1, 2]


def test_the_decorator_checks_given_and_default_arguments_and_passes_them_on_converted():
    @checked_arguments(n=Integer(1), scale=Real(0, closed="neither"))
    def repeat(text, n, *, scale=1):
        return text * n, scale

    assert repeat("ab", np.int64(2)) == ("abab", 1.0)
    with pytest.raises(ValueError, match="^n must be an integer >= 1"):
        repeat("ab", 0)
    with pytest.raises(ValueError, match="^scale must be a finite number > 0"):
        repeat("ab", 1, scale=-1)

    @checked_arguments(n=Integer(1))
    def bad_default(n=0):
        return n

    with pytest.raises(ValueError, match="^n must be an integer >= 1, got 0"):
        bad_default()  # a default is checked like a given value
    assert repeat.check_arguments(n=3) == {"n": 3}
    assert repeat in CHECKED and inspect.signature(repeat) == inspect.signature(repeat.__wrapped__)


def test_the_decorator_refuses_to_check_a_parameter_the_function_does_not_have():
    with pytest.raises(TypeError, match=r"has no parameter\(s\) \['epoch'\]"):
        @checked_arguments(epoch=Integer(0))
        def train(epochs):
            return epochs


def test_check_fields_converts_frozen_dataclass_fields():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Settings:
        rounds: int = 2
        lr: float = 1

        def __post_init__(self):
            check_fields(self, rounds=Integer(0), lr=Real(0, closed="neither"))

    assert type(Settings().lr) is float
    with pytest.raises(ValueError, match="^rounds must be an integer >= 0"):
        Settings(rounds=-1)


def _declared():
    for function in CHECKED:
        if function.__module__.startswith("fedkd_lessons."):
            for name, constraint in function.constraints.items():
                yield pytest.param(function, name, constraint, id=f"{function.__module__}.{function.__qualname__}:{name}")


@pytest.mark.parametrize(("function", "name", "constraint"), list(_declared()))
def test_every_declared_argument_rejects_its_bad_values_by_name(function, name, constraint):
    bad_values = constraint.bad_examples()
    assert bad_values, f"{constraint!r} names no value it rejects"
    for bad in bad_values:
        with pytest.raises(ValueError, match=rf"^{name}\b"):
            function.check_arguments(**{name: bad})


@pytest.mark.parametrize("module_name", DECLARED_MODULES)
def test_every_public_function_of_a_declared_module_checks_its_arguments(module_name):
    module = importlib.import_module(module_name)
    unchecked = []
    for name, function in vars(module).items():
        if (name.startswith("_") or not inspect.isfunction(function) or function.__module__ != module.__name__
                or f"{module_name}.{name}" in NOTHING_TO_CHECK):
            continue
        if function not in CHECKED:
            unchecked.append(name)
    assert not unchecked, f"public functions of {module_name} that declare no checks: {unchecked}"
