"""fit / load_fit: zero-shot generalisation on a synthetic family, no test leakage, resume, round-trip."""
import csv
import dataclasses
import json
import types

import numpy as np
import pytest
import torch

import hyperzero.training.trainer as fit_module
from hyperzero.datasets.splits import make_split
from hyperzero.envs import get_family
from hyperzero.models.config import ModelConfig
from hyperzero.models.registry import METHODS
from hyperzero.training import FitConfig, fit, load_fit
from hyperzero.training.data import ContextNormalizer, TaskSampler, context_noise_std
from hyperzero.training.synthetic import make_synthetic_dataset

SMALL = ModelConfig(embed_dims=(16, 32, 64), hidden_dim=64)


def quick(**kw) -> FitConfig:
    base = dict(steps=40, eval_interval=10, checkpoint_interval=10, log_interval=10, batch_size=64,
                tasks_per_batch=4, lr=1e-3, val_samples_per_task=64, model=SMALL)
    base.update(kw)
    return FitConfig(**base)


@pytest.fixture(scope="module")
def ds():
    return make_synthetic_dataset(n_tasks=12, ctx_dim=1, n_episodes=1, episode_length=50, seed=3)


def test_sampler_only_sees_train_tasks(ds, tmp_path, monkeypatch):
    seen_ids, seen_ctx = set(), []

    class Spy(TaskSampler):
        def __init__(self, tasks, *a, **kw):
            seen_ids.update(t.task_id for t in tasks)
            super().__init__(tasks, *a, **kw)

        def sample(self):
            b = super().sample()
            seen_ctx.append(b.context.clone())
            return b

    monkeypatch.setattr(fit_module, "TaskSampler", Spy)
    fit(ds, tmp_path, quick(seed=5), progress=False)
    split = make_split(ds.task_ids, 5, "paper", 0.15)
    assert seen_ids == set(split.train) and split.test and split.val
    norm = load_fit(tmp_path).normalizer
    allowed = {round(float(norm(t.context_vector)[0]), 5) for t in ds.tasks if t.task_id in split.train}
    used = {round(float(c), 5) for b in seen_ctx for c in b.reshape(-1)}
    assert len(seen_ctx) == 40 and used <= allowed
    assert json.load(open(tmp_path / "split.json"))["test"] == split.test
    info = json.load(open(tmp_path / "run_info.json"))
    assert info["split"]["test"] == split.test and info["seeds"]["split"] == 5


@pytest.mark.parametrize("unit", ["spacing", "bounds"])
def test_fit_scales_context_noise_by_its_unit(ds, tmp_path, unit):
    fit(ds, tmp_path, quick(context_noise=0.25, context_noise_unit=unit, steps=10), progress=False)
    tm = load_fit(tmp_path)
    train = np.array([tm.normalizer(t.context_vector)[0] for t in ds.tasks if t.task_id in tm.split.train])
    gaps = np.diff(np.unique(train))
    spacing = np.median(np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf]))
    effective = json.load(open(tmp_path / "run_info.json"))["effective"]
    expected = 0.25 * spacing if unit == "spacing" else 0.25
    assert effective["context_noise_std"] == {ds.context_names[0]: pytest.approx(expected, rel=1e-5)}
    assert tm.config.context_noise == 0.25 and tm.config.context_noise_unit == unit


def test_context_noise_std_follows_each_features_spacing():
    contexts = np.array([[0.0, 5.0], [0.1, 5.0], [0.3, 5.0], [0.7, 5.0], [0.7, 5.0]])
    # nearest-neighbour gaps of the distinct values 0, 0.1, 0.3, 0.7: 0.1, 0.1, 0.2, 0.4 -> median 0.15
    assert context_noise_std(contexts, 0.4, "spacing") == pytest.approx([0.06, 0.0])  # a shared feature gets none
    assert context_noise_std(contexts, 0.4, "bounds") == pytest.approx([0.4, 0.4])
    with pytest.raises(ValueError, match="unit"):
        context_noise_std(contexts, 0.4, "grid")


def test_sampler_context_noise_keeps_a_signed_features_sign(ds):
    ctx = np.array([[0.05, 0.0], [-0.05, 0.0], [0.5, 0.0]])  # a signed speed near its 0, and an unsigned feature
    def signs(origins):
        s = TaskSampler(ds.tasks[:3], ctx, 3, 6, 0, True, context_noise=1.0, sign_origins=origins)
        batches = [s.sample().context for _ in range(200)]
        return torch.stack([torch.sign(b) for b in batches]), torch.stack([torch.sign(torch.as_tensor(ctx))] * 200)
    drawn, clean = signs(np.array([0.0, np.nan]))
    assert torch.equal(torch.sort(drawn[:, :, 0], 1).values, torch.sort(clean[:, :, 0].float(), 1).values)
    assert (drawn[:, :, 1] < 0).any() and (drawn[:, :, 1] > 0).any()  # the unsigned feature is left as drawn
    drawn, clean = signs(None)
    assert not torch.equal(torch.sort(drawn[:, :, 0], 1).values, torch.sort(clean[:, :, 0].float(), 1).values)


def test_sign_origins_come_from_the_family():
    space = get_family("cheetah-run").context_space
    names = ["speed", "torso_length"]
    stub = types.SimpleNamespace(family="cheetah-run", context_names=names)
    origins = fit_module._sign_origins(stub, ContextNormalizer(names, "bounds", space.bounds(names)))
    assert origins[0] == pytest.approx(0.0) and np.isnan(origins[1])  # speed's 0 is the middle of ±10 m/s
    assert fit_module._sign_origins(types.SimpleNamespace(family="not-registered", context_names=names),
                                    ContextNormalizer(names, "raw")) is None


def test_sampler_refuses_held_out_tasks(ds):
    with pytest.raises(AssertionError, match="held-out"):
        TaskSampler(ds.tasks[:3], np.zeros((3, 1)), 2, 8, 0, True, forbidden=[ds.tasks[1].task_id])


def test_sampler_groups_by_task(ds):
    s = TaskSampler(ds.tasks[:6], np.arange(6.0)[:, None], 4, 64, 0, True)
    b = s.sample()
    assert b.obs.shape == (4, 16, 4) and b.context.shape == (4, 1) and len(set(b.context[:, 0].tolist())) == 4
    for k in range(4):  # every sample of group k comes from task context[k]
        task = ds.tasks[int(b.context[k, 0])]
        rows = {tuple(np.round(r, 5)) for r in task.obs.reshape(-1, 4)}
        assert all(tuple(np.round(r, 5)) in rows for r in b.obs[k].numpy())


def test_sampler_context_noise_perturbs_contexts_not_samples(ds):
    ctx = 100.0 * np.arange(6.0)[:, None]  # far apart, so a noisy context still names its task
    clean, noisy = (TaskSampler(ds.tasks[:6], ctx, 4, 64, 0, True, context_noise=std) for std in (0.0, 0.5))
    a, b = clean.sample(), noisy.sample()
    assert torch.equal(a.obs, b.obs) and torch.equal(a.action, b.action)  # noise is drawn after the samples
    offsets = []
    for _ in range(200):
        context = noisy.sample().context
        offsets.append(context - 100.0 * torch.round(context / 100.0))
    offsets = torch.cat(offsets).reshape(-1)
    assert abs(float(offsets.mean())) < 0.1 and 0.4 < float(offsets.std()) < 0.6  # N(0, 0.5²), 800 draws


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _interrupt_at(step):
    """A fit callback that kills the fit at `step` (before that step's checkpoint is written)."""
    def callback(s, metrics):
        if s == step:
            raise KeyboardInterrupt
    return callback


def test_resume_after_interruption_continues_from_checkpoint(ds, tmp_path):
    cfg = quick(method="hyperzero", seed=1)
    fit(ds, tmp_path / "a", cfg, progress=False)

    with pytest.raises(KeyboardInterrupt):
        fit(ds, tmp_path / "b", cfg, progress=False, callbacks=[_interrupt_at(25)])
    assert not (tmp_path / "b" / "done.json").exists()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["state"]["step"] == 20
    steps_after = []
    fit(ds, tmp_path / "b", cfg, progress=False, callbacks=[lambda s, m: steps_after.append(s)])
    assert steps_after == list(range(21, 41))     # continued, did not restart
    wa, wb = _weights(tmp_path / "a" / "model.pt"), _weights(tmp_path / "b" / "model.pt")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    rows = list(csv.DictReader(open(tmp_path / "b" / "progress.csv")))
    train_steps = [r["step"] for r in rows if r.get("train/loss")]
    assert train_steps == ["10", "20", "30", "40"]
    # a finished fit is not retrained
    before = (tmp_path / "b" / "model.pt").stat().st_mtime_ns
    fit(ds, tmp_path / "b", cfg, progress=False, callbacks=[_interrupt_at(25)])
    assert (tmp_path / "b" / "model.pt").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="finished fit with a different config"):
        fit(ds, tmp_path / "b", dataclasses.replace(cfg, lr=3e-3), progress=False)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_continued_sweep_fit_is_the_fresh_fit_of_its_learning_rate(ds, tmp_path, method):
    # every method: its RNG use (MAML's support sets, PEARL's latents) must resume exactly as well
    cfg = quick(method=method, seed=1, lr_sweep=[1e-6, 3e-3], lr_sweep_steps=20, selection="val_loss",
                batch_size=256, device="cpu")
    fit(ds, tmp_path / "swept", cfg, progress=False)
    assert json.load(open(tmp_path / "swept" / "lr_sweep.json"))["continued_from"] == "lr_sweep/lr_0.003"
    fit(ds, tmp_path / "fresh", dataclasses.replace(cfg, lr=3e-3, lr_sweep=[], lr_sweep_steps=0), progress=False)
    swept, fresh = _weights(tmp_path / "swept" / "model.pt"), _weights(tmp_path / "fresh" / "model.pt")
    assert all(torch.equal(swept[k], fresh[k]) for k in fresh)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_fit_on_cuda_resumes_and_continues_its_sweep_fit(ds, tmp_path):
    cfg = quick(method="hyperzero", seed=1, device="cuda", lr_sweep=[1e-6, 3e-3], lr_sweep_steps=20,
                selection="val_loss")

    with pytest.raises(KeyboardInterrupt):
        fit(ds, tmp_path / "b", cfg, progress=False, callbacks=[_interrupt_at(30)])
    fit(ds, tmp_path / "b", cfg, progress=False)   # resumes the final fit, which continued its sweep fit
    assert json.load(open(tmp_path / "b" / "lr_sweep.json"))["continued_from"] == "lr_sweep/lr_0.003"
    fit(ds, tmp_path / "a", dataclasses.replace(cfg, lr=3e-3, lr_sweep=[], lr_sweep_steps=0), progress=False)
    wa, wb = _weights(tmp_path / "a" / "model.pt"), _weights(tmp_path / "b" / "model.pt")
    # the same kernels on the same GPU; allclose, not equal, since cuBLAS may pick another algorithm per call
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_resume_with_other_config_is_refused(ds, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        fit(ds, tmp_path, quick(), progress=False, callbacks=[lambda s, m: (_ for _ in ()).throw(KeyboardInterrupt)])
    with pytest.raises(ValueError, match="different config"):
        fit(ds, tmp_path, quick(lr=5e-4), progress=False)


def test_save_load_round_trip_and_selection(ds, tmp_path):
    fit(ds, tmp_path, quick(method="mlp_uvfa_td", td_gamma=None), progress=False)
    tm = load_fit(tmp_path)
    assert tm.method == "mlp_uvfa_td" and tm.has_q and not tm.is_meta and tm.context_names == ["c0"]
    assert tm.config.model.gamma == pytest.approx(ds.gamma)       # TD discount = the dataset's γ
    done = json.load(open(tmp_path / "done.json"))
    best = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    for k, v in tm.model.state_dict().items():                    # model.pt is the best-validation weights
        assert torch.equal(v, best[k]), k
    assert done["selected"] == "best" and done["best_step"] > 0
    assert tm.normalize_context({"c0": 2.0})[0] == pytest.approx(1.0)
    assert tm.normalize_context({"c0": -1.0})[0] == pytest.approx(-0.5)
    obs = ds.tasks[0].obs[0]
    a1 = tm.policy(ds.tasks[0].context).act(obs)
    a2 = load_fit(tmp_path).policy({"c0": float(ds.tasks[0].context_vector[0]), "other": 1}).act(obs)
    np.testing.assert_array_equal(a1, a2)
    assert tm.policy(ds.tasks[0].context).q(obs, a1).shape == (obs.shape[0],)
    with pytest.raises(ValueError, match="lacks features"):
        tm.policy({"speed": 1.0})
    with pytest.raises(NotImplementedError):
        tm.adapt(ds.tasks[0].context, {"obs": obs, "action": a1, "reward": obs[:, 0], "next_obs": obs})


def test_authors_td_discount_option(ds, tmp_path):
    fit(ds, tmp_path, quick(method="hyperzero", td_gamma=1.0, steps=10), progress=False)
    info = json.load(open(tmp_path / "run_info.json"))
    assert info["effective"]["td_gamma"] == 1.0 and load_fit(tmp_path).config.model.gamma == 1.0


@pytest.mark.parametrize("bad, match", [(dict(method="nope"), "unknown method"), (dict(protocol="x"), "protocol"),
                                        (dict(batch_size=4, tasks_per_batch=8), "batch_size"),
                                        (dict(context_norm="zscore"), "context_norm"), (dict(td_gamma=2.0), "td_gamma"),
                                        (dict(context_noise=-0.1), "context_noise"),
                                        (dict(context_noise_unit="grid"), "context_noise_unit")])
def test_bad_config_names_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        FitConfig(**bad).check()


def test_bounds_normalisation_needs_known_bounds(ds, tmp_path):
    other = dataclasses.replace(ds, family="unknown-family", manifest={})
    with pytest.raises(ValueError, match="context-norm raw"):
        fit(other, tmp_path, quick(), progress=False)


def test_value_targets_are_scaled_by_the_train_tasks_mean_abs_q(ds, tmp_path):
    fit(ds, tmp_path, quick(method="mlp_uvfa_td", seed=2, steps=10), progress=False)
    tm = load_fit(tmp_path)
    train = [t for t in ds.tasks if t.task_id in tm.split.train]
    kappa = 1.0 / np.mean(np.abs(np.concatenate([t.q.ravel() for t in train])))
    info = json.load(open(tmp_path / "run_info.json"))
    assert info["effective"]["value_scale"] == pytest.approx(kappa, rel=1e-6)
    assert tm.config.model.value_scale == pytest.approx(kappa, rel=1e-6)
    # the network learns κ q*; the policy's q() answers in the experts' units
    t = ds.tasks[0]
    obs, act = torch.as_tensor(t.obs[0, :5]), torch.as_tensor(t.action[0, :5])
    ctx = torch.as_tensor(tm.normalize_context(t.context))[None]
    inner = tm.model.generate(ctx).value(obs[None], act[None])[0]
    torch.testing.assert_close(torch.as_tensor(tm.policy(t.context).q(obs.numpy(), act.numpy())), inner / kappa,
                               rtol=1e-4, atol=1e-5)
    fit(ds, tmp_path / "unscaled", quick(method="mlp_uvfa_td", seed=2, steps=2, value_scale=1.0), progress=False)
    assert load_fit(tmp_path / "unscaled").config.model.value_scale == 1.0


def test_lr_sweep_keeps_the_learning_rate_best_on_validation_tasks(ds, tmp_path):
    # on the CPU on every machine (with "auto" a GPU machine fits on CUDA, whose kernels need not be bit-stable)
    cfg = quick(method="mlp_policy", seed=1, lr_sweep=[1e-6, 3e-3], selection="val_loss", device="cpu")
    fit(ds, tmp_path / "full", cfg, progress=False)
    record = json.load(open(tmp_path / "full" / "lr_sweep.json"))
    scores = {c["lr"]: c["score"] for c in record["candidates"]}
    assert record["metric"] == "zero_shot_action_loss" and not record["higher_is_better"]
    assert record["chosen_lr"] == min(scores, key=scores.get) == 3e-3 and not record["refitted"]
    done = json.load(open(tmp_path / "full" / "done.json"))
    assert done["lr"] == 3e-3 and done["selection_score"] == pytest.approx(scores[3e-3])
    winner = _weights(tmp_path / "full" / "lr_sweep" / "lr_0.003" / "model.pt")
    published = _weights(tmp_path / "full" / "model.pt")
    assert all(torch.equal(winner[k], published[k]) for k in winner)
    assert load_fit(tmp_path / "full").config.lr == 3e-3
    info = json.load(open(tmp_path / "full" / "run_info.json"))
    assert info["config"]["lr_sweep"] == [1e-6, 3e-3] and info["lr_sweep"]["steps"] == 40
    # the device and threads the published model was fitted with are in the fit folder's own record
    winner_info = json.load(open(tmp_path / "full" / "lr_sweep" / "lr_0.003" / "run_info.json"))
    assert info["effective"] == winner_info["effective"] and info["effective"]["device"] == "cpu"
    # a shorter sweep fits the chosen lr for the full budget, continuing its sweep fit (killed and resumed here)
    short = dataclasses.replace(cfg, lr_sweep_steps=20)
    with pytest.raises(KeyboardInterrupt):
        fit(ds, tmp_path / "short", short, progress=False, callbacks=[_interrupt_at(30)])
    steps_after = []
    fit(ds, tmp_path / "short", short, progress=False, callbacks=[lambda s, m: steps_after.append(s)])
    assert steps_after == list(range(21, 41))   # from the checkpoint at step 20
    record = json.load(open(tmp_path / "short" / "lr_sweep.json"))
    assert record["refitted"] and record["sweep_steps"] == 20 and record["published_from"] == "lr_sweep/final"
    assert record["chosen_lr"] == 3e-3 and record["continued_from"] == "lr_sweep/lr_0.003"
    done = json.load(open(tmp_path / "short" / "done.json"))
    assert done["steps"] == 40
    # ... which gives the weights and the selection of a fresh fit of that lr for the full budget
    published = _weights(tmp_path / "short" / "model.pt")
    assert all(torch.equal(winner[k], published[k]) for k in winner)
    fresh = json.load(open(tmp_path / "full" / "lr_sweep" / "lr_0.003" / "done.json"))
    assert (done["selected_step"], done["selection_score"]) == (fresh["selected_step"], fresh["selection_score"])
    # and the sweep's cost counts the continued steps once
    candidates = {c["lr"]: c for c in record["candidates"]}
    assert done["sweep_train_seconds"] == pytest.approx(
        candidates[1e-6]["train_seconds"] + done["train_seconds"])
    with pytest.raises(ValueError, match="lr_sweep"):
        FitConfig(lr_sweep=[1e-3, -1.0]).check()
    with pytest.raises(ValueError, match="validation tasks"):
        fit(ds, tmp_path / "noval", dataclasses.replace(cfg, val_fraction=0.0), progress=False)


def test_obs_norm_statistics_come_from_the_training_tasks_only_and_survive_load_fit(ds, tmp_path):
    from hyperzero.models.base import observation_statistics

    fit(ds, tmp_path, quick(seed=2, model=dataclasses.replace(SMALL, obs_norm=True)), progress=False)
    split = make_split(ds.task_ids, 2, "paper", 0.15)
    mean, std = observation_statistics(t.obs for t in ds.tasks if t.task_id in split.train)
    everything, _ = observation_statistics(t.obs for t in ds.tasks)
    loaded = load_fit(tmp_path)
    assert loaded.config.model.obs_norm
    np.testing.assert_allclose(loaded.model.obs_norm.mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.model.obs_norm.std.numpy(), np.maximum(std, 1e-2), rtol=1e-5, atol=1e-6)
    assert not np.allclose(mean, everything)  # the held-out tasks' observations would have moved them


def test_a_model_written_before_obs_norm_existed_still_loads(ds, tmp_path):
    fit(ds, tmp_path, quick(seed=1), progress=False)
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    del payload["config"]["model"]["obs_norm"]
    from hyperzero.utils.io import atomic_torch_save

    atomic_torch_save(payload, tmp_path / "model.pt")
    loaded = load_fit(tmp_path)
    assert loaded.model.obs_norm is None and not loaded.config.model.obs_norm


def test_a_fit_records_its_training_contexts_in_the_model(ds, tmp_path):
    """The range and fixed features a model checks contexts against travel in model.pt (no dataset needed)."""
    fit(ds, tmp_path, quick(seed=3), progress=False)
    split = make_split(ds.task_ids, 3, "paper", 0.15)
    values = [float(t.context_vector[0]) for t in ds.tasks if t.task_id in split.train]
    fixed, ranges = load_fit(tmp_path).training_facts()
    name = ds.context_names[0]
    assert ranges[name] == pytest.approx((min(values), max(values)))
    assert name not in fixed
