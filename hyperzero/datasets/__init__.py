"""Rollout datasets: the experts' (or any policy's) transitions per task, in a solver-agnostic format.

    from hyperzero.datasets import DatasetWriter, record_episodes, load_dataset
    writer = DatasetWriter("data", "cheetah-run", context_names=["speed"])
    eps = record_episodes("cheetah-run", {"speed": 3.0}, my_policy, n_episodes=2, seeds=[11, 12])
    writer.add_task({"speed": 3.0}, eps, {"source": "stable-baselines3"})
    writer.finalize()
    ds = load_dataset("data")  # validated: errors name the file and the problem

Format: docs/dataset-format.md.
"""
from hyperzero.datasets.collect import collect_dataset, default_context_names
from hyperzero.datasets.format import (FORMAT_VERSION, DatasetError, Episodes, ExpertInfo, RolloutDataset, TaskData,
                                       discounted_return_to_go, load_dataset)
from hyperzero.datasets.record import DATASET_SEED_RANGE, dataset_episode_seeds, record_episodes
from hyperzero.datasets.splits import Split, make_split
from hyperzero.datasets.writer import DatasetWriter

__all__ = ["DATASET_SEED_RANGE", "FORMAT_VERSION", "DatasetError", "DatasetWriter", "Episodes", "ExpertInfo",
           "RolloutDataset", "Split", "TaskData", "collect_dataset", "dataset_episode_seeds", "default_context_names",
           "discounted_return_to_go", "load_dataset", "make_split", "record_episodes"]
