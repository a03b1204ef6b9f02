"""Exact distances to Bayes-optimal decision boundaries (paper section 2.1 and appendix A).

- ``quadric``: the exact Euclidean distance from points to the boundary of two Gaussians (a quadric), and an
  independent ray-search ruler in 2-D;
- ``mixtures``: affine subspaces (Lemma 3), Gaussian mixtures (Theorem 1), discrete tables (Lemma A.1);
- ``lemmas``: the 2-D toy models (the paper's Figure 3) and the models of Lemmas 1-3, and the experiments
  that measure them.

All computations are float64 NumPy/SciPy on the CPU: the quantities are exact, not learned, and the
eigen-decompositions involved are small enough (``d <= 784``).
"""

from nbhelpers.science.theory.lemmas import (
    TOY_KINDS,
    TOY_SHAPES,
    DiscreteCheck,
    DiscretePair,
    DistanceSweep,
    GaussianPair,
    LowRankPair,
    MixtureCheck,
    MixturePair,
    RulerCheck,
    lemma1_model,
    lemma1_sweep,
    lemma2_model,
    lemma2_sweep,
    lemma3_model,
    lemma3_sweep,
    lemma_a1_experiment,
    random_spd,
    ratio_model,
    ruler_check,
    theorem1_experiment,
    toy_model,
)
from nbhelpers.science.theory.mixtures import (
    GaussianMixture,
    MixtureDistances,
    discrete_level_distance,
    discrete_tables,
    mixture_boundary_distance,
    point_subspace_distance,
    sample_table,
    subspace_distance,
)
from nbhelpers.science.theory.quadric import (
    Gaussian,
    QuadricBoundary,
    boundary_distance,
    closest_boundary_points,
    ray_boundary_distance_2d,
)

__all__ = [
    "TOY_KINDS",
    "TOY_SHAPES",
    "DiscreteCheck",
    "DiscretePair",
    "DistanceSweep",
    "Gaussian",
    "GaussianMixture",
    "GaussianPair",
    "LowRankPair",
    "MixtureCheck",
    "MixtureDistances",
    "MixturePair",
    "QuadricBoundary",
    "RulerCheck",
    "boundary_distance",
    "closest_boundary_points",
    "discrete_level_distance",
    "discrete_tables",
    "lemma1_model",
    "lemma1_sweep",
    "lemma2_model",
    "lemma2_sweep",
    "lemma3_model",
    "lemma3_sweep",
    "lemma_a1_experiment",
    "mixture_boundary_distance",
    "point_subspace_distance",
    "random_spd",
    "ratio_model",
    "ray_boundary_distance_2d",
    "ruler_check",
    "sample_table",
    "subspace_distance",
    "theorem1_experiment",
    "toy_model",
]
