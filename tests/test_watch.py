"""Watching run directories (issue 15): the History on disk reads as the History in memory, refreshes
incrementally (torn lines, cut-back files), on an asyncio timer, and feeds a Dashboard beside a notebook Run."""
import asyncio
import warnings

import pytest
import torch

from orthoscope import Run, models, tasks
from orthoscope.config.build import build_run
from orthoscope.config.rundir import HistoryStream, cut_history, read_history
from orthoscope.config.train import train
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
        dash = Dashboard.watch(path, toy, every=2, live_every_s=0.0, live_share=1.0)
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


# ---- responsiveness (issue 15): batched callbacks, bounded reads, live redraws gated on the controls ------------
def _write_steps(path, cfg, steps):
    writer = build_run(cfg)
    writer.on_step(HistoryStream(path / "history.jsonl"))
    writer.train(steps, progress=False)
    return writer


def test_batched_subscriber_is_called_once_per_refresh_with_the_newest_record(run_dir):
    path, cfg = run_dir
    _write_steps(path, cfg, 4)
    watched = WatchedRun(path)
    per_record, batched = [], []
    watched.on_step(lambda r, rec: per_record.append(r.step_count))
    watched.on_step(lambda r, rec: batched.append((r.step_count, r.history.last_step, "loss/batch" in rec)),
                    batched=True)
    assert watched.refresh() == 5
    assert per_record == [0, 1, 2, 3, 4] and batched == [(4, 4, True)]
    assert watched.refresh() == 0 and batched == [(4, 4, True)]          # nothing new: no call


def test_refresh_reads_at_most_max_bytes_and_catches_up(run_dir):
    path, cfg = run_dir
    writer = _write_steps(path, cfg, 6)
    lines = (path / "history.jsonl").read_bytes().split(b"\n")[:-1]
    watched = WatchedRun(path, max_bytes=len(lines[0]) + len(lines[1]) + 3)   # two lines and a bit per refresh
    assert watched.refresh() == 2 and watched.behind
    counts = [watched.refresh()]
    while watched.behind:
        counts.append(watched.refresh())
    assert sum(counts) == 5 and all(c >= 1 for c in counts)
    same(watched.history, writer.history)
    tiny = WatchedRun(path, max_bytes=1)                                  # a record longer than max_bytes is read
    assert tiny.refresh() == 1 and tiny.behind
    with pytest.raises(ValueError, match="max_bytes must be a positive"):
        WatchedRun(path, max_bytes=0)


def test_timer_reads_the_next_chunk_at_once_when_behind(run_dir):
    path, cfg = run_dir
    _write_steps(path, cfg, 6)
    watched = WatchedRun(path, max_bytes=1)                               # one record per refresh

    async def scenario():
        watched.start(10.0)                                               # a long interval: only catch-up ticks
        await asyncio.sleep(0.5)
        watched.stop()
        return watched.step_count

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=30)) == 6


# The user's quiet window in the two tests below. It must outlast a scrub, a few training steps and a refresh on a
# loaded 2-core CI machine (those all run inside the window), so it is generous rather than fast.
QUIET_S = 1.5


def _watched_dashboard(path, quiet_s, live_share=1.0):
    from orthoscope.viz import Dashboard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dash = Dashboard.watch(path, every=2, live_every_s=0.0, quiet_s=quiet_s, live_share=live_share)
    draws = []
    redraw = dash.redraw
    dash.redraw = lambda: (draws.append(dash.watched[0].step_count), redraw())[1]
    scrub = dash.scrub
    dash.scrub = lambda: (draws.append(f"scrub to {dash.viewed_step}"), scrub())[1]
    return dash, draws


def test_watched_dashboard_redraws_once_per_refresh_and_not_while_the_user_scrubs(run_dir):
    import time

    path, cfg = run_dir
    writer = _write_steps(path, cfg, 2)
    dash, draws = _watched_dashboard(path, quiet_s=QUIET_S)
    watched = dash.watched[0]
    writer.train(3, progress=False)                                       # 3 records land
    assert watched.refresh() == 3 and draws == [5]                        # one redraw, showing all of them
    assert dash.slider.value == 5                                         # following: not a touch of the user's
    writer.train(1, progress=False)
    assert watched.refresh() == 1 and draws == [5, 6]                        # live_share=1: no spacing
    dash.slider.value = 2                                 # the user scrubs: the step panels only, no full redraw
    assert draws == [5, 6, "scrub to 2"]
    writer.train(2, progress=False)
    assert watched.refresh() == 2 and draws == [5, 6, "scrub to 2"]       # held back while the user is active
    assert dash.slider.value == 2
    time.sleep(QUIET_S + 0.1)
    assert watched.refresh() == 0 and draws == [5, 6, "scrub to 2", 8]   # the first quiet tick draws what came
    dash.close()
    assert not watched.watching and not watched._callbacks and not watched._after_refresh
    writer.train(1, progress=False)
    assert watched.refresh() == 1 and draws == [5, 6, "scrub to 2", 8]   # a closed Dashboard is not drawn


def test_a_scrub_keeps_the_held_back_live_redraw(run_dir):
    """A slider move redraws only the step panels, so records that were held back before it are still drawn."""
    import time

    path, cfg = run_dir
    writer = _write_steps(path, cfg, 2)
    dash, draws = _watched_dashboard(path, quiet_s=QUIET_S)
    watched = dash.watched[0]
    dash.slider.value = 1
    writer.train(2, progress=False)
    assert watched.refresh() == 2 and draws == ["scrub to 1"]               # held back: the user is active
    dash.slider.value = 0                                                   # another touch, curves still at 2
    time.sleep(QUIET_S + 0.1)
    assert watched.refresh() == 0 and draws == ["scrub to 1", "scrub to 0", 4]
    dash.close()


def test_live_redraws_take_at_most_their_share_of_the_time():
    import time

    from orthoscope.viz.watch import _LiveGate

    calls = []

    def slow_redraw(run, record):
        calls.append(record)
        time.sleep(0.2)

    gate = _LiveGate(quiet_s=0.0, share=0.25)            # after 0.2 s of drawing, 0.6 s without (ample for CI)
    live = gate.wrap(slow_redraw)
    live(None, 1)
    live(None, 2)                                        # too soon: held back, not lost
    assert calls == [1] and gate.pending
    gate.flush()
    assert calls == [1]
    time.sleep(0.7)
    gate.flush()
    assert calls == [1, 2] and not gate.pending
    with pytest.raises(ValueError, match=r"live_share must be in \(0, 1\]"):
        from orthoscope.viz.watch import watch
        watch(object, "x", live_share=0)


def test_a_change_made_by_the_live_redraw_is_not_a_touch():
    from orthoscope.viz.watch import _LiveGate

    gate = _LiveGate(quiet_s=60.0, share=1.0)
    live = gate.wrap(lambda run, record: gate.touch())   # the redraw moves the slider (following the newest step)
    live(None, 1)
    assert gate.last_touch == float("-inf")
    gate.touch()                                         # the user
    live(None, 2)
    assert gate.pending
