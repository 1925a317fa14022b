"""n-step targets assembled from one-step rows: sums, discounts and cuts at episode ends and the newest row."""
import numpy as np
import pytest

from hyperzero.experts.replay import StackedReplay


class FixedIndices:
    """Stands in for a member's np.random.Generator: returns the indices we want to inspect."""

    def __init__(self, idx):
        self.idx = np.asarray(idx)

    def integers(self, low, high, size):
        return self.idx[:size]


def _filled(rewards, ends, capacity=None):
    r = StackedReplay(1, capacity or len(rewards), obs_dim=1, act_dim=1)
    for t, (rew, end) in enumerate(zip(rewards, ends)):
        r.add(np.array([[t]], np.float32), np.zeros((1, 1), np.float32), np.array([rew], np.float32),
              np.ones(1, np.float32), np.array([[t + 1]], np.float32), episode_end=np.array([end]))
    return r


def test_three_step_sums_and_bootstraps_from_the_third_next_obs():
    r = _filled([1, 2, 3, 4, 5, 6], [False] * 6)
    b = r.sample(2, [FixedIndices([0, 2])], gamma=0.5, n_step=3)
    np.testing.assert_allclose(b["reward"][0], [1 + 0.5 * 2 + 0.25 * 3, 3 + 0.5 * 4 + 0.25 * 5])
    np.testing.assert_allclose(b["discount"][0], [0.125, 0.125])
    np.testing.assert_allclose(b["next_obs"][0, :, 0], [3, 5])
    np.testing.assert_allclose(b["obs"][0, :, 0], [0, 2])


def test_cut_at_episode_end_and_at_the_newest_row():
    r = _filled([1, 2, 3, 4, 5, 6], [False, True, False, False, False, False])
    b = r.sample(3, [FixedIndices([0, 1, 4])], gamma=0.5, n_step=3)
    # row 0: episode ends after row 1 -> two steps; row 1: ends at once -> one step; row 4: row 5 is the newest
    np.testing.assert_allclose(b["reward"][0], [1 + 0.5 * 2, 2, 5 + 0.5 * 6])
    np.testing.assert_allclose(b["discount"][0], [0.25, 0.5, 0.25])
    np.testing.assert_allclose(b["next_obs"][0, :, 0], [2, 2, 6])


def test_terminal_rows_do_not_bootstrap():
    r = StackedReplay(1, 4, obs_dim=1, act_dim=1)
    for t, nd in enumerate([1.0, 0.0, 1.0, 1.0]):
        r.add(np.array([[t]], np.float32), np.zeros((1, 1), np.float32), np.ones(1, np.float32),
              np.array([nd], np.float32), np.array([[t + 1]], np.float32))
    b = r.sample(1, [FixedIndices([0])], gamma=0.9, n_step=3)
    assert b["reward"][0, 0] == pytest.approx(1.9) and b["discount"][0, 0] == 0.0


def test_ring_wrap_does_not_cross_from_newest_to_oldest():
    r = _filled([1, 2, 3, 4, 5, 6], [False] * 6, capacity=4)  # holds rows 2..5; ptr at slot 2 (row 6 would go)
    newest_slot = (r.ptr - 1) % r.capacity
    b = r.sample(1, [FixedIndices([newest_slot])], gamma=0.5, n_step=3)
    np.testing.assert_allclose(b["reward"][0], [6])
    np.testing.assert_allclose(b["discount"][0], [0.5])


def test_one_step_equals_the_plain_td_target():
    r = _filled([1, 2, 3], [False, False, True])
    b = r.sample(3, [FixedIndices([0, 1, 2])], gamma=0.99, n_step=1)
    np.testing.assert_allclose(b["reward"][0], [1, 2, 3])
    np.testing.assert_allclose(b["discount"][0], [0.99] * 3, rtol=1e-6)  # time-limit ends still bootstrap
