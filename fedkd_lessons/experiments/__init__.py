"""Each lesson's experiments as the notebook runs them, with the lesson's one settings object and
the claims its prose makes.

One module per lesson (``lesson2_distillation`` ...). Each holds a frozen ``Settings`` dataclass
(the notebook's constants, in one place), the functions that run the lesson's experiments from
those settings, ``run_claims_experiment(settings)`` that runs the experiments the prose draws
conclusions from, and ``claims(result)`` that states each of those conclusions as a
:class:`~fedkd_lessons.experiments.claims.Claim`. The notebook and ``tests/test_claims_*.py``
import the same settings, so no number is copied by hand between them.
"""
