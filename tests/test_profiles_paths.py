"""The run profiles (``nbhelpers.chapters.profiles``), the device resolver (``nbhelpers.core.device``) and
the project's folders (``nbhelpers.core.paths``)."""

import pytest
import torch

from nbhelpers.chapters.profiles import PROFILES, get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.core.paths import project_root


def test_profiles_resolve_and_paper_uses_paper_sizes():
    quick, paper = get_profile("quick"), get_profile("paper")
    assert quick.name == "quick" and paper.name == "paper"
    assert paper.mfa.mnist_components == 25 and paper.mfa.mnist_latent_dim == 6
    assert paper.mfa.celeba_latent_dim == 10 and paper.mfa.celeba_images_per_component == 1000
    assert paper.attacks.cw_steps == 500 and paper.attacks.cw_binary_search_steps == 3
    assert paper.attacks.cw_stepsize == 0.01
    assert quick.attacks.n_attack < paper.attacks.n_attack


@pytest.mark.parametrize("bad", ["fast", "", None, "Quick"])
def test_unknown_profile_lists_valid_ones(bad):
    with pytest.raises(ValueError) as err:
        get_profile(bad)
    for name in PROFILES:
        assert repr(name) in str(err.value)


def test_device_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("bad", ["gpu", "tpu", "CUDA"])
def test_unknown_device_lists_valid_ones(bad):
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda'"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_project_root_found_from_book_folder(root):
    assert project_root(root / "book") == root
