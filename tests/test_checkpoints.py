"""Checkpoints: a chapter run killed half-way resumes after its last finished step, with the same numbers.

A step is ``Checkpoints.run(step, fn, **inputs)``: ``fn`` a module-level function, keyed by the function,
its named inputs and the code it runs (``step_key``); files are read back with
``torch.load(weights_only=True)`` and the allow-list ``safe_types``, so a planted file cannot run code.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import pickle
import shlex
import threading

import numpy as np
import pytest
import torch

from nbhelpers.chapters import ch3_bayes, ch4_learned, ch5_real, evaluation, learned
from nbhelpers.chapters.ids import BAYES, LEARNED, REAL
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.resultset import Result
from nbhelpers.chapters.steps import NO_CHECKPOINTS, UNTRACKED
from nbhelpers.runs import checkpoints as checkpoints_module
from nbhelpers.runs.checkpoints import Checkpoints, fingerprint, run_checkpoints, safe_types, step_key
from nbhelpers.runs.cli import main as cli_main
from nbhelpers.runs.results import save_result
from nbhelpers.science.attacks import AttackOutcome, run_attack, run_attacks
from nbhelpers.science.attacks.gradient import L2ComponentGradientAttack
from nbhelpers.science.bounds import SubspaceDistances
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.data import TaskData
from nbhelpers.science.models import CNN, LinearSVMModule, RBFSVMModule
from tests.test_classifier import subspace_pair
from tests.test_experiments import IMAGE_SHAPE, make_tiny_data, make_tiny_models
from tests.test_robustness import toy_models

#: Where the attacks call foolbox.
best_of = importlib.import_module("nbhelpers.science.attacks.best_of")
#: The attack iterations of the quick profile (what chapters 3-5 use on it).
QUICK_BUDGET = get_profile("quick").attacks.budget


class Killed(RuntimeError):
    """Stands for the process dying mid-run."""


def killed(*args, **kwargs):
    raise Killed


# Step functions: module-level, every input an argument. CALLS records each computation.
CALLS: list[object] = []


def make_record(n: int) -> dict:
    CALLS.append(n)
    return {"x": torch.ones(3), "n": n}


def count_up(n: int) -> torch.Tensor:
    """A tensor of the number of computations so far: shows whether a value was computed or loaded."""
    CALLS.append(n)
    return torch.full((2,), float(len(CALLS)))


def unpicklable() -> dict:
    CALLS.append(1)
    return {"f": lambda: 0}


def zeros(n: int) -> torch.Tensor:
    return torch.zeros(n)


def one() -> int:
    return 1


@pytest.fixture(autouse=True)
def no_calls_yet():
    CALLS.clear()
    yield
    CALLS.clear()


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
    # ... and so in the key of a step given the module
    assert step_key("train", learned.fit_cnn, {"model": net}) != step_key(
        "train", learned.fit_cnn, {"model": other}
    )
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


def test_step_key_follows_the_function_and_its_named_inputs_but_not_where_it_runs():
    x = torch.arange(4.0)
    key = step_key("attack", run_attack, {"x": x, "name": "ddn"})
    assert key == step_key("attack", run_attack, {"name": "ddn", "x": x.clone()})  # any order
    assert len(key) == 16 and int(key, 16) >= 0
    changed = [
        step_key("attack", run_attack, {"x": x + 1, "name": "ddn"}),  # an input's value
        step_key("attack", run_attack, {"x": x, "name": "fmn"}),  # a setting
        step_key("attack", run_attack, {"x": x, "name": "ddn", "batch_size": 8}),  # one more input
        step_key("attack", run_attacks, {"x": x, "name": "ddn"}),  # another function
        step_key("other", run_attack, {"x": x, "name": "ddn"}),  # another step
    ]
    assert len({key, *changed}) == 1 + len(changed)
    # where and how visibly a step runs does not change what it computes
    assert UNTRACKED == ("device", "progress")
    where = {"device": torch.device("cpu"), "progress": True}
    assert step_key("attack", run_attack, {"x": x, "name": "ddn", **where}) == key


def test_run_computes_once_and_recomputes_for_new_inputs(tmp_path, capsys):
    store = Checkpoints(tmp_path / "run")
    first = store.run("attack_cw", make_record, n=7)
    again = store.run("attack_cw", make_record, n=7)
    assert CALLS == [7] and again["n"] == 7 and torch.equal(again["x"], first["x"])
    assert "attack_cw: loaded, finished by an earlier run" in capsys.readouterr().out
    store.run("attack_cw", make_record, n=8)
    assert CALLS == [7, 8] and len(store.steps()) == 2
    assert all(name.startswith("attack_cw__") and name.endswith(".pt") for name in store.steps())
    store.clear()
    assert store.steps() == [] and not (tmp_path / "run").exists()


def test_off_computes_every_time_and_writes_nothing(tmp_path):
    store = Checkpoints(None)
    assert store.run("step", make_record, n=1)["n"] + store.run("step", make_record, n=1)["n"] == 2
    assert CALLS == [1, 1] and store.steps() == []
    store.clear()  # a no-op
    with pytest.raises(ValueError, match="checkpointing is off"):
        store.path("step", "key")
    assert NO_CHECKPOINTS.run("step", make_record, n=2)["n"] == 2 and CALLS == [1, 1, 2]
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_file_is_computed_again(tmp_path, capsys):
    store = Checkpoints(tmp_path)
    assert torch.equal(store.run("step", count_up, n=1), torch.ones(2))
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(b"not a checkpoint")
    value = store.run("step", count_up, n=1)
    assert torch.equal(value, torch.full((2,), 2.0)) and "could not read" in capsys.readouterr().out
    assert torch.equal(store.run("step", count_up, n=1), torch.full((2,), 2.0))  # rewritten, now loaded
    assert len(CALLS) == 2 and [p.name for p in tmp_path.iterdir()] == [path.name]


class Planted:
    """Unpickling this runs a shell command: what a file planted in the checkpoints folder could do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_planted_pickle_is_refused_not_run_and_the_step_is_computed(tmp_path, capsys, writer):
    store = Checkpoints(tmp_path / "run")
    marker = tmp_path / "planted-code-ran"
    path = store.path("train_cnn", step_key("train_cnn", count_up, {"n": 3}))
    path.parent.mkdir(parents=True)
    payload = {"cnn": Planted(f"touch {shlex.quote(str(marker))}")}

    def plant(where):
        if writer == "torch.save":
            torch.save(payload, where)
        else:
            where.write_bytes(pickle.dumps(payload, protocol=2))

    plant(path)

    value = store.run("train_cnn", count_up, n=3)
    assert not marker.exists()  # refused before anything in it was built
    assert torch.equal(value, torch.ones(2)) and CALLS == [3]  # computed instead
    out = capsys.readouterr().out
    assert "train_cnn: could not read" in out and "computing it again" in out
    assert torch.equal(Checkpoints.load(path), torch.ones(2))  # the step's own value replaced the file
    assert torch.equal(store.run("train_cnn", count_up, n=3), torch.ones(2)) and CALLS == [3]

    # The plant was real: an unrestricted load would have run it.
    again = tmp_path / "again.pt"
    plant(again)
    with pytest.raises(pickle.UnpicklingError):
        Checkpoints.load(again)
    assert not marker.exists()
    if writer == "torch.save":
        torch.load(again, weights_only=False)
    else:
        pickle.loads(again.read_bytes())
    assert marker.exists()


def test_a_step_function_that_is_not_module_level_is_refused(tmp_path):
    store = Checkpoints(tmp_path)
    n = 3

    def nested() -> int:
        return 1

    def closure() -> int:
        return n

    refused = [lambda: 1, nested, closure, functools.partial(make_record, n=1)]
    for fn in refused:
        for steps in (store, Checkpoints(None), NO_CHECKPOINTS):
            with pytest.raises(ValueError, match="must be a module-level function taking every input"):
                steps.run("step", fn)
    assert CALLS == [] and list(tmp_path.iterdir()) == []  # nothing computed, nothing written


def test_a_step_function_outside_the_package_is_keyed_by_its_own_code(tmp_path, monkeypatch):
    store = Checkpoints(tmp_path)
    store.run("step", make_record, n=1)
    store.run("step", make_record, n=1)
    assert CALLS == [1]
    monkeypatch.setattr(checkpoints_module, "_own_source", lambda fn: "def make_record(n): edited")
    store.run("step", make_record, n=1)
    assert CALLS == [1, 1]  # its code changed: computed again
    monkeypatch.setattr(checkpoints_module, "code_version", lambda: "0.1.0+edited")
    store.run("step", make_record, n=1)
    assert CALLS == [1, 1, 1]  # it may call any of the package: an edit there recomputes too


def test_a_failed_save_leaves_no_file(tmp_path):
    store = Checkpoints(tmp_path)
    with pytest.raises(Exception, match="lambda|pickle"):
        store.run("step", unpicklable)  # a lambda cannot be pickled
    assert CALLS == [1] and list(tmp_path.iterdir()) == []


def test_bad_step_name():
    with pytest.raises(ValueError, match="step name"):
        Checkpoints("somewhere").path("attack/cw", "key")


def test_every_kind_of_value_the_chapters_steps_return_round_trips(tmp_path):
    """What the steps of chapters 3-5 return, saved and loaded through the allow-list, unchanged."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 16)).astype(np.float32)
    y = np.arange(40) % 2
    sizes = get_profile("quick").models
    l2 = torch.tensor([0.5, float("inf"), 1.25], dtype=torch.float64)
    distances = SubspaceDistances(own=rng.random(3), other=rng.random(3) + 1)
    values = {
        "attack": AttackOutcome(torch.rand(3, 16), l2),  # run_attack
        "train_cnn": learned.fit_cnn_timed(  # train_classifiers' CNN and the sweeps' (Fitted)
            x, y, IMAGE_SHAPE, sizes=sizes, width=2, depth=2, epochs=1, seed=0, device="cpu"
        ),
        "train_symmetric_cnn": CNN(IMAGE_SHAPE, 2, 2, seed=1),  # ch5_real's fit_cnn: a bare CNN
        "train_linear_svm": learned.fit_linear_svm(x, y, device="cpu"),
        "train_rbf_svm": learned.fit_rbf_svm(x, y, gammas=(0.1, 1.0), device="cpu"),
        "bounds_symmetric": (rng.random(3), distances),  # ch3_bayes.symmetric_bounds
        "step_halving": l2,  # ch3_bayes.gradient_attack_l2
    }
    assert isinstance(values["train_cnn"].module, CNN) and values["train_cnn"].module.history_["loss"]
    assert isinstance(values["train_linear_svm"].module, LinearSVMModule)
    assert isinstance(values["train_rbf_svm"].module, RBFSVMModule) and values["train_rbf_svm"].gamma_search
    probe = torch.as_tensor(x[:5])
    for name, value in values.items():
        path = tmp_path / f"{name}.pt"
        Checkpoints.save(path, value)
        loaded = Checkpoints.load(path)
        assert type(loaded) is type(value), name
        if isinstance(value, AttackOutcome):
            assert torch.equal(loaded.x_adv, value.x_adv) and torch.equal(loaded.l2, value.l2)
        elif isinstance(value, learned.Fitted):
            assert type(loaded.module) is type(value.module) and loaded.seconds == value.seconds
            assert loaded.gamma_search == value.gamma_search
            assert loaded.gamma == value.gamma or (np.isnan(loaded.gamma) and np.isnan(value.gamma))
            assert fingerprint(loaded.module) == fingerprint(value.module)  # weights and settings
            assert torch.equal(loaded.module.eval()(probe), value.module.eval()(probe))
            if isinstance(value.module, CNN):
                assert loaded.module.history_ == value.module.history_
        elif isinstance(value, CNN):
            assert fingerprint(loaded) == fingerprint(value)
            assert torch.equal(loaded(probe), value(probe))
        elif isinstance(value, tuple):
            np.testing.assert_array_equal(loaded[0], value[0])
            assert isinstance(loaded[1], SubspaceDistances)
            np.testing.assert_array_equal(loaded[1].own, distances.own)
            np.testing.assert_array_equal(loaded[1].other, distances.other)
        else:
            assert torch.equal(loaded, value) and loaded.dtype == torch.float64
    # the package's types are allowed by name; nothing else of the package is
    allowed = {t for t in safe_types() if isinstance(t, type) and t.__module__.startswith("nbhelpers")}
    assert allowed == {learned.Fitted, AttackOutcome, SubspaceDistances, CNN, LinearSVMModule, RBFSVMModule}


def test_attacks_resume_after_the_last_finished_attack(tmp_path, monkeypatch):
    model, x, y = subspace_pair(n=4)
    x = x.float()
    store = Checkpoints(tmp_path)
    reference = run_attacks(model, x, y, ["gradient", "fmn"], budget=QUICK_BUDGET, progress=False)

    def attack(**kwargs):
        return evaluation.attack_model(
            model, x, y, ["gradient", "fmn"], budget=QUICK_BUDGET, progress=False, checkpoints=store, **kwargs
        )

    with monkeypatch.context() as patch:
        patch.setattr(best_of, "run_foolbox_attack", killed)
        with pytest.raises(Killed):
            attack(tag="sym")
    assert [name.split("__")[0] for name in store.steps()] == ["attack_sym_gradient"]

    gradient_calls = []
    original = L2ComponentGradientAttack.__call__

    def spy(self, *args, **kwargs):
        gradient_calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(L2ComponentGradientAttack, "__call__", spy)
    resumed = attack(tag="sym")
    assert gradient_calls == []  # loaded, not attacked again
    assert [name.split("__")[0] for name in store.steps()] == ["attack_sym_fmn", "attack_sym_gradient"]
    np.testing.assert_array_equal(resumed.l2.numpy(), reference.l2.numpy())
    assert torch.equal(resumed.x_adv, reference.x_adv) and resumed.attack == reference.attack
    # Other attack settings are other inputs: the attack runs again.
    evaluation.attack_model(
        model,
        x,
        y,
        ["gradient"],
        budget=QUICK_BUDGET,
        progress=False,
        checkpoints=store,
        tag="sym",
        gradient_kwargs={"step_size": 0.02},
    )
    assert gradient_calls == [1]


def test_saving_the_result_deletes_the_runs_checkpoints(tmp_path):
    store = run_checkpoints(LEARNED, "celeba", "Smiling", "quick", 0)
    other = run_checkpoints(REAL, "celeba", "Smiling", "quick", 0)
    for each in (store, other):
        each.run("step", one)
    assert store.folder == tmp_path / "checkpoints" / "04_learned_classifiers__celeba__Smiling__quick__seed0"
    save_result(Result(LEARNED, "celeba", "Smiling", "quick", 0, {}), tmp_path / "results")
    assert not store.folder.exists() and other.steps() != []  # only that run's folder goes


def test_a_failing_cnn_raises_and_the_overlapped_svms_still_keep_their_checkpoints(tmp_path, monkeypatch):
    tiny_data = make_tiny_data(make_tiny_models())
    store = Checkpoints(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("CNN out of memory 4417")

    monkeypatch.setattr(learned, "fit_cnn", broken)
    settings = {"seed": 1, "device": "cpu", "svm_max_train": 50, "gammas": (0.1, 1000.0), "progress": False}
    with pytest.raises(RuntimeError, match="4417"):
        learned.train_classifiers(
            tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, checkpoints=store, overlap=True, **settings
        )
    for thread in threading.enumerate():  # the SVMs go on after the error and save what they fit
        if thread.name.startswith("svm-fits"):
            thread.join(timeout=120)
    assert sorted(name.split("__")[0] for name in store.steps()) == ["train_linear_svm", "train_rbf_svm"]


def test_train_classifiers_and_evaluate_models_resume(tmp_path, monkeypatch):
    tiny_data = make_tiny_data(make_tiny_models())
    store = Checkpoints(tmp_path)
    settings = {"seed": 1, "device": "cpu", "width": 4, "depth": 2, "epochs": 2, "svm_max_train": 50}
    settings |= {"gammas": (0.1, 1000.0), "progress": False}
    trained = learned.train_classifiers(
        tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, checkpoints=store, **settings
    )
    assert [name.split("__")[0] for name in store.steps()] == [
        "train_cnn",
        "train_linear_svm",
        "train_rbf_svm",
    ]

    def evaluate(modules):
        return evaluation.evaluate_models(
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

    # what the training steps run (the step functions themselves are part of the keys)
    for name in ("fit_cnn", "select_gamma", "LinearSVM", "RBFSVM"):
        monkeypatch.setattr(learned, name, never)
    again = learned.train_classifiers(
        tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, checkpoints=store, **settings
    )
    assert again.gamma == trained.gamma and again.gamma_search == trained.gamma_search
    assert again.seconds == trained.seconds
    for name, module in trained.modules.items():
        for (key, value), (key2, value2) in zip(
            module.state_dict().items(), again.modules[name].state_dict().items(), strict=True
        ):
            assert key == key2 and torch.equal(value.cpu(), value2.cpu())
    monkeypatch.setattr(best_of, "run_foolbox_attack", never)
    second = evaluate(again.modules)
    for name in trained.modules:
        assert second.reports[name].to_dict() == first.reports[name].to_dict()


def test_bayes_classifier_checkpoint_keys_follow_the_mfas():
    model, x, y = subspace_pair(n=2)
    assert isinstance(model, BayesClassifier)
    key = fingerprint("attack", model, x, y)
    step = step_key("attack", run_attack, {"model": model, "x": x, "y": y})
    with torch.no_grad():
        model.mfas[0].mu += 1e-9
    assert fingerprint("attack", model, x, y) != key
    assert step_key("attack", run_attack, {"model": model, "x": x, "y": y}) != step


def test_chapter3_resumes_from_its_checkpoints_and_saving_clears_them(tmp_path, monkeypatch):
    models = toy_models()
    kwargs = {"n_attack": 6, "attacks": ["gradient", "fmn"], "seed": 0, "device": "cpu", "progress": False}
    reference = ch3_bayes.evaluate_bayes(models, "symmetric", **kwargs)  # no checkpoints
    store = run_checkpoints(ch3_bayes.CHAPTER, models.dataset, models.attribute, models.profile, 0)
    assert ch3_bayes.CHAPTER == BAYES and store.steps() == []  # NO_CHECKPOINTS keeps nothing

    with monkeypatch.context() as patch:
        patch.setattr(best_of, "run_foolbox_attack", killed)
        with pytest.raises(Killed):
            ch3_bayes.evaluate_bayes(models, "symmetric", checkpoints=store, **kwargs)
    assert [name.split("__")[0] for name in store.steps()] == ["attack_symmetric_gradient"]

    calls = []
    original = L2ComponentGradientAttack.__call__
    monkeypatch.setattr(
        L2ComponentGradientAttack,
        "__call__",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )
    resumed = ch3_bayes.evaluate_bayes(models, "symmetric", checkpoints=store, **kwargs)
    assert calls == []
    assert [name.split("__")[0] for name in store.steps()] == [
        "attack_symmetric_fmn",
        "attack_symmetric_gradient",
        "bounds_symmetric",
    ]
    np.testing.assert_array_equal(resumed.l2, reference.l2)
    np.testing.assert_array_equal(resumed.certified, reference.certified)
    np.testing.assert_array_equal(resumed.distances.other, reference.distances.other)
    # attacks with half the step: kept too
    check = ch3_bayes.step_halving_check(resumed, "cpu", progress=False, checkpoints=store)
    assert calls == [1]
    assert ch3_bayes.step_halving_check(resumed, "cpu", progress=False, checkpoints=store) == check
    assert calls == [1]

    asymmetric = ch3_bayes.evaluate_bayes(models, "asymmetric", checkpoints=store, **kwargs)
    save_result(ch3_bayes.chapter3_result(resumed, asymmetric, [check]), tmp_path / "results")
    assert store.steps() == [] and not store.folder.exists()


def test_figure8_sweeps_resume_point_by_point(tmp_path, monkeypatch):
    tiny_data = make_tiny_data(make_tiny_models())
    store = Checkpoints(tmp_path)
    kwargs = {"seed": 1, "device": "cpu", "attacks": ["ddn"], "n_attack": 4, "progress": False}
    kwargs |= {"train_sizes": (32,), "widths": (2,), "depths": (), "betas": (0.5,), "checkpoints": store}
    reference = ch4_learned.run_sweeps(tiny_data, None, **{**kwargs, "checkpoints": NO_CHECKPOINTS})

    # Killed during the first point's attack: its trained CNN is kept, nothing else.
    with monkeypatch.context() as patch:
        patch.setattr(best_of, "run_foolbox_attack", killed)
        with pytest.raises(Killed):
            ch4_learned.run_sweeps(tiny_data, None, **kwargs)
    assert [name.split("__")[0] for name in store.steps()] == ["sweep_train_size_32_train"]
    trained = []  # n_examples of each fit_classifier call: the width point's (None), not the kept one's (32)
    with monkeypatch.context() as patch:

        def recorder(fit):
            return lambda *a, **k: trained.append(k.get("n_examples")) or fit(*a, **k)

        for module in (ch4_learned, learned):  # the train-size point's, and fit_cnn's
            patch.setattr(module, "fit_classifier", recorder(module.fit_classifier))
        first = ch4_learned.run_sweeps(tiny_data, None, **kwargs)
    assert trained == [None]
    # each point's trained CNN and its attacks (a point's clean accuracy is measured again: it is quick)
    assert [name.split("__")[0] for name in store.steps()] == [
        "attack_sweep_trades_0.5_ddn",
        "attack_sweep_train_size_32_ddn",
        "attack_sweep_width_2_ddn",
        "sweep_trades_0.5_train",
        "sweep_train_size_32_train",
        "sweep_width_2_train",
    ]

    def never(*args, **kwargs):
        raise AssertionError("a finished sweep point ran again")

    for module, name in ((learned, "fit_cnn"), (ch4_learned, "fit_cnn"), (ch4_learned, "fit_classifier")):
        monkeypatch.setattr(module, name, never)
    monkeypatch.setattr(learned, "fit_trades", never)
    monkeypatch.setattr(best_of, "run_foolbox_attack", never)
    again = ch4_learned.run_sweeps(tiny_data, None, **kwargs)
    for runs in (first, again):  # resumed or loaded, the same numbers as one run without checkpoints
        for name, points in reference.items():
            assert [p.report.to_dict() for p in runs[name]] == [p.report.to_dict() for p in points]
            assert [(p.value, p.test_accuracy) for p in runs[name]] == [
                (p.value, p.test_accuracy) for p in points
            ]


def test_table3_keeps_its_symmetric_data_cnn(tmp_path, monkeypatch):
    models = make_tiny_models()
    fresh = learned.symmetric_data(models, n_test_per_class=20, seed=7)
    x, y = fresh.x_test, fresh.y_test
    task = TaskData("celeba", "Male", x, y, x, y, IMAGE_SHAPE, ("not Male", "Male"), "tiny")
    real_cnn = learned.train_cnn(x, y, IMAGE_SHAPE, seed=1, device="cpu", width=4, depth=2, epochs=1)
    store = Checkpoints(tmp_path)
    first = ch5_real.symmetric_vs_real(models, task, real_cnn, seed=1, device="cpu", checkpoints=store)
    assert [name.split("__")[0] for name in store.steps()] == ["train_symmetric_cnn"]
    monkeypatch.setattr(learned, "fit_classifier", lambda *a, **k: pytest.fail("trained again"))
    again = ch5_real.symmetric_vs_real(models, task, real_cnn, seed=1, device="cpu", checkpoints=store)
    assert again == first


def test_a_checkpoint_follows_only_the_code_it_runs(tmp_path, monkeypatch):
    """A step's key holds the sources of its function's module (with what that imports) and of the modules
    defining the package objects it is given: an edit elsewhere keeps the checkpoint."""
    versions = {"nbhelpers.chapters.learned": "0.1.0+aaa", "nbhelpers.science.models.svm": "0.1.0+bbb"}
    monkeypatch.setattr(
        checkpoints_module, "source_version", lambda code: "|".join(versions[m] for m in code)
    )
    monkeypatch.setattr(checkpoints_module, "code_version", lambda: "0.1.0+whole")
    fits = []
    original = learned.LinearSVM
    monkeypatch.setattr(learned, "LinearSVM", lambda *a, **k: fits.append(1) or original(*a, **k))
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 4)), np.arange(20) % 2
    store = Checkpoints(tmp_path)
    store.run("train_linear_svm", learned.fit_linear_svm, x=x, y=y, device="cpu")
    store.run("train_linear_svm", learned.fit_linear_svm, x=x, y=y, device="cpu")
    assert len(fits) == 1
    monkeypatch.setattr(checkpoints_module, "code_version", lambda: "0.1.0+edited-elsewhere")
    versions["nbhelpers.science.models.svm"] = "0.1.0+ccc"  # not given an SVM: not its code
    store.run("train_linear_svm", learned.fit_linear_svm, x=x, y=y, device="cpu")
    assert len(fits) == 1  # an edit outside the code it runs keeps the checkpoint
    versions["nbhelpers.chapters.learned"] = "0.1.0+ddd"
    store.run("train_linear_svm", learned.fit_linear_svm, x=x, y=y, device="cpu")
    assert len(fits) == 2
    # a package object among the inputs brings its module's code into the key
    svm = RBFSVMModule(torch.randn(3, 4), torch.randn(3), 0.5, gamma=0.1)
    key = step_key("attack", learned.fit_linear_svm, {"model": svm})
    versions["nbhelpers.science.models.svm"] = "0.1.0+eee"
    assert step_key("attack", learned.fit_linear_svm, {"model": svm}) != key


def test_command_line_lists_and_clears_checkpoints(tmp_path, capsys):
    assert cli_main(["checkpoints"]) == 0
    assert "no checkpoints in" in capsys.readouterr().out
    kept = run_checkpoints(BAYES, "celeba", "Bangs", "paper", 0)
    kept.run("attack_symmetric_cw", zeros, n=250_000)  # 1 MB
    kept.run("attack_symmetric_gradient", zeros, n=10)
    other = run_checkpoints(LEARNED, "mnist", "0_vs_6", "paper", 0)
    other.run("train_cnn", one)
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


class _NotAllowed:
    """A type the checkpoints may not load back."""


def test_a_value_that_cannot_be_loaded_back_is_refused_at_save(tmp_path):
    with pytest.raises(TypeError, match="cannot load back safely"):
        Checkpoints.save(tmp_path / "step__key.pt", {"value": _NotAllowed()})
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left
