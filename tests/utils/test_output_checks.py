"""The record every stage's output check returns: its state decides whether the output is kept, resumed, or moved
aside, and into which folder."""
import pytest

from hyperzero.utils.outputs import STATES, OutputCheck, set_aside


@pytest.mark.parametrize("state, bucket", [("ok", None), ("missing", None), ("unfinished", None),
                                           ("damaged", "corrupt"), ("changed", "stale")])
def test_each_state_names_its_quarantine_folder(state, bucket):
    check = OutputCheck(state, "why")
    assert check.bucket == bucket
    assert check.ok == (state == "ok")


def test_every_state_is_covered_and_an_unknown_one_is_refused():
    assert set(STATES) == {"ok", "missing", "unfinished", "damaged", "changed"}
    with pytest.raises(ValueError, match="state must be one of"):
        OutputCheck("corrupt", "a bucket is not a state")


@pytest.mark.parametrize("state, bucket", [("damaged", "corrupt"), ("changed", "stale")])
def test_set_aside_moves_the_output_into_its_bucket_and_says_why(tmp_path, capsys, state, bucket):
    unit = tmp_path / "fits" / "hyperzero" / "seed_0"
    unit.mkdir(parents=True)
    (unit / "done.json").write_text("{}")
    target = OutputCheck(state, "it is what the test says").set_aside(tmp_path, unit)
    assert not unit.exists() and (target / "done.json").exists()
    assert target.parent == tmp_path / bucket and target.name.startswith("fits__hyperzero__seed_0-")
    said = capsys.readouterr().err
    assert "fits/hyperzero/seed_0: it is what the test says; moved to " + bucket in said


@pytest.mark.parametrize("state", ["ok", "missing", "unfinished"])
def test_an_output_that_is_kept_is_never_moved(tmp_path, state):
    path = tmp_path / "dataset"
    path.mkdir()
    with pytest.raises(ValueError, match="not moved aside"):
        OutputCheck(state).set_aside(tmp_path, path)
    assert path.exists()


def test_set_aside_without_a_check_defaults_to_corrupt(tmp_path):
    path = tmp_path / "stage_times.json"
    path.write_text("[")
    assert set_aside(tmp_path, path, "unreadable").parent == tmp_path / "corrupt"
