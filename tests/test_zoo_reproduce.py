"""`python -m orthoscope reproduce`: listing, errors, and one smoke reproduction end to end."""
import pytest
import torch

from orthoscope.__main__ import main as cli
from orthoscope.zoo import reproduce as R


@pytest.fixture(autouse=True)
def _restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_listing_names_every_reproduction(capsys):
    assert cli(["reproduce"]) == 0
    out = capsys.readouterr().out
    for name in R.REGISTRY:
        assert name in out
    assert {"superposition", "quanta", "time_scaling", "omnigrok", "effective_theory", "phase_diagram",
            "clock_pizza", "lottery"} <= set(R.REGISTRY)


def test_every_entry_states_paper_tolerance_and_scaling():
    for rep in R.REGISTRY.values():
        assert rep.paper and rep.tolerance and rep.scaled and rep.title


def test_unknown_name_and_bad_threads(capsys):
    assert R.main(["no-such-toy"]) == 2
    assert "unknown reproduction 'no-such-toy'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        R.main(["time_scaling", "--threads", "0"])


def test_smoke_run_prints_ours_paper_and_verdict(capsys):
    assert R.main(["time_scaling", "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "paper:" in out and "result:" in out and "smoke run, tolerance not checked" in out


def test_full_verdict_sets_exit_status(monkeypatch, capsys):
    fake = R.Reproduction("fake", "t", "p", "tol", "s", lambda smoke: R.Outcome(1.0, "d", passed=False))
    monkeypatch.setitem(R.REGISTRY, "fake", fake)
    assert R.main(["fake"]) == 1
    assert "within: NO" in capsys.readouterr().out
    monkeypatch.setitem(R.REGISTRY, "fake", R.Reproduction("fake", "t", "p", "tol", "s",
                                                           lambda smoke: R.Outcome(1.0, "d", passed=True)))
    assert R.main(["fake"]) == 0


def test_every_reproduction_runs_in_smoke_mode(capsys):
    # The same code path as the full reproductions, at toy size (~10 s for all of them on one thread).
    assert R.main(["all", "--smoke"]) == 0
    out = capsys.readouterr().out
    assert out.count("smoke run, tolerance not checked") == len(R.REGISTRY)
