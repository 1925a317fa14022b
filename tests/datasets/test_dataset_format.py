"""Dataset format: writer + loader round trip in a real env, validation, resume."""
import io
import json
import shutil
import zipfile

import numpy as np
import pytest

from hyperzero.datasets import (DatasetError, DatasetWriter, Episodes, discounted_return_to_go, load_dataset,
                                record_episodes)
from hyperzero.envs import make
from hyperzero.utils.io import atomic_write_json

FAMILY = "cheetah-run"
CONTEXTS = [{"speed": 2.0, "torso_length": 0.4}, {"speed": -3.0, "torso_length": 0.6}]


def pd_policy(obs: np.ndarray) -> np.ndarray:
    """A scripted controller that is not ours: damp the joint velocities, push the back thigh forward."""
    joint_vel = obs[11:17]  # cheetah obs: position (8) then velocity (9); the last 6 are joint speeds
    return np.clip(-0.3 * joint_vel + np.array([0.5, 0, 0, -0.5, 0, 0]), -1, 1)


@pytest.fixture(scope="module")
def recorded():
    """Two tasks recorded with the scripted policy (one with a fake critic), 2 episodes each."""
    out = []
    for i, ctx in enumerate(CONTEXTS):
        q_fn = (lambda o, a: (o[:, 0] + a.sum(axis=1))) if i == 0 else None
        out.append(record_episodes(FAMILY, ctx, pd_policy, n_episodes=2, seeds=[100 + 10 * i, 101 + 10 * i], q_fn=q_fn))
    return out


@pytest.fixture(scope="module")
def dataset_dir(recorded, tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    writer = DatasetWriter(d, FAMILY, ["speed", "torso_length"], gamma=0.98)
    writer.add_task(CONTEXTS[0], recorded[0], {"source": "scripted-pd", "seed": 7})
    writer.add_task(CONTEXTS[1], recorded[1])
    writer.finalize()
    return d


@pytest.fixture
def copy(dataset_dir, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(dataset_dir, d)
    return d


def manifest_of(d):
    return json.loads((d / "manifest.json").read_text())


# ---------------------------------------------------------------------------------------------------------------
def test_record_episodes_replays_exactly_in_a_fresh_env(recorded):
    ep = recorded[0]
    assert ep.obs.shape == (2, 1000, 17) and ep.action.shape == (2, 1000, 6)
    assert ep.obs.dtype == np.float32 and ep.terminated.dtype == bool
    assert ep.truncated[:, -1].all() and not ep.truncated[:, :-1].any() and not ep.terminated.any()
    np.testing.assert_array_equal(ep.next_obs[:, :-1], ep.obs[:, 1:])
    assert not np.allclose(ep.obs[0, 0], ep.obs[1, 0])  # different seeds, different start states
    # Replaying the stored actions from the stored seed reproduces every observation and reward.
    env = make(FAMILY, context=CONTEXTS[0])
    obs, _ = env.reset(seed=int(ep.episode_seed[1]))
    np.testing.assert_array_equal(obs, ep.obs[1, 0])
    for t in range(1000):
        obs, r, term, trunc, _ = env.step(ep.action[1, t])
        assert r == pytest.approx(ep.reward[1, t], abs=1e-6)
    np.testing.assert_array_equal(obs, ep.next_obs[1, -1])
    assert trunc and not term
    np.testing.assert_allclose(ep.q[0], ep.obs[0, :, 0] + ep.action[0].sum(axis=1), rtol=1e-6)
    assert recorded[1].q is None


def test_round_trip(dataset_dir, recorded):
    ds = load_dataset(dataset_dir)
    assert ds.family == FAMILY and ds.context_names == ["speed", "torso_length"] and ds.gamma == 0.98
    assert (ds.obs_dim, ds.act_dim) == (17, 6)
    assert ds.task_ids == ["speed=2_torso_length=0.4", "speed=-3_torso_length=0.6"]
    for task, ep, ctx in zip(ds.tasks, recorded, CONTEXTS):
        assert task.context == ctx
        np.testing.assert_array_equal(task.context_vector, np.array([ctx["speed"], ctx["torso_length"]], np.float32))
        for name in ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode_seed"):
            np.testing.assert_array_equal(getattr(task, name), getattr(ep, name))
        np.testing.assert_allclose(task.return_to_go, discounted_return_to_go(ep.reward, 0.98), rtol=1e-6)
    assert ds.tasks[0].expert.source == "scripted-pd" and ds.tasks[0].expert.seed == 7
    assert ds.tasks[1].expert.source == "user" and ds.tasks[1].expert.return_mean is None
    assert ds.tasks[0].has_q and not ds.tasks[1].has_q and np.isnan(ds.tasks[1].q).all()
    with pytest.raises(DatasetError, match="NaN q"):
        ds.require_q("hyperzero")
    sub = ds.subset(["speed=-3_torso_length=0.6"])
    assert sub.task_ids == ["speed=-3_torso_length=0.6"] and len(ds) == 2
    sub.subset(sub.task_ids)  # idempotent
    with pytest.raises(KeyError, match="not in the dataset"):
        ds.subset(["speed=5_torso_length=0.5"])
    flat = ds.tasks[0].transitions()
    assert flat["obs"].shape == (2000, 17) and flat["reward"].shape == (2000,)
    # Plain arrays: readable without pickle, and the manifest records what the contract lists.
    with np.load(dataset_dir / "tasks" / "speed=2_torso_length=0.4.npz", allow_pickle=False) as z:
        assert set(z.files) >= {"obs", "action", "reward", "next_obs", "terminated", "truncated", "q",
                                "return_to_go", "episode_seed", "context_vector"}
    m = manifest_of(dataset_dir)
    assert m["finalized"] and m["format_version"] == 1 and m["versions"]["numpy"] == np.__version__
    e = m["tasks"][0]
    assert e["episode_seeds"] == [100, 101] and e["n_episodes"] == 2 and e["episode_length"] == 1000
    assert e["episode_return_mean"] == pytest.approx(recorded[0].returns.mean())
    assert m["context_bounds"] == [[-10.0, 10.0], [0.3, 0.7]]  # in context_names order
    assert not list(dataset_dir.rglob("*.tmp"))


def test_return_to_go_on_a_hand_made_sequence():
    r = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    np.testing.assert_allclose(discounted_return_to_go(r, 0.5), [[2.75, 3.5, 3.0], [1.0, 2.0, 4.0]])
    np.testing.assert_allclose(discounted_return_to_go(r, 1.0), [[6.0, 5.0, 3.0], [4.0, 4.0, 4.0]])


def synthetic(E=2, T=5, S=17, A=6, seed=0):
    """A user's hand-made episodes (no simulator involved: the writer must accept any producer's arrays)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(E, T + 1, S)).astype(np.float32)
    trunc = np.zeros((E, T), bool)
    trunc[:, -1] = True
    return {"obs": obs[:, :-1], "next_obs": obs[:, 1:], "action": rng.uniform(-1, 1, (E, T, A)),
            "reward": np.tile(np.arange(1.0, T + 1), (E, 1)), "terminated": np.zeros((E, T), bool),
            "truncated": trunc, "episode_seed": np.arange(E) + 5}


def test_writer_stores_return_to_go_and_casts(tmp_path):
    w = DatasetWriter(tmp_path, FAMILY, ["speed"], gamma=0.5)
    arrays = synthetic()
    arrays["terminated"] = arrays["terminated"].astype(int)  # 0/1 ints are accepted as bools
    entry = w.add_task({"speed": 4}, arrays)
    assert entry["context"] == {"speed": 4.0, "torso_length": 0.5} and not entry["has_q"]
    w.finalize()
    task = load_dataset(tmp_path).tasks[0]
    # rewards 1..5 with gamma 0.5: G_4 = 5, G_3 = 4 + 2.5, ... computed backwards and truncated at the end
    expected = [1 + 0.5 * (2 + 0.5 * (3 + 0.5 * (4 + 0.5 * 5))), 2 + 0.5 * (3 + 0.5 * (4 + 0.5 * 5)),
                3 + 0.5 * (4 + 0.5 * 5), 4 + 0.5 * 5, 5]
    np.testing.assert_allclose(task.return_to_go[0], expected, rtol=1e-6)
    assert task.action.dtype == np.float32 and task.terminated.dtype == bool


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(obs=a["obs"][:, :, :5]), "'obs' must have shape|'obs' has shape"),
    (lambda a: a.update(action=a["action"][:, :, :2]), "'action' has shape"),
    (lambda a: a.update(reward=a["reward"][:, :3]), "'reward' has shape"),
    (lambda a: a.update(action=a["action"] * 3), r"actions must lie in \[-1, 1\]"),
    (lambda a: a["obs"].__setitem__((0, 1, 2), np.nan), "'obs' contains NaN"),
    (lambda a: a["truncated"].__setitem__((0, 2), True), "ends at step 2 before the last step"),
    (lambda a: a["truncated"].__setitem__((1, -1), False), "episode 1 does not end"),
    (lambda a: a.update(terminated=a["truncated"].copy()), "both terminated and truncated"),
    (lambda a: a.update(episode_seed=np.array([3, 3])), "episode seeds repeat"),
    (lambda a: a.update(terminated=np.full(a["truncated"].shape, 2)), "must be boolean"),
    (lambda a: a.pop("next_obs"), "missing"),
])
def test_writer_rejects_bad_episodes(tmp_path, change, message):
    w = DatasetWriter(tmp_path, FAMILY, ["speed"])
    arrays = synthetic()
    change(arrays)
    with pytest.raises(DatasetError, match=message):
        w.add_task({"speed": 4}, arrays)
    assert w.task_ids == [] and not list((tmp_path / "tasks").iterdir())  # nothing half-written


def test_writer_rejects_bad_context_and_duplicates(tmp_path):
    with pytest.raises(ValueError, match="must be distinct features"):
        DatasetWriter(tmp_path / "a", FAMILY, ["speed", "wingspan"])
    w = DatasetWriter(tmp_path / "b", FAMILY, ["speed"])
    with pytest.raises(ValueError, match="'speed'.*physical limits"):
        w.add_task({"speed": 99.0}, synthetic())
    with pytest.raises(ValueError, match="unknown context feature"):
        w.add_task({"wingspan": 1.0}, synthetic())
    w.add_task({"speed": 4}, synthetic())
    with pytest.raises(DatasetError, match="already in the dataset"):
        w.add_task({"speed": 4.0, "torso_length": 0.5}, synthetic())
    with pytest.raises(DatasetError, match="another process is writing"):
        DatasetWriter(tmp_path / "b", FAMILY, ["speed"])
    w.close()


def test_resume_keeps_finished_tasks_and_drops_damaged_ones(tmp_path):
    w = DatasetWriter(tmp_path, FAMILY, ["speed"])
    for v in (1, 2, 3):
        w.add_task({"speed": v}, synthetic(seed=v))
    w.close()  # "killed" before finalize: the manifest lists every finished task
    with pytest.raises(DatasetError, match="never finalized"):
        load_dataset(tmp_path)
    assert len(load_dataset(tmp_path, allow_unfinalized=True)) == 3
    (tmp_path / "tasks" / "speed=2_torso_length=0.5.npz").write_bytes(b"garbage")
    (tmp_path / "tasks" / ".speed=4_torso_length=0.5.npz.abc.tmp").write_bytes(b"half")  # a killed atomic write
    with pytest.raises(DatasetError, match="another dataset has|existing dataset has gamma"):
        DatasetWriter(tmp_path, FAMILY, ["speed"], gamma=0.9)
    w = DatasetWriter(tmp_path, FAMILY, ["speed"])
    assert w.task_ids == ["speed=1_torso_length=0.5", "speed=3_torso_length=0.5"]
    assert not list((tmp_path / "tasks").glob(".*.tmp"))
    w.add_task({"speed": 2}, synthetic(seed=2))
    w.finalize()
    assert load_dataset(tmp_path).task_ids == ["speed=1_torso_length=0.5", "speed=3_torso_length=0.5",
                                               "speed=2_torso_length=0.5"]
    w = DatasetWriter(tmp_path, FAMILY, ["speed"], overwrite=True)
    assert w.task_ids == [] and not list((tmp_path / "tasks").glob("*.npz"))
    w.close()


# --- the loader rejects damaged datasets, naming the file and the problem ---------------------------------------
def test_missing_manifest(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere.*manifest\.json.*does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_manifest_not_json(copy):
    (copy / "manifest.json").write_text('{"format_version": 1, "fam')
    with pytest.raises(DatasetError, match=r"manifest\.json: manifest is not valid JSON"):
        load_dataset(copy)


def test_truncated_task_file(copy):
    f = copy / "tasks" / "speed=-3_torso_length=0.6.npz"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(DatasetError, match="speed=-3_torso_length=0.6.npz: sha256"):
        load_dataset(copy)
    with pytest.raises(DatasetError, match="speed=-3_torso_length=0.6.npz: task file is truncated or corrupt"):
        load_dataset(copy, verify_sha256=False)


def test_missing_task_file(copy):
    (copy / "tasks" / "speed=2_torso_length=0.4.npz").unlink()
    with pytest.raises(DatasetError, match="speed=2_torso_length=0.4.npz: task file listed in the manifest is missing"):
        load_dataset(copy)


def rewrite_npz(path, **changes):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return arrays


def test_inconsistent_arrays_and_sha(copy):
    f = copy / "tasks" / "speed=2_torso_length=0.4.npz"
    with np.load(f) as z:
        obs = z["obs"]
    rewrite_npz(f, obs=obs[:, :, :10])
    with pytest.raises(DatasetError, match="sha256 .* does not match"):
        load_dataset(copy)
    with pytest.raises(DatasetError, match=r"speed=2_torso_length=0.4.npz: 'obs' has shape \(2, 1000, 10\), expected"):
        load_dataset(copy, verify_sha256=False)
    rewrite_npz(f, obs=obs.astype(np.float64))
    with pytest.raises(DatasetError, match="'obs' has dtype float64, expected float32"):
        load_dataset(copy, verify_sha256=False)


def test_family_and_context_mismatch(copy):
    f = copy / "tasks" / "speed=2_torso_length=0.4.npz"
    rewrite_npz(f, family=np.array("walker-walk"))
    with pytest.raises(DatasetError, match="task file is for family 'walker-walk'.*'cheetah-run'"):
        load_dataset(copy, verify_sha256=False)
    m = manifest_of(copy)
    m["tasks"][1]["context_vector"] = [-3.0]
    atomic_write_json(copy / "manifest.json", m)  # a consistent checksum: the structure is what is tested
    with pytest.raises(DatasetError, match=r"manifest\.json: task 'speed=-3_torso_length=0.6' has a context_vector of dimension 1"):
        load_dataset(copy)
    m["tasks"][1]["context_vector"] = [-3.0, 0.5]
    atomic_write_json(copy / "manifest.json", m)  # a consistent checksum: the structure is what is tested
    with pytest.raises(DatasetError, match="does not match its context"):
        load_dataset(copy)
    m["tasks"][1]["context_vector"] = [-3.0, 0.6]
    m["family"] = "finger-spin"
    atomic_write_json(copy / "manifest.json", m)  # a consistent checksum: the structure is what is tested
    with pytest.raises(DatasetError, match="finger-spin.*obs_dim"):
        load_dataset(copy)
    m["family"] = "pogo-stick"
    atomic_write_json(copy / "manifest.json", m)  # a consistent checksum: the structure is what is tested
    with pytest.raises(DatasetError, match="unknown family 'pogo-stick'"):
        load_dataset(copy)


def test_zip_member_corrupt(copy):
    """A file with a valid zip directory but a damaged member (bit rot) is reported, not crashed on."""
    f = copy / "tasks" / "speed=2_torso_length=0.4.npz"
    data = bytearray(f.read_bytes())
    with zipfile.ZipFile(f) as z:
        info = z.getinfo("reward.npy")
    start = info.header_offset + 30 + len(info.filename) + 200
    data[start:start + 50] = b"\xff" * 50
    f.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_dataset(copy, verify_sha256=False)


def test_episodes_dataclass_and_record_errors():
    with pytest.raises(ValueError, match="missing"):
        Episodes.from_dict({"obs": np.zeros((1, 1, 17))})
    with pytest.raises(ValueError, match="one seed per episode"):
        record_episodes(FAMILY, None, pd_policy, 2, seeds=[1])
    with pytest.raises(ValueError, match="shape"):
        record_episodes(FAMILY, None, lambda o: np.zeros(3), 1, seeds=[1])


def test_the_documented_sb3_example_runs(tmp_path, monkeypatch):
    """docs/dataset-format.md's "fill it from your own RL solver" block, run as written (a policy not ours)."""
    pytest.importorskip("stable_baselines3")
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "dataset-format.md").read_text()
    section = doc.split("## Fill it from your own RL solver", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "dataset-format.md", "exec"), {})
    ds = load_dataset(tmp_path / "my_dataset")
    assert ds.task_ids == ["speed=2_torso_length=0.5", "speed=4_torso_length=0.5"]
    assert ds.has_q and ds.tasks[0].expert.source == "stable-baselines3"
    assert ds.tasks[1].episode_seed.tolist() == [2_000_010, 2_000_011]


def test_manifest_structure_errors(copy):
    m = manifest_of(copy)
    m["context_bounds"] = [[-10.0, 10.0]]  # one pair for two context names
    atomic_write_json(copy / "manifest.json", m)  # a consistent checksum: the structure is what is tested
    with pytest.raises(DatasetError, match="context_bounds must be one"):
        load_dataset(copy)
    del m["context_bounds"], m["obs_dim"]
    atomic_write_json(copy / "manifest.json", m)  # a consistent checksum: the structure is what is tested
    with pytest.raises(DatasetError, match=r"manifest\.json: manifest is missing \['obs_dim'\]"):
        load_dataset(copy)
    m["obs_dim"], m["format_version"] = 17, 2
    atomic_write_json(copy / "manifest.json", m)  # a consistent checksum: the structure is what is tested
    with pytest.raises(DatasetError, match="format_version 2 is not supported"):
        load_dataset(copy)


# --- contexts and transitions: nothing defaulted, no two tasks alike to a model, whole episodes -------------------
def test_writer_refuses_a_context_without_a_varied_feature(tmp_path):
    w = DatasetWriter(tmp_path, FAMILY, ["speed"])
    with pytest.raises(ValueError, match=r"context lacks features \['speed'\]: this dataset .* varies \['speed'\]"):
        w.add_task({"torso_length": 0.55}, synthetic())  # was: stored as speed 10, the default
    assert w.task_ids == []
    w.close()


def test_writer_refuses_another_value_of_a_feature_it_does_not_vary(tmp_path):
    w = DatasetWriter(tmp_path, FAMILY, ["speed"])
    w.add_task({"speed": 4.0, "torso_length": 0.6}, synthetic())  # the first task sets the fixed features
    with pytest.raises(ValueError, match=r"'torso_length' = 0.55 is not varied by this dataset.*fixed at 0.6"):
        w.add_task({"speed": 4.0, "torso_length": 0.55}, synthetic(seed=1))  # same vector over context_names
    with pytest.raises(ValueError, match=r"'gravity' = 5 is not varied by this dataset"):
        w.add_task({"speed": 3.0, "gravity": 5.0}, synthetic(seed=1))
    assert w.add_task({"speed": 3.0}, synthetic(seed=2))["context"] == {"speed": 3.0, "torso_length": 0.6}
    w.close()


def test_writer_refuses_a_speed_below_the_minimum(tmp_path):
    w = DatasetWriter(tmp_path, FAMILY, ["speed"])
    with pytest.raises(ValueError, match=r"'speed': \|value\| 4.94066e-324 is below the minimum 0.05 m/s"):
        w.add_task({"speed": 5e-324}, synthetic())
    w.close()


def broken_transition(arrays):
    arrays["next_obs"] = arrays["next_obs"].copy()  # synthetic() gives obs and next_obs as views of one array
    arrays["next_obs"][1, 2, 3] += 1.0


def test_writer_refuses_next_obs_that_is_not_the_next_obs(tmp_path):
    w = DatasetWriter(tmp_path, FAMILY, ["speed"])
    arrays = synthetic()
    broken_transition(arrays)
    with pytest.raises(DatasetError, match=r"episode 1: next_obs\[2\] differs from obs\[3\] \(component 3"):
        w.add_task({"speed": 4}, arrays)
    assert w.task_ids == [] and not list((tmp_path / "tasks").glob("*.npz"))
    w.close()


def test_loader_refuses_broken_transitions(copy):
    f = copy / "tasks" / "speed=2_torso_length=0.4.npz"
    with np.load(f) as z:
        next_obs = z["next_obs"].copy()
    next_obs[0, 10, 0] += 0.5
    rewrite_npz(f, next_obs=next_obs)
    with pytest.raises(DatasetError, match=r"speed=2_torso_length=0.4.npz: episode 0: next_obs\[10\] differs"):
        load_dataset(copy, verify_sha256=False)


def test_loader_refuses_tasks_that_share_a_context_vector(copy):
    m = manifest_of(copy)
    m["context_names"], m["context_bounds"] = ["speed"], [[-10.0, 10.0]]
    m["tasks"][0]["context_vector"], m["tasks"][1]["context_vector"] = [2.0], [2.0]
    atomic_write_json(copy / "manifest.json", m)
    with pytest.raises(DatasetError, match=r"tasks 'speed=2_torso_length=0.4' and 'speed=-3_torso_length=0.6' have the "
                                           r"same context vector \[2.0\] over context_names \['speed'\]"):
        load_dataset(copy)


def test_loader_refuses_tasks_that_differ_outside_context_names(copy):
    m = manifest_of(copy)
    m["context_names"], m["context_bounds"] = ["speed"], [[-10.0, 10.0]]
    m["tasks"][0]["context_vector"], m["tasks"][1]["context_vector"] = [2.0], [-3.0]
    atomic_write_json(copy / "manifest.json", m)
    with pytest.raises(DatasetError, match=r"task 'speed=-3_torso_length=0.6' has \{'torso_length': 0.6\} outside "
                                           r"context_names \['speed'\].*must be the same in every task"):
        load_dataset(copy)
