"""What a resolved config asks of this machine, checked before anything is written: memory per stage, and devices
(CUDA, bf16) that exist here."""
from __future__ import annotations

from typing import Mapping

from hyperzero.launchers.config import PipelineConfig, context_dim, model_parameters, resolve_contexts


def memory_estimate(config: "Mapping | PipelineConfig", cores: int | None = None) -> dict[str, tuple[int, dict[str, int], int]]:
    """Estimated peak memory of each stage of a resolved config on this machine (local executor):
    stage -> (bytes, {part: bytes}, processes at once). Deliberately rough (within ~2x): it exists to refuse
    a config that cannot fit (a typo such as batch_size 1e12) before anything is written, not to plan a run."""
    import os

    from hyperzero.envs import get_family
    from hyperzero.experts.sweep import MAX_ENSEMBLE

    if not isinstance(config, PipelineConfig):
        config = PipelineConfig.from_dict(config)
    cores = cores or os.cpu_count() or 1
    family = config.family
    fam = get_family(family)
    contexts = resolve_contexts(family, config.contexts)
    n_tasks = len(contexts)
    solver, sweep = config.experts.solver.resolved(family), config.experts.settings
    members = min(sweep.ensemble_size or MAX_ENSEMBLE, n_tasks)
    groups = -(-n_tasks // members)
    expert_workers = min(sweep.num_workers or cores, groups)
    expert_parts = solver.memory_bytes(fam.obs_dim, fam.act_dim, members)

    steps = solver.max_episode_steps or fam.episode_steps
    per_step = (2 * fam.obs_dim + fam.act_dim + 6) * 4  # obs, next_obs, action, reward, q*, discount, ...
    n_episodes = config.dataset.n_episodes
    dataset_bytes = n_tasks * n_episodes * (steps + 1) * per_step

    fit, fits = config.fit.base, config.fit.sweep
    params = model_parameters(config.fit.to_dict(), family, context_dim(contexts))
    fit_workers = max(1, min(fits.num_workers or cores, len(fits.methods) * len(fits.seeds)))
    width = max([fit.model.hidden_dim, *fit.model.embed_dims])
    val = n_tasks * fit.val_samples_per_task * per_step
    fit_parts = {"dataset": dataset_bytes, "model": max(params.values(), default=0) * 4 * 6,
                 "batch": fit.batch_size * width * 4 * 16, "validation": val}

    evaluate = config.evaluate
    frames = evaluate.video_steps * 320 * 240 * 3 if evaluate.videos else 0
    return {
        "experts": (sum(expert_parts.values()) * expert_workers, expert_parts, expert_workers),
        "dataset": (n_episodes * (steps + 1) * per_step, {"one task's episodes": n_episodes * (steps + 1) * per_step}, 1),
        "fits": (sum(fit_parts.values()) * fit_workers, fit_parts, fit_workers),
        "eval": (frames + dataset_bytes, {"video frames": frames, "dataset": dataset_bytes}, 1),
    }


# what to lower when a stage's part does not fit
_MEMORY_KEYS = {
    ("experts", "replay"): "experts.replay_capacity or experts.train_steps, experts.ensemble_size, experts.num_workers",
    ("experts", "networks"): "experts.hidden_sizes, experts.ensemble_size, experts.num_workers",
    ("experts", "batch"): "experts.batch_size, experts.hidden_sizes, experts.n_step",
    ("fits", "dataset"): "dataset.n_episodes or the number of tasks (contexts), fit.num_workers",
    ("fits", "model"): "fit.model widths (hidden_dim, embed_dims), fit.num_workers",
    ("fits", "batch"): "fit.batch_size, fit.model widths, fit.num_workers",
    ("fits", "validation"): "fit.val_samples_per_task, fit.num_workers",
    ("eval", "video frames"): "evaluate.video_steps (or evaluate.videos=false)",
    ("eval", "dataset"): "dataset.n_episodes or the number of tasks (contexts)",
    ("dataset", "one task's episodes"): "dataset.n_episodes, experts.max_episode_steps",
}


def check_memory(config: "Mapping | PipelineConfig", available: int | None = None, cores: int | None = None) -> None:
    """Refuse a config whose estimated peak memory in some stage exceeds this machine's (see `memory_estimate`),
    naming the stage, the part that dominates and the keys that set it. Nothing is written before this runs."""
    from hyperzero.utils.hardware import human_bytes, memory_bytes

    available = available or memory_bytes()
    if not available:
        return
    for stage, (total, parts, processes) in memory_estimate(config, cores).items():
        if total <= available:
            continue
        part, size = max(parts.items(), key=lambda kv: kv[1])
        shown = ", ".join(f"{k} {human_bytes(v)}" for k, v in parts.items() if v)
        each = f" in each of {processes} processes" if processes > 1 else ""
        raise ValueError(f"the {stage} stage would need about {human_bytes(total)} of memory ({shown}{each}), more "
                         f"than this machine's {human_bytes(available)}; lower {_MEMORY_KEYS.get((stage, part), part)}")


def check_device_names(config: PipelineConfig, device: str | None = None) -> None:
    """Refuse a device name hyperzero cannot run on (e.g. --device tpu), naming the option (`device`: --device,
    which overrides the sections' keys) or the key."""
    from hyperzero.utils.torch_utils import DEVICE_FORMS, valid_device

    if device is not None and not valid_device(device):
        raise ValueError(f"--device {device!r}: must be {DEVICE_FORMS}")
    for section, value in (("experts", config.experts.solver.device), ("fit", config.fit.base.device),
                           ("evaluate", config.evaluate.device)):
        if value is not None and not valid_device(value):
            raise ValueError(f"{section}.device={value!r}: must be {DEVICE_FORMS}")


def check_local_devices(config: PipelineConfig, device: str | None = None) -> None:
    """Refuse a device this machine lacks (e.g. --device cuda without CUDA), or an experts' bf16 it would only
    emulate, before anything is written. Not for Ray workers: there the workers' hardware counts, not the
    driver's."""
    from hyperzero.utils.torch_utils import bf16_emulated_reason, resolve_device

    check_device_names(config, device)
    for section, value in (("experts", config.experts.solver.device), ("fit", config.fit.base.device)):
        wanted = device or value or "auto"
        try:
            resolved = resolve_device(wanted)
        except ValueError:
            where, fix = ((f"--device {wanted}", "--device cpu (or auto)") if device else
                          (f"{section}.device={wanted}", f"--set {section}.device=auto (or cpu)"))
            raise ValueError(f"{where} was asked for, but CUDA is not available on this machine; use {fix}") from None
        if section == "experts" and config.experts.solver.precision == "bf16":
            reason = bf16_emulated_reason(resolved)
            if reason:
                raise ValueError(f"experts.precision=bf16 was asked for, but {reason}; use --set "
                                 "experts.precision=auto (picks fp32 here) or fp32")
