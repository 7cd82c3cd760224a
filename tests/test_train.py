"""The whole training path on a tiny model: data → fit → ensemble → ONNX → runtime → classify."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tipd.ensemble import Ensemble, decide  # noqa: E402
from tipd.models import ModelError, load_manifest  # noqa: E402
from tipd.synth.generate import GENERATOR  # noqa: E402
from tipd.train.data import Dataset  # noqa: E402
from tipd.train.metrics import auroc, balanced_accuracy, choose_thresholds  # noqa: E402
from tipd.train.nets import build, macs  # noqa: E402


def test_manifest_lists_verified_files_and_the_onnx_check(tiny_model: Path) -> None:
    m = load_manifest(tiny_model)
    assert m.surface == "hsi100" and m.classes == ["atoms", "dimers", "rows", "generic_defect"]
    # the best 3 candidates, all kept under the stacked vote (whatever their weight in the
    # weighted mean), then the tip-change net
    assert m.training["vote"]["method"] == "stacked"
    assert m.extra == ["tip_change"] and len(m.members) == 4
    assert m.training["left_out_with_vote_weight_0"] == []
    assert m.members[-1].name == "tip_change_net" and m.members[-1].vote_weight is None
    weights = [e.vote_weight for e in m.members[:-1]]
    assert all(w is not None and w >= 0 for w in weights) and sum(weights) == pytest.approx(1)
    assert m.training["onnx_vs_torch_max_abs_diff"] < 1e-4
    assert set(m.thresholds) == set(m.labels)
    assert "Ensemble" in m.metrics["table"] and "RFC" in m.metrics["table"]
    assert (tiny_model.parent / "reports" / "hsi100-roc-pr.png").is_file()
    # the report says what the stacked vote reads
    assert m.training["vote"]["features"] == "logits+hidden"
    text = (tiny_model.parent / "reports" / "hsi100.md").read_text()
    assert "over every member's logits and hidden features, fitted on" in text
    # which generator rendered the frames: training's and the held-out test's
    assert m.training["generator"] == GENERATOR["hsi100"]
    assert f"on frames of synthetic-frame generator {GENERATOR['hsi100']}" in text
    assert f"Test frames: {m.training['test']} of generator 1, " in text


def test_runtime_votes_are_the_stacked_vote_the_manifest_records(tiny_model: Path) -> None:
    from tipd.train.export import Fused
    from tipd.train.onnx_weights import load_member
    from tipd.train.stack import Stack, stacked

    ens = Ensemble(tiny_model)
    assert ens.provider == "CPUExecutionProvider"  # no GPU here, and no loader noise
    assert ens.channels == ("height",)
    x = np.random.default_rng(0).uniform(-1, 1, (5, 1, 128, 128)).astype(np.float32)
    out = ens.run(x)
    voting = ens.manifest.members[:-1]  # the last is the tip-change net
    assert out.members.shape == (5, len(voting), 4) and out.voted.shape == (5, 5)
    vote = ens.manifest.training["vote"]
    assert vote["method"] == "stacked" and vote["mirror"] is True
    assert vote["frames"] == "tipd synth hsi100 seed 4 frames 0..63"
    assert vote["features"] == "logits+hidden" and vote["n_hidden"] > 0
    stack = Stack(np.array(vote["coef"]), np.array(vote["intercept"]), vote["n_hidden"])
    # the hidden features from the member files alone, as the manifest names them
    nets = [load_member(tiny_model / m.file, m.family, len(m.labels), m.width, x) for m in voting]
    fused = Fused(nets, [], np.full(4, 0.5), stack=stack, mirror=True).eval()
    with torch.no_grad():
        logits, hidden = (v.numpy() for v in fused.member_views(torch.from_numpy(x)))
    assert hidden.shape == (5, vote["n_hidden"])
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), out.members, atol=1e-5)
    np.testing.assert_allclose(
        out.voted[:, :4], stacked(stack, logits.transpose(1, 0, 2), hidden), atol=1e-4
    )
    mirrored = ens.run(np.ascontiguousarray(x[..., ::-1]))
    np.testing.assert_allclose(mirrored.voted, out.voted, atol=1e-5)
    assert ((out.voted >= 0) & (out.voted <= 1)).all()
    d = decide(ens.manifest, out.voted[0], out.members[0])
    assert d.state in [*ens.manifest.classes, "unknown"] and 0 <= d.bad <= 1
    assert set(d.members) == {m.name for m in voting}


def test_revote_builds_the_vote_again_and_leaves_the_nets(
    tiny_model: Path, tmp_path: Path, tipd_exe: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tipd revote`` with the weighted mean, no mirror: the old vote, on the same members,
    here after the generator changed since the model was trained."""
    from tipd.train.fuse import VoteSettings
    from tipd.train.provenance import synth_source
    from tipd.train.revote import revote

    out, reports = tmp_path / "weighted", tmp_path / "reports"
    before = load_manifest(tiny_model)
    monkeypatch.setitem(GENERATOR, "hsi100", before.training["generator"] + 1)
    after = revote(
        tiny_model, out, reports, VoteSettings(stacked=False, mirror=False), 64, 1, lambda _: None
    )
    assert load_manifest(out) == after and load_manifest(tiny_model) == before  # a copy
    assert after.members == before.members and after.graph.sha256 != before.graph.sha256
    assert after.training["vote"]["method"] == "weighted_mean"
    assert after.training["vote"]["coef"] is None
    assert after.training["revote"]["by"] == "tipd revote"
    assert after.training["revote"]["generator"] == before.training["generator"] + 1
    assert after.metrics["table"]["RFC"] == before.metrics["table"]["RFC"]  # not re-measured
    text = (reports / "hsi100.md").read_text()
    assert "built again by `tipd revote`" in text
    # the report says which of Table I's columns are on the earlier generator's frames
    old, new = before.training["generator"], before.training["generator"] + 1
    assert (
        f"VGG (batch norm), RW, RFC, Random: measured when the model was trained, "
        f"on the frames of generator {old}; this report's Ensemble on those of generator {new}."
    ) in text.replace("\n", " ")
    ens = Ensemble(out)
    x = np.random.default_rng(3).uniform(-1, 1, (4, 1, 128, 128)).astype(np.float32)
    run = ens.run(x)
    weights = np.array([m.vote_weight for m in after.members[:-1]])
    np.testing.assert_allclose(run.voted[:, :4], (weights / weights.sum()) @ run.members, atol=1e-4)
    for bad_out in (tmp_path, tiny_model.parent, reports):  # holds the model, or is no model
        with pytest.raises(ValueError, match="holds"):
            revote(tiny_model, bad_out, None, VoteSettings(), 64, 1, lambda _: None)
    assert load_manifest(tiny_model) == before and (reports / "hsi100.md").is_file()
    assert synth_source("tipd synth au111 seed 3 frames 0..1999", "au111") == (3, 2000)
    with pytest.raises(ValueError, match="not synthetic"):
        synth_source("/data/lab-scans", "au111")
    bad = subprocess.run(
        [*tipd_exe, "revote", "--model", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no model" in bad.stderr


def test_a_changed_model_file_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(tiny_model, copy)
    graph = copy / "ensemble.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="sha256"):
        Ensemble(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="invalid manifest"):
        load_manifest(copy)


def test_classify_json_lines_and_errors(
    tiny_model: Path, tmp_path: Path, tipd_exe: list[str]
) -> None:
    good = tmp_path / "scan.npy"
    np.save(good, np.random.default_rng(1).normal(0, 1e-10, (64, 64)))
    (tmp_path / "scan.json").write_text(json.dumps({"scan_size_nm": [10, 10]}))
    bad = tmp_path / "broken.sxm"
    bad.write_bytes(b"nothing here")
    run = subprocess.run(
        [*tipd_exe, "classify", str(good), str(bad), "--model", str(tiny_model), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr  # one file failed, the other was still classified
    first, second = (json.loads(line) for line in run.stdout.splitlines())
    assert first["path"] == str(good) and first["model"] == "tiny" and first["channel"] == "z"
    assert set(first["classes"]) == {"atoms", "dimers", "rows", "generic_defect", "tip_change"}
    assert first["state"] in [*first["classes"], "unknown"]
    assert isinstance(first["desirable"], bool) and 0 <= first["bad"] <= 1
    assert 0 <= first["tip_change"] <= 1
    assert second["path"] == str(bad) and "SCANIT_END" in second["error"]


def test_paper_width_squeezenet_is_about_one_gmac() -> None:
    assert 0.9e9 < macs(build("squeeze", 4, 1.0)) < 1.1e9
    assert macs(build("squeeze", 4, 0.125)) < 30e6


def test_metrics_on_known_cases() -> None:
    truth = np.array([0, 0, 1, 1])
    assert auroc(truth, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc(truth, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auroc(truth, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    y = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    t = choose_thresholds(np.repeat(y, 5, axis=0), np.repeat(y * 0.9 + 0.05, 5, axis=0))
    assert (t <= 0.9).all() and (t >= 0.5).all()

    class D:
        pass

    ds = D()
    ds.y, ds.primary = y.astype(np.float32), np.array([0, 0, 1, 1, 2, 2])  # type: ignore[attr-defined]
    perfect = y * 0.8 + 0.1
    assert balanced_accuracy(ds, perfect) == 1.0  # type: ignore[arg-type]


def _labelled_folder(data: Path, classes: tuple[str, ...], n: int) -> Path:
    """``n`` H:Si scans of each class as a lab would file them: ``data/<class>/*.npy`` with
    a sidecar giving the scan size."""
    from tipd.synth import generate

    for k, cls in enumerate(classes):
        (data / cls).mkdir(parents=True)
        for i in range(n):
            f = generate("hsi100", 100 * k + i, seed=77, cls=cls, pixels=64)
            np.save(data / cls / f"f{i}.npy", f.heights_m)
            (data / cls / f"f{i}.json").write_text(json.dumps({"scan_size_nm": [10, 10]}))
    return data


def test_evaluate_any_ensemble_on_a_labelled_folder(tiny_model: Path, tmp_path: Path) -> None:
    from tipd.train.evaluate import evaluate

    data = _labelled_folder(tmp_path / "labelled", ("atoms", "rows", "generic_defect"), 3)
    report = evaluate(str(tiny_model), tmp_path / "reports", data=data)
    text = report.read_text()
    first = load_manifest(tiny_model).members[0]
    assert "| AUROC |" in text and "Ensemble" in text
    assert f"{first.name} (vgg_bn, width 0.0625" in text and "vote weight" in text
    assert (tmp_path / "reports" / "tiny-labelled-confusion.png").is_file()


def test_members_of_weight_0_are_left_out_of_the_weighted_mean_only() -> None:
    from tipd.train.pipeline import kept_members

    weights = np.array([0.75, 0.0, 0.25])
    assert kept_members(weights, stacked=False).tolist() == [True, False, True]
    assert kept_members(weights, stacked=True).tolist() == [True, True, True]
    assert kept_members(np.array([1.0]), stacked=False).tolist() == [True]


def test_a_net_ranked_twice_votes_once() -> None:
    """Candidates that went on from one net and kept it (``--init-from``) are one net."""
    from tipd.train.fit import Fitted, Recipe
    from tipd.train.pipeline import distinct_nets

    torch.manual_seed(0)
    start, other = build("vgg_bn", 4, 0.0625), build("vgg_bn", 4, 0.0625)
    copy = build("vgg_bn", 4, 0.0625)
    copy.load_state_dict(start.state_dict())
    nudged = build("vgg_bn", 4, 0.0625)
    nudged.load_state_dict(start.state_dict())
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-6  # one weight moved: another net

    def fitted(name: str, net: torch.nn.Module) -> Fitted:
        return Fitted(name, Recipe(), net, ("a", "b", "c", "d"), 0.9, 0.9, 1, 1.0, 0)

    ranked = [fitted("a", start), fitted("b", copy), fitted("c", other), fitted("d", nudged)]
    kept, same = distinct_nets(ranked)
    assert [f.name for f in kept] == ["a", "c", "d"] and same == ["b"]


def test_a_few_labelled_scans_vote_with_the_weighted_mean(tmp_path: Path) -> None:
    """``tipd train --data``: the stacked vote would be fitted on the folder's validation split,
    here a handful of scans, so the weighted mean votes instead, and the manifest says so."""
    from tests.conftest import tiny_config
    from tipd.train.pipeline import train_surface

    classes = ("atoms", "dimers", "rows", "generic_defect")
    data = _labelled_folder(tmp_path / "lab", classes, 8)
    logs: list[str] = []
    cfg = tiny_config(tmp_path, "lab-model", data=data, member_seconds=2, trees=10)
    manifest = train_surface(cfg, log=logs.append)
    vote = manifest.training["vote"]
    assert vote["method"] == "weighted_mean" and vote["frames"] is None and vote["mirror"]
    assert any("fewer than 500" in line for line in logs)
    assert manifest.training["data"] == str(data) and manifest.training["n_train"] < 32
    assert manifest.training["generator"] is None  # a lab's scans: no generator
    out = Ensemble(tmp_path / "lab-model").run(np.zeros((2, 1, 128, 128), dtype=np.float32))
    voting = np.array([m.vote_weight for m in manifest.members if m.vote_weight is not None])
    np.testing.assert_allclose(out.voted[:, :4], (voting / voting.sum()) @ out.members, atol=1e-4)
    # under the weighted mean a member of weight 0 would change nothing: it is left out
    left_out = manifest.training["left_out_with_vote_weight_0"]
    assert (voting > 0).all() and len(voting) + len(left_out) == 3


def test_a_few_thousand_labelled_scans_stack_on_the_logits_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enough validation scans for the stacked vote, too few to weigh the nets' hidden
    features: it reads their logits only (the thresholds are lowered here, a folder of
    thousands of scans being too slow for the suite)."""
    from tests.conftest import tiny_config
    from tipd.train import pipeline

    monkeypatch.setattr(pipeline, "MIN_FOLDER_FRAMES", 2)
    classes = ("atoms", "dimers", "rows", "generic_defect")
    data = _labelled_folder(tmp_path / "lab", classes, 8)
    logs: list[str] = []
    cfg = tiny_config(tmp_path, "lab-model", data=data, member_seconds=2, trees=10)
    manifest = pipeline.train_surface(cfg, log=logs.append)
    vote = manifest.training["vote"]
    assert vote["method"] == "stacked" and vote["features"] == "logits" and vote["n_hidden"] == 0
    assert np.array(vote["coef"]).shape == (4 * len(manifest.members[:-1]), 4)
    assert any("logits only" in line and "fewer than 3000" in line for line in logs)
    report = (tmp_path / "reports" / "hsi100.md").read_text()
    assert "over every member's logits, fitted on" in report


def test_learning_rate_decays_with_whichever_limit_comes_first() -> None:
    from tipd.train.fit import Recipe, decayed_lr

    r = Recipe(lr=1e-2, lr_decay=0.05)
    assert decayed_lr(r, 0.0, 0.0) == pytest.approx(1e-2)
    assert decayed_lr(r, 1.0, 0.1) == pytest.approx(5e-4)
    # a slow first epoch (kernel search on a GPU) costs time, not the schedule's shape
    assert decayed_lr(r, 0.1, 0.5) == pytest.approx(1e-2 * 0.05**0.5)
    assert decayed_lr(r, 0.3, 2.0) == pytest.approx(5e-4)  # past the cap: no further decay


def test_training_device_is_named_or_refused() -> None:
    from tipd.train.fit import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no GPU"):
            resolve_device("cuda")


def test_train_cli_refuses_a_gpu_it_does_not_have(tmp_path: Path, tipd_exe: list[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cmd = [*tipd_exe, "train", "--surface", "au111", "--device", "cuda", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "sees no GPU" in proc.stderr
    assert not any(tmp_path.iterdir())


def _random_frames(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 2)) < 0.5).astype(np.float32)
    x = rng.uniform(-1, 1, (n, 1, 128, 128)).astype(np.float16)
    x[:, :, :64] += y[:, 0, None, None, None].astype(np.float16)  # something to learn
    return Dataset(x, y, y.argmax(axis=1), ("a", "b"), "random")


def _base_net(frames: Dataset, epochs: int) -> Any:
    """A tiny VGG-BN net fitted on ``frames`` (validated on them too)."""
    from tipd.train.fit import Recipe, fit

    recipe = Recipe(family="vgg_bn", width=0.0625, epochs=epochs, batch=32)
    return fit("base", recipe, frames, frames, log=lambda _: None)


def test_fewer_frames_than_a_batch_still_train() -> None:
    """A lab's folder may hold fewer scans than a batch: each epoch is then one step of all."""
    from tipd.train.fit import Recipe, fit
    from tipd.train.pipeline import same_net

    frames = _random_frames(10, 1)
    start = build("vgg_bn", 2, 0.0625)
    recipe = Recipe(family="vgg_bn", width=0.0625, epochs=1, batch=32)
    fitted = fit("few", recipe, frames, frames, log=lambda _: None, init=start)
    assert not same_net(fitted.model, start)
    assert fitted.history[0]["loss"] > 0  # the epoch saw frames


def test_a_fork_starts_from_the_trained_net_and_leaves_it_alone() -> None:
    from tipd.train.fit import Recipe, fit

    frames = _random_frames(64, 0)
    base = _base_net(frames, epochs=1)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    # a rate of zero trains nothing: the fork's weights are the base's (batch-norm running
    # statistics still move, so only the learnt parameters are compared)
    frozen = Recipe(family="vgg_bn", width=0.0625, epochs=1, batch=32, lr=0.0, optimizer="sgd")
    fork = fit("fork", frozen, frames, frames, log=lambda _: None, init=base.model)
    for (name, p), q in zip(fork.model.named_parameters(), base.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    scratch = fit("scratch", frozen, frames, frames, log=lambda _: None)
    assert not torch.equal(next(scratch.model.parameters()), next(base.model.parameters()))
    # training a fork for real changes the fork, never the net it started from
    fit(
        "moved",
        Recipe(family="vgg_bn", width=0.0625, epochs=1, batch=32),
        frames,
        frames,
        log=lambda _: None,
        init=base.model,
    )
    for k, v in base.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(RuntimeError, match="size mismatch"):
        fit(
            "wider",
            replace(frozen, width=0.125),
            frames,
            frames,
            log=lambda _: None,
            init=base.model,
        )


def test_the_tiny_ensemble_records_its_forks(tiny_model: Path) -> None:
    recipes = load_manifest(tiny_model).training["recipe"]
    assert recipes["vgg_bn_adam"]["start_from"] is None
    assert recipes["vgg_bn_rmsprop"]["start_from"] == "vgg_bn_adam"
    assert recipes["vgg_bn_sgd"]["start_from"] == "vgg_bn_rmsprop"  # a chain


def test_tipd_train_runs_the_recipe_each_shipped_model_records() -> None:
    """On the kind of device a shipped model was trained on, ``tipd train`` with the budget
    flags its manifest records (none: the device's defaults) runs the same candidates with the
    same width, frames, time caps and patience; and so did the run it went on from, if any."""
    from tipd.models import models_root
    from tipd.train.fuse import DEFAULT_VOTE
    from tipd.train.pipeline import Budget, TrainConfig, budget_for, candidates_for
    from tipd.train.provenance import synth_source

    def pin_budget(surface: str, training: dict[str, Any]) -> Budget:
        device = torch.device("cpu" if training["device"] == "cpu" else "cuda")
        flags = training.get("flags", {})
        budget = budget_for(TrainConfig(surface=surface, out=Path("x"), **flags), device)
        assert training["n_train"] == budget.n_train, surface
        assert training["member_seconds_cap"] == budget.member_seconds, surface
        assert training["patience"] == budget.patience, surface
        assert training["epochs_cap"] == budget.epochs, surface
        parent = (training.get("init_from") or {}).get("training")
        if parent is not None:
            pin_budget(surface, parent)
        return budget

    n_stack = TrainConfig(surface="au111", out=Path("x")).n_stack
    for surface in ("au111", "cu111", "hsi100", "generic"):
        training = load_manifest(models_root() / surface, verify=False).training
        budget = pin_budget(surface, training)
        vote = training["vote"]  # built by tipd revote, as tipd train builds it now
        assert vote["method"] == ("stacked" if DEFAULT_VOTE.stacked else "weighted_mean"), surface
        assert (vote["mirror"], vote["c"]) == (DEFAULT_VOTE.mirror, DEFAULT_VOTE.c), surface
        assert vote["features"] == ("logits+hidden" if DEFAULT_VOTE.hidden else "logits"), surface
        stack_seed, n = synth_source(vote["frames"], surface)
        assert stack_seed == synth_source(training["validation"], surface)[0] + 2, surface
        assert n == vote["n_frames"] == n_stack, surface
        for name, recipe in candidates_for(surface):
            want = {**recipe.to_dict(), "width": budget.width}
            got = training["recipe"][name]
            for key in ("family", "optimizer", "lr", "seed"):
                assert got[key] == want[key], (surface, name, key)
            assert got["width"] == want["width"], (surface, name)
            assert got.get("start_from") == want["start_from"], (surface, name)
            assert got["epochs"] == budget.epochs, (surface, name)


def test_budget_is_per_device_and_flags_override_it() -> None:
    from tipd.train.pipeline import TrainConfig, budget_for, default_budget

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert default_budget("generic", cpu).width == 0.125  # generic wants passes more than width
    assert default_budget("generic", gpu).width == 0.25
    assert (
        default_budget("hsi100", cpu).member_seconds < default_budget("au111", cpu).member_seconds
    )
    assert default_budget("au111", gpu).n_train > default_budget("au111", cpu).n_train
    cfg = TrainConfig(surface="au111", out=Path("x"), width=0.5, patience=2)
    b = budget_for(cfg, cpu)
    assert (b.width, b.patience) == (0.5, 2)
    assert (b.n_train, b.epochs) == (24000, 30)  # the rest from the CPU budget


def test_init_from_takes_the_width_of_the_net_it_goes_on_from() -> None:
    """`tipd train --surface generic --data DIR --init-from generic` on the CPU: the shipped
    generic nets are 0.25 wide, not the 0.125 generic trains at from scratch there."""
    from tipd.models import find, load_manifest
    from tipd.train.pipeline import TrainConfig, budget_for, candidate_recipes, plan_init

    cpu = torch.device("cpu")
    shipped = find("generic")
    cfg = TrainConfig(surface="generic", out=Path("x"), init_from=shipped)
    b = budget_for(cfg, cpu)
    voting = [m for m in load_manifest(shipped).members if m.vote_weight is not None]
    assert b.width == max(voting, key=lambda m: m.vote_weight or 0).width == 0.25
    candidates, _ = candidate_recipes(cfg, cpu, b)
    assert plan_init(shipped, "generic", candidates, list(load_manifest(shipped).classes)).roots
    narrow = TrainConfig(surface="generic", out=Path("x"), init_from=shipped, width=0.125)
    assert budget_for(narrow, cpu).width == 0.125  # --width still decides


def test_going_on_from_a_finished_net_keeps_it_unless_an_epoch_beats_it() -> None:
    from tipd.train.fit import Recipe, fit

    frames = _random_frames(128, 1)
    base = _base_net(frames, epochs=4)
    # training on flipped labels only makes the net worse on the true ones
    flipped = Dataset(frames.x, 1 - frames.y, frames.y.argmin(axis=1), frames.labels, "flipped")
    harm = Recipe(family="vgg_bn", width=0.0625, epochs=1, batch=32, lr=1e-2)
    kept = fit("kept", harm, flipped, frames, log=lambda _: None, init=base.model, init_counts=True)
    moved = fit("moved", harm, flipped, frames, log=lambda _: None, init=base.model)
    assert (kept.val_balanced_accuracy, kept.val_mean_auroc) == (
        base.val_balanced_accuracy,
        base.val_mean_auroc,
    )
    for (name, p), q in zip(kept.model.named_parameters(), base.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert moved.val_mean_auroc < base.val_mean_auroc


def test_the_autocorrelation_plane_is_computed_again_from_the_augmented_heights() -> None:
    """Training moves the heights (flips, pan, zoom, noise) and takes the autocorrelation of
    what it moved, as the daemon takes it of the frame it sees; the torch autocorrelation is
    :func:`tipd.preprocess.autocorrelation`."""
    from tipd.preprocess import autocorrelation as ac_numpy
    from tipd.train.data import augment, autocorrelation, synthetic

    channels = ("height", "autocorrelation")
    ds = synthetic("au111", 6, seed=5, size=64, workers=1, channels=channels)
    assert ds.channels == channels and ds.x.shape == (6, 2, 64, 64)
    assert ds.subset(np.arange(3)).channels == channels
    assert ds.columns(("double_tip",)).channels == channels
    x = torch.from_numpy(ds.x.astype(np.float32))
    u = x[:, 0].numpy()
    want = np.stack([ac_numpy(v) for v in u] + [ac_numpy(np.zeros_like(u[0]))])
    got = autocorrelation(torch.cat([x[:, 0], torch.zeros(1, 64, 64)])).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    gen, none = torch.Generator().manual_seed(0), torch.zeros(6, dtype=torch.bool)
    out = augment(x, none, gen, False, channels=channels)
    assert out.shape == x.shape and not torch.allclose(out[:, 0], x[:, 0], atol=1e-2)
    recomputed = np.stack([ac_numpy(v) for v in out[:, 0].numpy()])
    np.testing.assert_allclose(out[:, 1].numpy(), recomputed, atol=1e-4)
    # the order of the planes is the model's
    swapped = augment(x.flip(1), none, gen, False, channels=channels[::-1])
    recomputed = np.stack([ac_numpy(v) for v in swapped[:, 1].numpy()])
    np.testing.assert_allclose(swapped[:, 0].numpy(), recomputed, atol=1e-4)
    with pytest.raises(ValueError, match="recomputed from the heights"):
        augment(x[:, 1:], none, gen, False, channels=channels[1:])
    with pytest.raises(ValueError, match="a batch of 2 planes"):
        augment(x, none, gen, False)
    # and a net trains on such planes
    from tipd.train.fit import Recipe, fit, predict

    recipe = Recipe(family="vgg_bn", width=0.0625, epochs=1, batch=2, max_seconds=30)
    fitted = fit("two_planes", recipe, ds, ds, log=lambda _: None)
    assert predict(fitted.model, ds.x).shape == (6, len(ds.labels))


def test_a_model_is_judged_on_the_frames_of_its_generator_version(tiny_model: Path) -> None:
    """Generic frames of an earlier generator version are its atomic-scale frames, drawn as it
    drew them; a manifest's version is its revote's, else its training's, else 1."""
    from tipd.synth.generate import drawn_as, generate, generic_scale
    from tipd.train.data import synthetic
    from tipd.train.provenance import frames_version

    now = GENERATOR["generic"]
    old = synthetic("generic", 6, 3, 64, 1, version=2)
    atomic = [i for i in range(40) if generic_scale(3, i) == "atomic"][:6]
    assert "generator 2" in old.source and len(old) == 6
    assert old.pixel_nm is not None  # the atomic frames, in order: no survey scan among them
    sizes = [generate("generic", i, seed=3, pixels=64).scan_size_nm[0] / 64 for i in atomic]
    np.testing.assert_allclose(old.pixel_nm, sizes, rtol=1e-6)
    current = synthetic("generic", 6, 3, 64, 1, version=now)
    assert current.source == "tipd synth generic seed 3 frames 0..5"
    assert all(drawn_as("generic", now, 3, i) for i in range(6))
    with pytest.raises(ValueError, match="no longer drawn"):
        drawn_as("au111", GENERATOR["au111"] + 1, 3, 0)
    m = load_manifest(tiny_model)
    assert frames_version(m) == m.training["generator"]
    revoted = m.model_copy(update={"training": {**m.training, "revote": {"generator": 7}}})
    assert frames_version(revoted) == 7
    bare = m.model_copy(update={"training": {"data": m.training["data"]}})
    assert frames_version(bare) == 1
