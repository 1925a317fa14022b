"""A damaged expert is retrained to the very bytes it had (so nothing made from it is redone), a damaged
expert_returns.json is really recomputed, and a damaged video is found and rendered again."""
import hashlib
from pathlib import Path

import pytest

from tests.reliability.conftest import TINY_OVERRIDES, garble, read_results, truncate

TASK = "speed=4_torso_length=0.5"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rerun(run: Path, overrides=TINY_OVERRIDES) -> None:
    from hyperzero.launchers.pipeline import Runtime, run_pipeline

    run_pipeline("tiny", run, overrides, runtime=Runtime(progress=False))


@pytest.mark.parametrize("damage", ["expert.pt garbled", "summary.json truncated", "no packing.json (older run)"])
def test_a_redone_expert_gives_the_same_results_bit_for_bit(run_copy, tiny_run, capsys, damage):
    experts = run_copy / "experts"
    before = {p.parent.name: _sha(p) for p in experts.glob("*/expert.pt")}
    if damage.startswith("no packing"):
        for p in (experts / "packing.json", experts / "packing.json.sha256"):
            p.unlink()
        garble(experts / TASK / "expert.pt")
    elif damage.startswith("summary"):
        truncate(experts / TASK / "summary.json")
    else:
        garble(experts / TASK / "expert.pt")
    _rerun(run_copy)
    said = capsys.readouterr().err
    assert "experts: 2/3 finished" in said and "re-simulating 2 finished ensemble mate(s)" in said, said
    assert "reproduced their saved experts bit for bit" in said
    assert {p.parent.name: _sha(p) for p in experts.glob("*/expert.pt")} == before
    # so the dataset task, the fits and the evaluation made from it are still current, and the numbers are equal
    assert "dataset: complete and valid" in said and "fits: all 2 fits complete and valid; skipped" in said
    assert "evaluate: results are current; skipped" in said
    assert (run_copy / "eval/results.csv").read_bytes() == (tiny_run / "eval/results.csv").read_bytes()
    assert read_results(run_copy) == read_results(tiny_run)
    assert not (experts / ".shadow").exists()


def test_a_damaged_expert_returns_file_is_really_recomputed(run_copy, tiny_run, capsys):
    from hyperzero.utils.integrity import verify
    from hyperzero.utils.io import read_json

    garble(run_copy / "eval/expert_returns.json")
    _rerun(run_copy)
    said = capsys.readouterr().err
    assert "eval/expert_returns.json: content does not match" in said and "recomputed eval/expert_returns.json" in said
    path = run_copy / "eval/expert_returns.json"
    assert verify(path, required=True)
    assert read_json(path) == read_json(tiny_run / "eval/expert_returns.json")


def test_a_damaged_video_is_found_and_rendered_again(run_copy, capsys):
    from hyperzero.utils.integrity import verify

    with_videos = [o for o in TINY_OVERRIDES if not o.startswith("evaluate.videos")] + ["evaluate.videos=true"]
    _rerun(run_copy, with_videos)  # an evaluation-only change: the cached rows are reused, the videos rendered
    videos = sorted((run_copy / "eval/videos").glob("*.mp4"))
    assert videos and all(verify(v, required=True) for v in videos)
    good = videos[0].read_bytes()
    truncate(videos[0])
    capsys.readouterr()
    _rerun(run_copy, with_videos)
    said = capsys.readouterr().err
    assert f"eval/videos/{videos[0].name}: content does not match" in said and "was damaged" in said, said
    assert verify(videos[0], required=True) and videos[0].read_bytes() == good
