import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons import make_mlp, predict_logits
from fedkd_lessons.distillation import (LogitEnsemble, choose_bias_shift, distillation_loss, shift_class_bias,
                                        shift_class_logit, teacher_logits_for, train_student)


def batch(seed=0, n=8, c=10, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(n, c, generator=generator, dtype=torch.float64) * scale
    teacher = torch.randn(n, c, generator=generator, dtype=torch.float64) * scale
    targets = torch.randint(0, c, (n,), generator=generator)
    return student, teacher, targets


def reference_loss(student, teacher, targets, temperature, alpha):
    """Built from torch.nn.functional alone: KL with reduction='batchmean' and cross_entropy."""
    soft = F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                    reduction="batchmean")
    hard = F.cross_entropy(student, targets) if alpha < 1 else 0.0
    return alpha * temperature**2 * soft + (1 - alpha) * hard


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, 1.0])
def test_matches_kl_div_and_cross_entropy_reference(temperature, alpha):
    student, teacher, targets = batch()
    got = distillation_loss(student, teacher, targets, temperature=temperature, alpha=alpha)
    torch.testing.assert_close(got, reference_loss(student, teacher, targets, temperature, alpha), rtol=1e-10, atol=1e-12)


def test_alpha_zero_is_plain_cross_entropy_at_t_one():
    student, teacher, targets = batch(1)
    torch.testing.assert_close(distillation_loss(student, teacher, targets, temperature=7.0, alpha=0.0),
                               F.cross_entropy(student, targets))


def test_equal_logits_give_zero_soft_term():
    _, teacher, _ = batch(2)
    assert distillation_loss(teacher.clone(), teacher, temperature=3.0, alpha=1.0).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_soft_term_is_per_sample_kl_not_mean_over_elements():
    student, teacher, _ = batch(3, n=5, c=7)
    per_element = F.kl_div(F.log_softmax(student / 2, dim=1), F.softmax(teacher / 2, dim=1), reduction="mean")
    got = distillation_loss(student, teacher, temperature=2.0, alpha=1.0)
    torch.testing.assert_close(got, 4 * 7 * per_element)


def test_gradient_equals_alpha_t_q_minus_p_over_n_plus_hard_term():
    student, teacher, targets = batch(4, n=6)
    temperature, alpha = 3.0, 0.7
    z = student.clone().requires_grad_(True)
    distillation_loss(z, teacher, targets, temperature=temperature, alpha=alpha).backward()
    q = torch.exp(student / temperature) / torch.exp(student / temperature).sum(1, keepdim=True)
    p = torch.exp(teacher / temperature) / torch.exp(teacher / temperature).sum(1, keepdim=True)
    one_hot = torch.zeros_like(student).scatter_(1, targets[:, None], 1.0)
    softmax = torch.exp(student) / torch.exp(student).sum(1, keepdim=True)
    expected = alpha * temperature * (q - p) / len(z) + (1 - alpha) * (softmax - one_hot) / len(z)
    torch.testing.assert_close(z.grad, expected, rtol=1e-9, atol=1e-12)


def test_gradient_matches_finite_differences():
    student, teacher, targets = batch(5, n=3, c=4)
    assert torch.autograd.gradcheck(
        lambda z: distillation_loss(z, teacher, targets, temperature=2.5, alpha=0.6), (student.requires_grad_(True),))


def test_teacher_is_treated_as_a_constant():
    student, teacher, targets = batch(6)
    teacher = teacher.requires_grad_(True)
    distillation_loss(student.requires_grad_(True), teacher, targets).backward()
    assert teacher.grad is None


def test_large_logits_stay_finite_and_correct():
    student = torch.tensor([[1e4, 0.0, -1e4], [0.0, 1e4, 5.0]], dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[1e4, 1e4 - 2, 0.0], [3.0, 1e4, 0.0]], dtype=torch.float64)
    targets = torch.tensor([0, 1])
    loss = distillation_loss(student, teacher, targets, temperature=2.0, alpha=0.9)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    # Row 1: p = (1/(1+e^-1), e^-1/(1+e^-1), 0), q = (1, ~0, 0) at T = 2; the KL is p_2 (log p_2 - (-5000)).
    p2 = math.exp(-1) / (1 + math.exp(-1))
    p1 = 1 - p2
    kl_row1 = p1 * math.log(p1) + p2 * (math.log(p2) + 5000)
    assert loss.item() == pytest.approx(0.9 * 4 * kl_row1 / 2, rel=1e-6)


def test_teacher_masking_a_class_with_minus_inf_is_fine():
    student, teacher, targets = batch(7, n=2, c=3)
    teacher[:, 2] = -math.inf
    loss = distillation_loss(student.requires_grad_(True), teacher, targets, temperature=2.0, alpha=0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan, "0.5"])
def test_rejects_alpha_outside_unit_interval(alpha):
    student, teacher, targets = batch()
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]"):
        distillation_loss(student, teacher, targets, alpha=alpha)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan])
def test_rejects_bad_temperature(temperature):
    student, teacher, targets = batch()
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        distillation_loss(student, teacher, targets, temperature=temperature)


def test_rejects_shape_mismatch_and_non_matrix_logits():
    student, teacher, targets = batch()
    with pytest.raises(ValueError, match="teacher_logits has shape"):
        distillation_loss(student, teacher[:, :9], targets)
    with pytest.raises(ValueError, match="teacher_logits has shape"):
        distillation_loss(student, teacher[:7], targets)
    with pytest.raises(ValueError, match=r"student_logits must have shape \(N, C\)"):
        distillation_loss(student[0], teacher[0], targets[:1])


def test_rejects_nan_logits():
    student, teacher, targets = batch()
    teacher[0, 0] = math.nan
    with pytest.raises(ValueError, match="teacher_logits contains NaN"):
        distillation_loss(student, teacher, targets)


def test_targets_none_requires_alpha_one():
    student, teacher, _ = batch()
    with pytest.raises(ValueError, match="alpha must be 1"):
        distillation_loss(student, teacher, None, alpha=0.9)
    assert torch.isfinite(distillation_loss(student, teacher, None, alpha=1.0))


def test_rejects_bad_targets():
    student, teacher, targets = batch()
    with pytest.raises(ValueError, match="targets has 7 entries but the logits have 8 rows"):
        distillation_loss(student, teacher, targets[:7])
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\]"):
        distillation_loss(student, teacher, torch.full((8,), 10))
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\]"):
        distillation_loss(student, teacher, torch.full((8,), -1))
    with pytest.raises(ValueError, match="integer class indices"):
        distillation_loss(student, teacher, targets.double())


def test_logit_ensemble_averages_logits_not_probabilities():
    torch.manual_seed(0)
    members = [nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(5, 4)
    expected = (members[0](x) + members[1](x) + members[2](x)) / 3
    torch.testing.assert_close(LogitEnsemble(members)(x), expected)
    with pytest.raises(ValueError, match="at least one member"):
        LogitEnsemble([])


def test_teacher_logits_for_model_or_precomputed():
    torch.manual_seed(0)
    teacher = make_mlp((8,), dropout=0.5)
    images = torch.rand(6, 1, 8, 8)
    from_model = teacher_logits_for(teacher, images)
    teacher.eval()
    torch.testing.assert_close(from_model, teacher(images).detach())  # eval mode: dropout off
    torch.testing.assert_close(teacher_logits_for(from_model, images), from_model)
    with pytest.raises(ValueError, match=r"shape \(N, C\) with N = 6"):
        teacher_logits_for(from_model[:5], images)


def test_train_student_learns_to_agree_with_its_teacher():
    torch.manual_seed(0)
    images = torch.rand(256, 1, 4, 4)
    teacher = make_mlp((32,), num_classes=4, image_size=4)
    student = make_mlp((16,), num_classes=4, image_size=4)
    teacher_predictions = predict_logits(teacher, images).argmax(1)
    before = (predict_logits(student, images).argmax(1) == teacher_predictions).float().mean()
    losses = train_student(student, images, teacher, epochs=40, temperature=2.0, alpha=1.0, lr=1e-2,
                           batch_size=64, generator=torch.Generator().manual_seed(0), progress=False)
    after = (predict_logits(student, images).argmax(1) == teacher_predictions).float().mean()
    assert losses[-1] < 0.2 * losses[0]
    assert after > 0.9 and after > before


def test_train_student_same_result_from_model_or_precomputed_logits():
    images = torch.rand(64, 1, 4, 4)
    labels = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(1))
    teacher = make_mlp((8,), num_classes=4, image_size=4)
    results = []
    for source in (teacher, predict_logits(teacher, images)):
        torch.manual_seed(3)
        student = make_mlp((8,), num_classes=4, image_size=4)
        train_student(student, images, source, labels, epochs=2, generator=torch.Generator().manual_seed(0), progress=False)
        results.append(predict_logits(student, images))
    torch.testing.assert_close(results[0], results[1])


def test_train_student_rejects_bad_arguments():
    images = torch.rand(8, 1, 4, 4)
    student = make_mlp((4,), num_classes=3, image_size=4)
    logits = torch.zeros(8, 3)
    with pytest.raises(ValueError, match="alpha must be 1"):
        train_student(student, images, logits, None, epochs=1, alpha=0.9)
    with pytest.raises(ValueError, match="temperature must be"):
        train_student(student, images, logits, None, epochs=1, alpha=1.0, temperature=0)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
        train_student(student, images, logits, torch.full((8,), 3), epochs=1)


def hand_case():
    # Two 3s that trail an 8 by 1.5 and 2.5, one 8 whose 3-logit trails by 2.2, one clear 0.
    logits = torch.zeros(4, 10)
    logits[0, 8], logits[0, 3] = 2.0, 0.5
    logits[1, 8], logits[1, 3] = 2.5, 0.0
    logits[2, 8], logits[2, 3] = 3.0, 0.8
    logits[3, 0] = 9.0
    return logits, torch.tensor([3, 3, 8, 0])


def test_choose_bias_shift_maximises_validation_accuracy():
    logits, labels = hand_case()
    # shift 0: 2/4; 2: first 3 right, 8 kept -> 3/4; 3: both 3s right but the 8 lost -> 3/4; 10: 3s only -> 2/4
    best, accuracies = choose_bias_shift(logits, labels, 3, [0.0, 2.0, 3.0, 10.0])
    assert best == 2.0
    torch.testing.assert_close(accuracies, torch.tensor([0.5, 0.75, 0.75, 0.5], dtype=torch.float64))


def test_choose_bias_shift_breaks_ties_towards_the_smallest_and_checks_input():
    logits, labels = hand_case()
    assert choose_bias_shift(logits, labels, 3, [3.0, 2.0])[0] == 2.0
    with pytest.raises(ValueError, match="shifts must be a list or tuple of at least 1 item"):
        choose_bias_shift(logits, labels, 3, [])
    with pytest.raises(ValueError, match=r"shifts\[1\] must be a finite number"):
        choose_bias_shift(logits, labels, 3, [1.0, math.nan])
    with pytest.raises(ValueError, match="targets has 3 entries"):
        choose_bias_shift(logits, labels[:3], 3, [1.0])
    with pytest.raises(ValueError, match=r"class_index must be in \[0, 9\]"):
        choose_bias_shift(logits, labels, 10, [1.0])


def test_shifting_the_bias_moves_only_that_class_logit():
    torch.manual_seed(0)
    model = make_mlp((8,))
    images = torch.rand(5, 1, 8, 8)
    before = predict_logits(model, images)
    shift_class_bias(model, 3, 2.5)
    change = predict_logits(model, images) - before
    expected = torch.zeros_like(before)
    expected[:, 3] = 2.5
    torch.testing.assert_close(change, expected)
    torch.testing.assert_close(shift_class_logit(before, 3, 2.5) - before, expected)
    with pytest.raises(ValueError, match="class_index must be in"):
        shift_class_bias(model, 10, 1.0)
