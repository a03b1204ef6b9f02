"""Adversarial attacks: the paper's gradient attack on MFA classifiers and foolbox's minimum-L2 attacks."""

from nbhelpers.science.attacks.best_of import (
    ATTACKS,
    AttackOutcome,
    AttackResult,
    check_attack_names,
    run_attack,
    run_attacks,
    smallest_per_sample,
)
from nbhelpers.science.attacks.foolbox_attacks import (
    FOOLBOX_ATTACKS,
    AttackBudget,
    FoolboxAttackResult,
    make_foolbox_attack,
    run_foolbox_attack,
)
from nbhelpers.science.attacks.gradient import GradientAttackResult, L2ComponentGradientAttack

__all__ = [
    "ATTACKS",
    "FOOLBOX_ATTACKS",
    "AttackBudget",
    "AttackOutcome",
    "AttackResult",
    "FoolboxAttackResult",
    "GradientAttackResult",
    "L2ComponentGradientAttack",
    "smallest_per_sample",
    "check_attack_names",
    "make_foolbox_attack",
    "run_attack",
    "run_attacks",
    "run_foolbox_attack",
]
