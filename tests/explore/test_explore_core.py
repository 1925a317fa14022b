"""The explore page's engine without the web layer: reading a run, contexts, rendering, clips."""
import json
import shutil

import numpy as np
import pytest

from hyperzero.envs import get_family, make
from hyperzero.explore.rollout import FrameRenderer, Supersession, clip_events, discounted, make_panel
from hyperzero.explore.run import ExploreRun

from tests.explore.conftest import EXPERT_RETURN, EXPERT_TASK, SPEEDS


def test_run_facts(explore_run):
    run = ExploreRun(explore_run)
    assert run.name == "explore-test" and run.family_name == "cheetah-run" and run.context_names == ["speed"]
    assert run.methods == ["hyperzero", "mlp_policy"] and run.seeds("hyperzero") == [0]
    assert run.gamma == 0.99 and run.episode_length == 1000
    assert run.fixed_context() == {"torso_length": 0.5}
    facts = run.describe()
    speed = facts["features"][0]
    lo, hi = speed["slider"]
    assert lo < min(SPEEDS) and hi > max(SPEEDS)  # room to extrapolate on the slider, within the physical limits
    assert speed["limits"][0] <= lo and hi <= speed["limits"][1]
    tasks = {t["task_id"]: t for t in facts["tasks"]}
    assert tasks[EXPERT_TASK]["expert"]["return_mean"] == EXPERT_RETURN
    assert tasks[EXPERT_TASK]["expert"]["episode_steps"] == 1000  # max_episode_steps None: the family's length
    split = run.fit("hyperzero", 0).split
    assert facts["methods"][0]["splits"]["0"]["train"] == split.train and split.test


def test_contexts_are_checked_by_the_family(explore_run):
    run = ExploreRun(explore_run)
    assert run.resolve_context({"speed": 25.0}) == {"speed": 25.0, "torso_length": 0.5}  # beyond nominal: allowed
    # a feature the run does not vary may be given at the run's value, not at another
    assert run.resolve_context({"speed": 2.0, "torso_length": 0.5}) == {"speed": 2.0, "torso_length": 0.5}
    for bad, words in [({"speed": 0.0}, "0 is not allowed"), ({"speed": 31.0}, "physical limits"),
                       ({"speed": float("nan")}, "not finite"), ({}, "lacks"),
                       ({"speed": 1.0, "gravity": 9.0}, "not varied by this run"),
                       ({"speed": 1.0, "torso_length": 0.6}, "'torso_length' = 0.6 is not varied by this run"),
                       ({"speed": 1.0, "wind": 1.0}, r"unknown context feature\(s\) \['wind'\]"),
                       ({"speed": 0.01}, "below the minimum 0.05 m/s")]:
        with pytest.raises(ValueError, match=words):
            run.resolve_context(bad)
    split = run.fit("hyperzero", 0).split
    lo, hi = run.train_range(split, "speed")
    assert run.beyond({"speed": hi + 1.0}, split)["speed"] == {"extrapolation": True, "beyond_nominal": False}
    assert run.beyond({"speed": 20.0}, split)["speed"] == {"extrapolation": True, "beyond_nominal": True}
    assert run.beyond({"speed": (lo + hi) / 2}, split)["speed"]["extrapolation"] is False
    assert run.task_for({"speed": 2.0}).task_id == EXPERT_TASK and run.task_for({"speed": 2.5}) is None


def test_incomplete_run_directories_are_refused(explore_run, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ExploreRun(tmp_path / "missing")
    with pytest.raises(ValueError, match="has no dataset/ folder"):
        ExploreRun(tmp_path)
    (tmp_path / "dataset").mkdir()
    with pytest.raises(ValueError, match="manifest"):
        ExploreRun(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(explore_run / "dataset", partial / "dataset")
    with pytest.raises(ValueError, match="no complete fit"):
        ExploreRun(partial)
    shutil.copytree(explore_run / "fits", partial / "fits")
    (partial / "fits" / "hyperzero" / "seed_0" / "model.pt").unlink()
    with pytest.raises(ValueError, match="no model.pt"):
        ExploreRun(partial)


def test_cli_reports_a_bad_run_directory_without_traceback(explore_run, tmp_path, capsys):
    from hyperzero.cli import main

    assert main(["explore", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    shutil.copytree(explore_run / "dataset", tmp_path / "run" / "dataset")
    assert main(["explore", str(tmp_path / "run"), "--port", "0"]) == 2
    assert "no complete fit" in capsys.readouterr().err
    assert main(["explore", str(explore_run), "--method", "maml", "--port", "0"]) == 2
    assert "has no complete fit" in capsys.readouterr().err


def test_renderer_draws_the_stepped_state(request):
    """The cached camera shows what the env's own renderer shows (full quality), frame by frame."""
    family = get_family("cheetah-run")
    context = {"speed": 3.0, "torso_length": 0.6}
    env = make("cheetah-run", context, seed=5, render_mode="rgb_array", width=160, height=120)
    env.reset(seed=5)
    full = FrameRenderer(family, width=160, height=120, full_quality=True)
    request.addfinalizer(full.close)
    rng = np.random.default_rng(0)
    for _ in range(15):
        env.step(rng.uniform(-1, 1, 6).astype(np.float32))
    reference = env.render().astype(np.int16)
    assert np.abs(full.render(env.context, env.physics).astype(np.int16) - reference).mean() < 1.0
    shorter = make("cheetah-run", {"speed": 3.0, "torso_length": 0.3}, seed=5, render_mode="rgb_array",
                   width=160, height=120)
    shorter.reset(seed=5)
    assert np.abs(full.render(shorter.context, shorter.physics).astype(np.int16)
                  - shorter.render().astype(np.int16)).mean() < 1.0  # another body: another cached model
    env.close()
    shorter.close()


def test_clip_matches_the_evaluation_rollout(explore_run):
    """Same seed, same policy: the page's episode return is what `hyperzero evaluate` would measure."""
    from hyperzero.evaluation.rollout import rollout_returns

    run = ExploreRun(explore_run)
    context = run.resolve_context({"speed": 4.0})
    trained = run.model("hyperzero", 0)
    panel = make_panel(trained, "hyperzero", 0, context)
    with FrameRenderer(run.family, width=96, height=72) as renderer:
        events = list(clip_events("cheetah-run", context, [panel], renderer, episode_seed=11, clip_steps=40,
                                  episode_steps=300, gamma=run.gamma, frame_every=4))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("clip") == 1
    frames = [e for e in events if e["type"] == "frame"]
    assert len(frames) == 40 // 4 + 1 == events[0]["frames"] and [f["t"] for f in frames] == list(range(0, 41, 4))
    done = events[-1]["panels"][0]
    rewards = [r for f in frames for r in f["rewards"]] + done["rewards"]
    assert len(rewards) == done["steps"] == 300
    policy = trained.policy(context)
    expected = rollout_returns("cheetah-run", context, lambda obs: np.asarray(policy.act(obs), np.float32), [11],
                               max_steps=300)[0]
    assert done["episode_return"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert done["discounted_return"] == pytest.approx(sum(r * 0.99 ** t for t, r in enumerate(rewards)), rel=1e-6)
    clip = next(e for e in events if e["type"] == "clip")
    assert clip["clip_returns"][0] == pytest.approx(sum(rewards[:40]), rel=1e-6)
    env = make("cheetah-run", context, seed=11)
    obs, _ = env.reset(seed=11)
    action = policy.act(obs[None])
    assert events[0]["panels"][0]["q_hat"] == pytest.approx(float(policy.q(obs[None], action)[0]), rel=1e-5,
                                                            abs=1e-5)
    json.dumps(events)  # every event is plain JSON


def test_a_newer_clip_supersedes_the_running_one(explore_run, request):
    run = ExploreRun(explore_run)
    context = run.resolve_context({"speed": -3.0})
    panel = make_panel(run.model("mlp_policy", 0), "mlp_policy", 0, context)
    supersession = Supersession()
    is_current = supersession.begin("page-1")
    other_client = supersession.begin("page-2")
    renderer = FrameRenderer(run.family, 64, 48)
    request.addfinalizer(renderer.close)
    events = clip_events("cheetah-run", context, [panel], renderer, 0, 200, 1000, run.gamma, frame_every=1,
                         is_current=is_current)
    seen = [next(events) for _ in range(5)]
    assert seen[0]["type"] == "start" and seen[0]["panels"][0]["has_q"] is False  # mlp_policy: no value head
    supersession.begin("page-1")  # the same page asks for another clip
    rest = list(events)
    assert rest[-1] == {"type": "superseded"} and len(rest) <= 3
    assert other_client()  # another page's clip is not affected


def test_discounted_return():
    assert discounted([1.0, 1.0, 1.0], 0.5) == pytest.approx(1.75)
    assert discounted([], 0.9) == 0.0
