import imageio.v3 as iio
import numpy as np
import pytest

from hyperzero.envs import make
from hyperzero.envs.render import filmstrip, rollout_frames, save_video


@pytest.fixture(scope="module")
def frames():
    env = make("cheetah-run", context={"torso_length": 0.7}, render_mode="rgb_array", width=160, height=120)
    frames, _ = rollout_frames(env, lambda o: np.zeros(6), steps=20, seed=0)
    return frames


def test_headless_frames(frames):
    assert frames[0].shape == (120, 160, 3) and frames[0].dtype == np.uint8
    assert frames[0].std() > 5  # a real image, not a blank buffer


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_written_atomically_and_readable(tmp_path, frames, suffix):
    path = save_video(frames, tmp_path / f"clip{suffix}", fps=20)
    back = iio.imread(path)
    assert len(back) == len(frames)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_video_rejects_bad_input(tmp_path, frames):
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        save_video(frames, tmp_path / "clip.avi")
    with pytest.raises(ValueError, match="no frames"):
        save_video([], tmp_path / "clip.mp4")


def test_filmstrip(frames):
    assert filmstrip(frames, n=4).shape == (120, 640, 3)
