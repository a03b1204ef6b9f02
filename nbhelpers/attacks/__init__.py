"""Adversarial attacks: the paper's gradient attack on MFA classifiers and foolbox's minimum-L2 attacks."""

from nbhelpers.attacks.evaluate import ATTACKS, AttackResult, run_attacks
from nbhelpers.attacks.foolbox_attacks import (
    FOOLBOX_ATTACKS,
    FoolboxAttackResult,
    make_foolbox_attack,
    run_foolbox_attack,
)
from nbhelpers.attacks.gradient import GradientAttackResult, L2ComponentGradientAttack

__all__ = [
    "ATTACKS",
    "FOOLBOX_ATTACKS",
    "AttackResult",
    "FoolboxAttackResult",
    "GradientAttackResult",
    "L2ComponentGradientAttack",
    "make_foolbox_attack",
    "run_attacks",
    "run_foolbox_attack",
]
