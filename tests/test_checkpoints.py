"""Checkpoints: a chapter run killed half-way resumes after its last finished step, with the same numbers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nbhelpers import checkpoints as checkpoints_module
from nbhelpers import experiments as ex
from nbhelpers import results
from nbhelpers import robustness as rb
from nbhelpers.__main__ import main as cli_main
from nbhelpers.attacks import evaluate as attack_evaluate
from nbhelpers.attacks import run_attacks
from nbhelpers.checkpoints import Checkpoints, fingerprint, run_checkpoints
from nbhelpers.classifier import BayesClassifier
from nbhelpers.data import TaskData
from nbhelpers.models.svm import RBFSVMModule
from tests.test_classifier import subspace_pair
from tests.test_experiments import IMAGE_SHAPE, make_tiny_data, make_tiny_models
from tests.test_robustness import toy_models


class Killed(RuntimeError):
    """Stands for the process dying mid-run."""


def counting(compute):
    calls = []

    def wrapped():
        calls.append(1)
        return compute()

    return wrapped, calls


def test_fingerprint_follows_every_input():
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    model = torch.nn.Linear(3, 2)
    key = fingerprint("step", x, model, {"steps": 10}, np.ones(3))
    assert key == fingerprint("step", x.clone(), model, {"steps": 10}, np.ones(3))
    changed = [
        fingerprint("step", x + 1e-6, model, {"steps": 10}, np.ones(3)),  # a value
        fingerprint("step", x.double(), model, {"steps": 10}, np.ones(3)),  # a dtype
        fingerprint("step", x.reshape(3, 2), model, {"steps": 10}, np.ones(3)),  # a shape
        fingerprint("step", x, torch.nn.Linear(3, 2), {"steps": 10}, np.ones(3)),  # the weights
        fingerprint("step", x, model, {"steps": 11}, np.ones(3)),  # a setting
        fingerprint("step", x, model, {"steps": 10}, np.ones(3, dtype=np.float32)),
        fingerprint("other", x, model, {"steps": 10}, np.ones(3)),
    ]
    assert len({key, *changed}) == 1 + len(changed)
    with torch.no_grad():
        model.weight[0, 0] += 1
    assert fingerprint("step", x, model, {"steps": 10}, np.ones(3)) != key
    # arrays of Python objects, item by item; bfloat16 and bool tensors, byte for byte
    names = np.array(["a", None, 1.5], dtype=object)
    assert (
        fingerprint(names)
        == fingerprint(names.copy())
        != fingerprint(np.array(["a", None, 2.5], dtype=object))
    )
    assert fingerprint(torch.ones(2, dtype=torch.bfloat16)) != fingerprint(torch.ones(2, dtype=torch.float16))
    assert fingerprint(torch.tensor([True, False])) != fingerprint(torch.tensor([False, True]))


def test_fingerprint_follows_module_settings_outside_the_state_dict():
    # nn.Dropout's p and nn.LeakyReLU's slope are plain attributes: state_dict is empty for both
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LeakyReLU(0.1), torch.nn.Dropout(0.2))
    other = copy.deepcopy(net)
    assert fingerprint(net) == fingerprint(other)
    other[1].negative_slope = 0.3
    assert fingerprint(net) != fingerprint(other)
    assert fingerprint(torch.nn.Dropout(0.2)) != fingerprint(torch.nn.Dropout(0.5))
    # the RBF SVM's gamma is a buffer: in the key, and restored by load_state_dict
    sv, alpha = torch.randn(4, 3), torch.randn(4)
    narrow, wide = RBFSVMModule(sv, alpha, 0.5, gamma=0.1), RBFSVMModule(sv, alpha, 0.5, gamma=0.2)
    assert fingerprint(narrow) != fingerprint(wide)
    assert fingerprint(narrow) == fingerprint(RBFSVMModule(sv.clone(), alpha.clone(), 0.5, gamma=0.1))
    x = torch.randn(5, 3, dtype=torch.float64)
    assert not torch.allclose(narrow.decision_function(x), wide.decision_function(x))
    wide.load_state_dict(narrow.state_dict())
    assert float(wide.gamma) == 0.1
    torch.testing.assert_close(wide.decision_function(x), narrow.decision_function(x), rtol=0, atol=0)


def test_cached_computes_once_and_recomputes_for_new_inputs(tmp_path, capsys):
    store = Checkpoints(tmp_path / "run")
    compute, calls = counting(lambda: {"x": torch.ones(3), "n": 7})
    first = store.cached("attack_cw", (torch.zeros(2),), compute)
    again = store.cached("attack_cw", (torch.zeros(2),), compute)
    assert len(calls) == 1 and again["n"] == 7 and torch.equal(again["x"], first["x"])
    assert "attack_cw: loaded, finished by an earlier run" in capsys.readouterr().out
    store.cached("attack_cw", (torch.ones(2),), compute)
    assert len(calls) == 2 and len(store.steps()) == 2
    assert all(name.startswith("attack_cw__") and name.endswith(".pt") for name in store.steps())
    store.clear()
    assert store.steps() == [] and not (tmp_path / "run").exists()


def test_off_computes_every_time_and_writes_nothing(tmp_path):
    store = Checkpoints(None)
    compute, calls = counting(lambda: 1)
    assert store.cached("step", (), compute) + store.cached("step", (), compute) == 2
    assert len(calls) == 2 and store.steps() == []
    store.clear()  # a no-op
    with pytest.raises(ValueError, match="checkpointing is off"):
        store.path("step", "key")


def test_a_damaged_file_is_computed_again(tmp_path, capsys):
    store = Checkpoints(tmp_path)
    store.cached("step", (1,), lambda: torch.ones(2))
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(b"not a checkpoint")
    value = store.cached("step", (1,), lambda: torch.zeros(2))
    assert torch.equal(value, torch.zeros(2)) and "could not read" in capsys.readouterr().out
    assert torch.equal(store.cached("step", (1,), lambda: torch.ones(2)), torch.zeros(2))  # rewritten


def test_a_failed_save_leaves_no_file(tmp_path):
    store = Checkpoints(tmp_path)
    with pytest.raises(Exception, match="lambda|pickle"):
        store.cached("step", (), lambda: {"f": lambda: 0})  # a lambda cannot be pickled
    assert list(tmp_path.iterdir()) == []


def test_bad_step_name():
    with pytest.raises(ValueError, match="step name"):
        Checkpoints("somewhere").path("attack/cw", "key")


def test_run_attacks_resumes_after_the_last_finished_attack(tmp_path, monkeypatch):
    model, x, y = subspace_pair(n=4)
    x = x.float()
    store = Checkpoints(tmp_path)
    reference = run_attacks(model, x, y, ["gradient", "fmn"], progress=False)

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(attack_evaluate, "run_foolbox_attack", killed)
        with pytest.raises(Killed):
            run_attacks(
                model, x, y, ["gradient", "fmn"], progress=False, checkpoints=store, checkpoint_tag="sym"
            )
    assert [name.split("__")[0] for name in store.steps()] == ["attack_sym_gradient"]

    gradient_calls = []
    original = attack_evaluate.L2ComponentGradientAttack.__call__

    def spy(self, *args, **kwargs):
        gradient_calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(attack_evaluate.L2ComponentGradientAttack, "__call__", spy)
    resumed = run_attacks(
        model, x, y, ["gradient", "fmn"], progress=False, checkpoints=store, checkpoint_tag="sym"
    )
    assert gradient_calls == []  # loaded, not attacked again
    assert [name.split("__")[0] for name in store.steps()] == ["attack_sym_fmn", "attack_sym_gradient"]
    np.testing.assert_array_equal(resumed.l2.numpy(), reference.l2.numpy())
    assert torch.equal(resumed.x_adv, reference.x_adv) and resumed.attack == reference.attack
    # Other attack settings are other inputs: the attack runs again.
    run_attacks(
        model,
        x,
        y,
        ["gradient"],
        progress=False,
        checkpoints=store,
        checkpoint_tag="sym",
        gradient_kwargs={"step_size": 0.02},
    )
    assert gradient_calls == [1]


def test_saving_the_result_deletes_the_runs_checkpoints(tmp_path):
    store = run_checkpoints("04_learned_classifiers", "celeba", "Smiling", "quick", 0)
    other = run_checkpoints("05_real_data", "celeba", "Smiling", "quick", 0)
    for each in (store, other):
        each.cached("step", (), lambda: 1)
    assert store.folder == tmp_path / "checkpoints" / "04_learned_classifiers__celeba__Smiling__quick__seed0"
    results.save_result("04_learned_classifiers", "celeba", "Smiling", "quick", 0, {}, tmp_path / "results")
    assert not store.folder.exists() and other.steps() != []  # only that run's folder goes


def test_train_classifiers_and_evaluate_models_resume(tmp_path, monkeypatch):
    tiny_data = make_tiny_data(make_tiny_models())
    store = Checkpoints(tmp_path)
    settings = {"seed": 1, "device": "cpu", "width": 4, "depth": 2, "epochs": 2, "svm_max_train": 50}
    settings |= {"gammas": (0.1, 1000.0), "progress": False}
    trained = ex.train_classifiers(
        tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, checkpoints=store, **settings
    )

    def evaluate(modules):
        return ex.evaluate_models(
            modules,
            tiny_data.x_test,
            tiny_data.y_test,
            IMAGE_SHAPE,
            attacks=["ddn"],
            n_attack=6,
            seed=1,
            device="cpu",
            progress=False,
            checkpoints=store,
        )

    first = evaluate(trained.modules)

    def never(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    for name in ("train_cnn", "select_gamma", "LinearSVM", "RBFSVM"):
        monkeypatch.setattr(ex, name, never)
    again = ex.train_classifiers(
        tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, checkpoints=store, **settings
    )
    assert again.gamma == trained.gamma and again.gamma_search == trained.gamma_search
    assert again.seconds == trained.seconds
    for name, module in trained.modules.items():
        for (key, value), (key2, value2) in zip(
            module.state_dict().items(), again.modules[name].state_dict().items(), strict=True
        ):
            assert key == key2 and torch.equal(value.cpu(), value2.cpu())
    monkeypatch.setattr(attack_evaluate, "run_foolbox_attack", never)
    second = evaluate(again.modules)
    for name in trained.modules:
        assert second.reports[name].to_dict() == first.reports[name].to_dict()


def test_bayes_classifier_checkpoint_keys_follow_the_mfas():
    model, x, y = subspace_pair(n=2)
    assert isinstance(model, BayesClassifier)
    key = fingerprint("attack", model, x, y)
    with torch.no_grad():
        model.mfas[0].mu += 1e-9
    assert fingerprint("attack", model, x, y) != key


def test_chapter3_resumes_from_its_checkpoints_and_saving_clears_them(tmp_path, monkeypatch):
    models = toy_models()
    kwargs = {"n_attack": 6, "attacks": ["gradient", "fmn"], "seed": 0, "device": "cpu", "progress": False}
    reference = rb.evaluate_bayes(models, "symmetric", resume=False, **kwargs)
    store = run_checkpoints(rb.CHAPTER, models.dataset, models.attribute, models.profile, 0)
    assert store.steps() == []  # resume=False keeps nothing

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(attack_evaluate, "run_foolbox_attack", killed)
        with pytest.raises(Killed):
            rb.evaluate_bayes(models, "symmetric", **kwargs)
    assert [name.split("__")[0] for name in store.steps()] == ["attack_symmetric_gradient"]

    calls = []
    original = attack_evaluate.L2ComponentGradientAttack.__call__
    monkeypatch.setattr(
        attack_evaluate.L2ComponentGradientAttack,
        "__call__",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )
    resumed = rb.evaluate_bayes(models, "symmetric", **kwargs)
    assert calls == []
    assert [name.split("__")[0] for name in store.steps()] == [
        "attack_symmetric_fmn",
        "attack_symmetric_gradient",
        "bounds_symmetric",
    ]
    np.testing.assert_array_equal(resumed.l2, reference.l2)
    np.testing.assert_array_equal(resumed.certified, reference.certified)
    np.testing.assert_array_equal(resumed.distances.other, reference.distances.other)
    check = rb.step_halving_check(resumed, "cpu", progress=False)  # attacks with half the step: kept too
    assert calls == [1] and rb.step_halving_check(resumed, "cpu", progress=False) == check and calls == [1]

    asymmetric = rb.evaluate_bayes(models, "asymmetric", **kwargs)
    rb.save_bayes_result(resumed, asymmetric, tmp_path / "results", step_halving=[check])
    assert store.steps() == [] and not store.folder.exists()


def test_figure8_sweeps_resume_point_by_point(tmp_path, monkeypatch):
    tiny_data = make_tiny_data(make_tiny_models())
    store = Checkpoints(tmp_path)
    kwargs = {"seed": 1, "device": "cpu", "attacks": ["ddn"], "n_attack": 4, "progress": False}
    kwargs |= {"train_sizes": (32,), "widths": (2,), "depths": (), "betas": (0.5,), "checkpoints": store}
    reference = ex.run_sweeps(tiny_data, None, **{**kwargs, "checkpoints": None})

    # Killed during the first point's attack: its trained CNN is kept, nothing else.
    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(attack_evaluate, "run_foolbox_attack", killed)
        with pytest.raises(Killed):
            ex.run_sweeps(tiny_data, None, **kwargs)
    assert [name.split("__")[0] for name in store.steps()] == ["sweep_train_size_32_train"]
    trained = []  # n_examples of each fit_classifier call: the width point's (None), not the kept one's (32)
    with monkeypatch.context() as patch:
        fit = ex.fit_classifier
        record = lambda *a, **k: trained.append(k.get("n_examples")) or fit(*a, **k)  # noqa: E731
        patch.setattr(ex, "fit_classifier", record)
        first = ex.run_sweeps(tiny_data, None, **kwargs)
    assert trained == [None]
    assert [name.split("__")[0] for name in store.steps()] == [
        "attack_sweep_trades_0.5_ddn",
        "attack_sweep_train_size_32_ddn",
        "attack_sweep_width_2_ddn",
        "sweep_trades_0.5",
        "sweep_trades_0.5_train",
        "sweep_train_size_32",
        "sweep_train_size_32_train",
        "sweep_width_2",
        "sweep_width_2_train",
    ]

    def never(*args, **kwargs):
        raise AssertionError("a finished sweep point ran again")

    for name in ("train_cnn", "fit_classifier", "evaluate_models"):
        monkeypatch.setattr(ex, name, never)
    again = ex.run_sweeps(tiny_data, None, **kwargs)
    for runs in (first, again):  # resumed or loaded, the same numbers as one run without checkpoints
        for name, points in reference.items():
            assert [p.report.to_dict() for p in runs[name]] == [p.report.to_dict() for p in points]
            assert [(p.value, p.test_accuracy) for p in runs[name]] == [
                (p.value, p.test_accuracy) for p in points
            ]


def test_table3_keeps_its_symmetric_data_cnn(tmp_path, monkeypatch):
    models = make_tiny_models()
    fresh = ex.symmetric_data(models, n_test_per_class=20, seed=7)
    x, y = fresh.x_test, fresh.y_test
    task = TaskData("celeba", "Male", x, y, x, y, IMAGE_SHAPE, ("not Male", "Male"), "tiny")
    real_cnn = ex.train_cnn(x, y, IMAGE_SHAPE, seed=1, device="cpu", width=4, depth=2, epochs=1)
    store = Checkpoints(tmp_path)
    first = ex.symmetric_vs_real(models, task, real_cnn, seed=1, device="cpu", checkpoints=store)
    assert [name.split("__")[0] for name in store.steps()] == ["train_symmetric_cnn"]
    monkeypatch.setattr(ex, "train_cnn", lambda *a, **k: pytest.fail("trained again"))
    assert ex.symmetric_vs_real(models, task, real_cnn, seed=1, device="cpu", checkpoints=store) == first


def test_a_checkpoint_follows_only_the_code_it_names(tmp_path, monkeypatch):
    versions = {"nbhelpers.attacks.evaluate": "0.1.0+aaa", "nbhelpers.classifier": "0.1.0+bbb"}
    monkeypatch.setattr(
        checkpoints_module, "source_version", lambda code: "|".join(versions[m] for m in code)
    )
    monkeypatch.setattr(checkpoints_module, "code_version", lambda: "0.1.0+whole")
    store = Checkpoints(tmp_path)
    compute, calls = counting(lambda: 1)
    code = ["nbhelpers.attacks.evaluate", "nbhelpers.classifier"]
    store.cached("attack", (), compute, code=code)
    store.cached("attack", (), compute)  # whole-package code: another key
    assert len(calls) == 2
    monkeypatch.setattr(checkpoints_module, "code_version", lambda: "0.1.0+edited-elsewhere")
    store.cached("attack", (), compute, code=code)
    assert len(calls) == 2  # an edit outside the named code keeps the checkpoint
    versions["nbhelpers.classifier"] = "0.1.0+ccc"
    store.cached("attack", (), compute, code=code)
    assert len(calls) == 3


def test_command_line_lists_and_clears_checkpoints(tmp_path, capsys):
    assert cli_main(["checkpoints"]) == 0
    assert "no checkpoints in" in capsys.readouterr().out
    kept = run_checkpoints("03_bayes_robustness", "celeba", "Bangs", "paper", 0)
    kept.cached("attack_symmetric_cw", (), lambda: torch.zeros(250_000))  # 1 MB
    kept.cached("attack_symmetric_gradient", (), lambda: torch.zeros(10))
    other = run_checkpoints("04_learned_classifiers", "mnist", "0_vs_6", "paper", 0)
    other.cached("train_cnn", (), lambda: 1)
    assert cli_main(["checkpoints"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  03_bayes_robustness__celeba__Bangs__paper__seed0  1.0 MB, 2 steps, last ")
    assert lines[2] == "    attack_symmetric_cw, attack_symmetric_gradient"
    assert lines[3].startswith("  04_learned_classifiers__mnist__0_vs_6__paper__seed0  0.0 MB, 1 steps")

    assert cli_main(["checkpoints", "--clear", "nothing__here"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoints of run(s) nothing__here" in err and "03_bayes_robustness__celeba__Bangs" in err
    assert kept.steps() and other.steps()  # a bad name deletes nothing
    twice = ["04_learned_classifiers__mnist__0_vs_6__paper__seed0"] * 2  # a run named twice is deleted once
    assert cli_main(["checkpoints", "--clear", *twice]) == 0
    assert not other.folder.exists() and kept.steps()
    assert cli_main(["checkpoints", "--clear"]) == 0
    out = capsys.readouterr().out
    assert "deleted 03_bayes_robustness__celeba__Bangs__paper__seed0" in out and "freed 1.0 MB" in out
    assert not kept.folder.exists()
