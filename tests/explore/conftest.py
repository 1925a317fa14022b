"""A small but real run directory for the explore tests: a dataset in the real on-disk format (the
synthetic linear policy family shaped like cheetah-run, 1000-step episodes), two real fits (hyperzero
with a value head, mlp_policy without), one expert summary.json and a config.yaml. Built once per
session in a few seconds (the `tiny` preset takes about 30 s on our 2-core machine)."""
import pytest

SPEEDS = (-6.0, -2.0, 2.0, 6.0)
EXPERT_TASK = "speed=2_torso_length=0.5"
EXPERT_RETURN = 123.4


@pytest.fixture(scope="session")
def explore_run(tmp_path_factory):
    import torch

    from hyperzero.models.config import ModelConfig
    from hyperzero.training import FitConfig, fit
    from hyperzero.training.synthetic import write_synthetic_dataset
    from hyperzero.utils.io import atomic_write_json, atomic_write_text

    run = tmp_path_factory.mktemp("explore") / "run"
    dataset = write_synthetic_dataset(run / "dataset", values=SPEEDS, episode_length=1000)
    threads = torch.get_num_threads()
    for method in ("hyperzero", "mlp_policy"):
        cfg = FitConfig(method=method, seed=0, steps=4, eval_interval=2, batch_size=32, tasks_per_batch=2,
                        val_samples_per_task=16, checkpoint_interval=4, log_interval=2, num_threads=1,
                        model=ModelConfig(hidden_dim=16, embed_dims=(8, 8, 8)))
        fit(dataset, run / "fits" / method / "seed_0", cfg, progress=False)
    torch.set_num_threads(threads)
    atomic_write_json(run / "experts" / EXPERT_TASK / "summary.json", {
        "task_id": EXPERT_TASK, "family": "cheetah-run", "context": {"speed": 2.0, "torso_length": 0.5},
        "train_steps": 1000, "seed": 2, "eval_return_mean": EXPERT_RETURN, "eval_return_std": 1.5,
        "eval_returns": [EXPERT_RETURN - 1.5, EXPERT_RETURN + 1.5], "eval_episodes": 2, "flagged": False,
        "finished": True, "config": {"max_episode_steps": None}})
    atomic_write_text(run / "config.yaml", "name: explore-test\nfamily: cheetah-run\n")
    return run


@pytest.fixture(scope="module")
def server(explore_run):
    from hyperzero.explore import ExploreConfig, running_server

    with running_server(explore_run, ExploreConfig(port=0)) as url:
        yield url


def ndjson(text: str) -> list[dict]:
    import json

    return [json.loads(line) for line in text.splitlines() if line.strip()]

