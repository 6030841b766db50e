"""Watching run directories (issue 15): the History on disk reads as the History in memory, refreshes
incrementally (torn lines, cut-back files), on an asyncio timer, and feeds a Dashboard beside a notebook Run."""
import asyncio
import warnings

import pytest
import torch

from orthoscope import Run, models, tasks
from orthoscope.config_run import build_run
from orthoscope.rundir import HistoryStream, cut_history, read_history
from orthoscope.train import train
from orthoscope.viz.watch import WatchedRun
from test_run import assert_same_history as same

CFG = {"seed": 0, "steps": 6, "task": {"name": "ModularArithmetic", "p": 7, "train_frac": 0.5},
       "model": {"name": "MLP", "vocab_size": 7, "n_tokens": 2, "d_out": 7, "hidden": [8], "d_embed": 4},
       "method": {"name": "AdamW", "lr": 0.01}, "probes": {"preset": "default", "every": 2},
       "checkpoint": {"every": 3, "keep": 1}}


@pytest.fixture()
def run_dir(tmp_path):
    from orthoscope.config import normalize, save_config

    cfg = normalize(CFG)
    save_config(cfg, tmp_path / "r" / "config.yaml")
    return tmp_path / "r", cfg


def test_history_on_disk_reads_as_in_memory(run_dir):
    path, cfg = run_dir
    run = train(build_run(cfg), cfg, path, progress=False)
    same(read_history(path), run.history)
    watched = WatchedRun(path)
    seen = []
    watched.on_step(lambda r, rec: seen.append(r.step_count))
    assert watched.refresh() == 7 and seen == list(range(7)) and watched.step_count == 6
    same(watched.history, run.history)
    assert watched.refresh() == 0 and watched.config["steps"] == 6


def test_refresh_reads_only_complete_new_lines_and_follows_a_cut(run_dir):
    path, cfg = run_dir
    run = build_run(cfg)
    stream = HistoryStream(path / "history.jsonl")
    run.on_step(stream)
    watched = WatchedRun(path)
    run.train(2, progress=False)
    assert watched.refresh() == 3
    with open(path / "history.jsonl", "a") as f:
        f.write('{"step": 3, "loss/ba')                       # a writer killed mid-line
    assert watched.refresh() == 0 and watched.step_count == 2
    cut_history(path / "history.jsonl", 1)                    # the restarted writer cuts back to its checkpoint
    with open(path / "history.jsonl", "a") as f:
        f.write('{"step": 2, "loss/batch": 9.5}\n')
    assert watched.refresh() == 3 and watched.history["loss/batch"].values[-1] == 9.5
    assert watched.history["loss/batch"].steps == [1, 2]


def test_timer_refreshes_on_the_running_loop(run_dir):
    path, cfg = run_dir
    run = build_run(cfg)
    run.on_step(HistoryStream(path / "history.jsonl"))
    watched = WatchedRun(path)
    assert watched.start(0.01) is False                       # no running loop here: nothing scheduled

    async def scenario():
        assert watched.start(0.01) and watched.watching
        counts = []
        for _ in range(3):
            run.step()
            await asyncio.sleep(0.1)                          # the kernel would be idle here
            counts.append(watched.step_count)
        watched.stop()
        return counts

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) == [1, 2, 3]
    assert not watched.watching


def test_dashboard_watch_puts_directories_beside_a_notebook_run(run_dir):
    from orthoscope.viz import Dashboard

    path, cfg = run_dir
    writer = build_run(cfg)
    stream = HistoryStream(path / "history.jsonl")
    writer.on_step(stream)
    writer.train(2, progress=False)
    torch.manual_seed(0)
    toy = Run(models.MLP(vocab_size=7, n_tokens=2, d_out=7, hidden=(8,), d_embed=4),
              tasks.ModularArithmetic(p=7, train_frac=0.5), seed=0, name="toy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash = Dashboard.watch(path, toy, every=2, live_every_s=0.0)
    watched = dash.watched[0]
    assert dash.names == ["r", "toy"] and dash.slider.max == 2
    lines_before = len(dash.axes["loss"].lines[0].get_xdata())
    writer.train(2, progress=False)
    watched.refresh()                                         # what the timer does in a kernel
    assert dash.slider.max == 4 and len(dash.axes["loss"].lines[0].get_xdata()) > lines_before
    dash.slider.value = 2                                     # scrubbing still works on a watched run
    assert dash.slider.value == 2
    dash.close()
    assert not watched.watching
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        WatchedRun(path / "missing")
