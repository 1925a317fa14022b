"""Where R_expert comes from: experts/<task>/expert.pt (rolled out, the default), the dataset manifest's
ExpertInfo.return_mean (a dataset without our experts), or a user's --expert-returns file (first)."""
import json

import numpy as np
import pytest

from hyperzero.evaluation.evaluate import (SOURCE_FILE, SOURCE_MANIFEST, SOURCE_ROLLED, EvalConfig, ExpertReference,
                                           expert_sources_sentence, manifest_expert_returns, read_expert_returns,
                                           references_digest)


S2, S4, S6 = "speed=2_torso_length=0.5", "speed=4_torso_length=0.5", "speed=6_torso_length=0.5"  # the task ids


@pytest.fixture
def run(tmp_path):
    from hyperzero.datasets import DatasetWriter, load_dataset

    writer = DatasetWriter(tmp_path / "dataset", "cheetah-run", ["speed"], gamma=0.99)
    for i, speed in enumerate((2.0, 4.0, 6.0)):
        episodes = {"obs": np.zeros((1, 3, 17), np.float32), "action": np.zeros((1, 3, 6), np.float32),
                    "reward": np.ones((1, 3), np.float32), "next_obs": np.zeros((1, 3, 17), np.float32),
                    "terminated": np.zeros((1, 3), bool), "truncated": np.array([[False, False, True]]),
                    "episode_seed": np.array([10 + i], np.int64)}
        expert = {"source": "my-solver", "return_mean": 100.0 * (i + 1)} if speed != 6.0 else {"source": "my-solver"}
        writer.add_task({"speed": speed}, episodes, expert)
    writer.finalize()
    return tmp_path, load_dataset(tmp_path / "dataset")


def test_sources_in_order_file_then_our_expert_then_the_manifest(run):
    run_dir, dataset = run
    assert manifest_expert_returns(dataset) == {S2: 100.0, S4: 200.0}
    (run_dir / "experts" / S4).mkdir(parents=True)
    (run_dir / "experts" / S4 / "expert.pt").write_bytes(b"stand-in")  # ours: rolled out, never read here
    ref = ExpertReference(run_dir, "cheetah-run", None, run_dir / "eval" / "expert_returns.json",
                          manifest_returns=manifest_expert_returns(dataset), file_returns={S6: -5.0},
                          file_path="mine.json")
    assert [ref.source(t) for t in (S2, S4, S6)] == [SOURCE_MANIFEST, SOURCE_ROLLED, SOURCE_FILE]
    assert ref.returns(S2, {"speed": 2.0}, [1, 2]).tolist() == [100.0]
    assert ref.returns(S6, {"speed": 6.0}, [1, 2]).tolist() == [-5.0]
    sources = ref.describe_sources([S2, S4, S6, S2])
    assert sources[SOURCE_MANIFEST] == [S2] and sources[SOURCE_FILE] == [S6]
    sentence = expert_sources_sentence(sources)
    assert ("from the dataset manifest (ExpertInfo.return_mean, the producer's own evaluation), "
            "not re-rolled") in sentence
    assert "from mine.json (given with --expert-returns), not re-rolled (1 task(s))" in sentence
    # an expert folder of ours without expert.pt is damage, not "no expert": the manifest is not used for it
    (run_dir / "experts" / S2).mkdir()
    assert ref.source(S2) is None
    with pytest.raises(FileNotFoundError, match=r"--expert-returns FILE"):
        ref.returns(S2, {"speed": 2.0}, [1])


def test_the_cache_key_follows_the_recorded_references(run):
    run_dir, dataset = run
    manifest = dataset.manifest
    assert references_digest(run_dir, manifest, EvalConfig()) is not None  # two tasks scored from the manifest
    path = run_dir / "returns.json"
    path.write_text(json.dumps({S6: -5.0}))
    first = references_digest(run_dir, manifest, EvalConfig(expert_returns=str(path)))
    path.write_text(json.dumps({S6: -6.0}))
    assert references_digest(run_dir, manifest, EvalConfig(expert_returns=str(path))) != first
    for task in (S2, S4):
        (run_dir / "experts" / task).mkdir(parents=True)
        (run_dir / "experts" / task / "expert.pt").write_bytes(b"x")
    assert references_digest(run_dir, manifest, EvalConfig()) is None  # every reference rolled out: as before


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object mapping task ids to expert returns"),
    ('{"speed=9": 1}', r"tasks \['speed=9'\] are not in the dataset"),
    ('{"speed=2": "high"}', "the return of task 'speed=2' must be a finite number"),
    ('{"speed=2": NaN}', "must be a finite number"),
    ('{"speed=2": {"mean": 3}}', "must be a finite number"),
])
def test_a_bad_expert_returns_file_is_named(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as e:
        read_expert_returns(path, ["speed=2", "speed=4"])
    assert str(path) in str(e.value)
    path.write_text('{"speed=2": 7, "speed=4": {"return_mean": 8.5}}')
    assert read_expert_returns(path, ["speed=2", "speed=4"]) == {"speed=2": 7.0, "speed=4": 8.5}
