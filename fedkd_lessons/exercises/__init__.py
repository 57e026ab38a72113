"""Checkers for the lessons' exercises: instant, friendly feedback in one sentence.

One module per lesson; everything is re-exported here, so a notebook writes
``from fedkd_lessons.exercises import check_softmax_with_temperature``.
See :mod:`fedkd_lessons.exercises.feedback` for the convention every checker follows.
"""

from fedkd_lessons.exercises.feedback import Feedback, Wrong, checker
from fedkd_lessons.exercises.lesson1_temperature import (check_entropy, check_softmax_with_temperature,
                                                         check_temperature_for_entropy)
from fedkd_lessons.exercises.lesson2_distillation import (check_bias_shift_choice, check_distillation_loss,
                                                          check_soft_gradient)
from fedkd_lessons.exercises.lesson3_federated import (check_class_skew, check_clip_update, check_fedavg_round,
                                                       check_weighted_average)
from fedkd_lessons.exercises.lesson4_adaptation import (check_distill_step, check_early_stopping, check_ewc_penalty,
                                                        check_max_stable_lambda)
from fedkd_lessons.exercises.lesson5_fedmd import check_consensus, check_fedmd_round, check_fedmd_round_bytes
from fedkd_lessons.exercises.lesson6_flower import check_aggregate_replies, check_close_round, check_median_consensus
from fedkd_lessons.exercises.lesson7_after_fedmd import check_entropy_reduction, check_fd_teachers
