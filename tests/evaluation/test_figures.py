"""Figures render from a tiny real results table (1-D and 2-D sweeps), as PNG and PDF."""
import numpy as np
from matplotlib.image import imread

from hyperzero.evaluation.figures import _grid_triangles, learning_curves, make_all_figures, method_curves
from hyperzero.evaluation.metrics import ResultRow
from hyperzero.evaluation.stats import aggregate


def rows_1d():
    out = []
    for method, scale in (("hyperzero", 0.9), ("hyperzero_without_td", 0.8), ("hyperzero_without_q", 0.7),
                          ("mlp_policy", 0.5), ("context_blind", 0.2), ("maml@10shot", 0.4)):
        for seed in (0, 1):
            for speed in ((-4.0, 2.0) if seed == 0 else (2.0, 6.0)):
                out.append(ResultRow(method, seed, f"speed={speed:g}", {"speed": speed}, 2,
                                     scale * 600 + seed * 10, 5.0, 600.0, 100.0))
    return out


def test_one_dimensional_sweep_figures(tmp_path):
    written = make_all_figures(rows_1d(), ["speed"], tmp_path, stats=aggregate(rows_1d(), reps=100))
    names = {p.name for p in written}
    for stem in ("return_vs_speed", "summary_intervals", "ablation"):
        assert f"{stem}.png" in names and f"{stem}.pdf" in names
    image = imread(tmp_path / "return_vs_speed.png")
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert np.asarray(image).std() > 0.01  # something was drawn
    assert (tmp_path / "ablation.pdf").read_bytes()[:4] == b"%PDF"
    assert not (tmp_path / "surfaces.png").exists()  # 3-D surfaces only for two varied features


def rows_2d():
    """A 3 x 2 (speed, torso length) grid: each task held out in alternate seeds, (5, 0.5) in none."""
    rows = []
    for seed in (0, 1):
        for i, speed in enumerate((1.0, 3.0, 5.0)):
            for j, length in enumerate((0.3, 0.5)):
                if (i + j + seed) % 2 == 0 and (speed, length) != (5.0, 0.5):
                    for m, s in (("hyperzero", 0.9), ("mlp_policy", 0.5)):
                        rows.append(ResultRow(m, seed, f"s{speed}_l{length}", {"speed": speed, "torso_length": length},
                                              2, s * 500 + 10 * i, 3.0, 500.0))
    return rows


def test_two_dimensional_sweep_draws_heatmaps(tmp_path):
    written = make_all_figures(rows_2d(), ["speed", "torso_length"], tmp_path)
    assert (tmp_path / "heatmaps.png").exists() and (tmp_path / "heatmaps.pdf").exists()
    assert not (tmp_path / "ablation.png").exists()  # no ablation methods fitted
    assert any(p.name == "summary_intervals.png" for p in written)


def test_two_dimensional_sweep_draws_surfaces(tmp_path):
    written = make_all_figures(rows_2d(), ["speed", "torso_length"], tmp_path)
    names = [p.name for p in written]
    assert names.index("surfaces.png") == names.index("heatmaps.pdf") + 1  # right after the heat maps
    assert (tmp_path / "surfaces.pdf").read_bytes()[:4] == b"%PDF"
    image = imread(tmp_path / "surfaces.png")
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert np.asarray(image).std() > 0.01  # something was drawn


def test_surface_facets_join_neighbouring_measured_points_only():
    measured = np.array([[True, True, True],
                         [True, True, False],
                         [False, False, True]])
    triangles = _grid_triangles(measured)
    # cell (0,0) is complete: two triangles; cell (0,1) has three corners: one; the lower cells have two: none.
    assert len(triangles) == 3
    assert not any((2, 2) in t for t in triangles)  # an isolated point is not joined across the gap
    assert all(measured[c] for t in triangles for c in t)
    assert all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) == 1 for t in triangles for a in t for b in t if a != b)
    assert _grid_triangles(np.ones((1, 4), dtype=bool)) == []  # one value of a feature: nothing to span


def test_learning_curves_from_the_fits_progress(tmp_path):
    for seed in (0, 1):
        d = tmp_path / "run" / "fits" / "hyperzero" / f"seed_{seed}"
        d.mkdir(parents=True)
        (d / "progress.csv").write_text("step,train/action_loss,val/zero_shot_action_loss,val/return\n"
                                        + "".join(f"{s},{1 / s},{2 / s},{s + seed}\n" for s in (10, 20, 30)))
    curves = method_curves(tmp_path / "run")
    steps, val_return = curves["hyperzero"]["val/return"]
    assert steps.tolist() == [10, 20, 30] and val_return.tolist() == [10.5, 20.5, 30.5]   # mean over seeds
    written = learning_curves(tmp_path / "run", tmp_path / "curves")
    assert [p.name for p in written] == ["curves.png", "curves.pdf"]


def test_context_axes_carry_the_familys_units(tmp_path, monkeypatch):
    from hyperzero.evaluation import figures

    labels = []
    save = figures.save_figure

    def record_labels(fig, stem):
        labels.extend(label for ax in fig.axes for label in (ax.get_xlabel(), ax.get_ylabel()))
        return save(fig, stem)

    monkeypatch.setattr(figures, "save_figure", record_labels)
    make_all_figures(rows_1d(), ["speed"], tmp_path / "finger", family="finger-spin")
    assert "desired speed (rad/s; sign = direction)" in labels  # a spin, not a running speed
    assert not any("m/s" in label for label in labels)
    labels.clear()
    make_all_figures(rows_2d(), ["speed", "torso_length"], tmp_path / "cheetah", family="cheetah-run")
    assert {"desired speed (m/s; sign = direction)", "torso length (m)"} <= set(labels)


def test_training_task_rows_are_never_plotted(tmp_path):
    """Cloning rows (role "train") on a grid point never held out, with extreme returns, change no figure."""
    held = rows_2d()
    train = [ResultRow(m, 0, "s5.0_l0.5", {"speed": 5.0, "torso_length": 0.5}, 2, 5000.0, 3.0, 500.0, role="train")
             for m in ("hyperzero", "mlp_policy")]
    stats = aggregate(held, reps=100)
    make_all_figures(held, ["speed", "torso_length"], tmp_path / "held", stats=stats)
    make_all_figures(held + train, ["speed", "torso_length"], tmp_path / "mixed", stats=stats)
    for name in ("heatmaps.png", "surfaces.png"):
        assert np.array_equal(imread(tmp_path / "held" / name), imread(tmp_path / "mixed" / name)), name
