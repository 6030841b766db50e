"""The demo command and the HTML report: a smoke run end to end, plus the pieces that the smoke run cannot reach."""
import re

import pytest
import torch

from orthoscope import History
from orthoscope import demo
from orthoscope.viz.report import build_report, offline_player


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = demo.main(["--smoke", "--out", str(out), "--seed", "1", "--steps", "30", "--threads", "2"])
    return code, buf.getvalue(), (out / "report.html")


def test_smoke_demo_writes_a_complete_self_contained_report(smoke_report):
    code, printed, path = smoke_report
    assert code == 0 and torch.get_num_threads() == 1          # main() restores the thread count it changed
    assert "a + b mod 31" in printed and "Trained 30 steps" in printed and f"wrote {path}" in printed
    text = path.read_text(encoding="utf-8")
    for heading in ("<h1>Grokking a + b mod 31</h1>", "1. Loss and accuracy", "2. The spectrum of <code>embed</code>",
                    "3. Singular-value entropy and hyperspherical energy", "4. Configuration"):
        assert heading in text
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', text)) == 3   # three figures
    assert "new Animation(frames" in text and text.count("frames[") >= 5                      # the jshtml player
    assert not re.search(r'(src|href)="(https?:)?//', text), "the report must not load anything from the network"
    assert "python -m orthoscope demo --smoke --out" in text and "--seed 1" in text         # how to reproduce
    assert "Held-out accuracy did not reach 99% within 30 steps" in text
    assert "<th>threads</th><td>2</td>" in text and "2 thread(s)" in printed


def test_demo_result_and_grokking_summary():
    cfg = demo.DemoConfig(**{**demo.SMOKE, "max_steps": 12, "probe_every": 4})
    result = demo.train_until_grok(cfg)
    h = result.run.history
    assert result.run.step_count == 12 and h["acc/test"].steps == [0, 4, 8, 12]
    assert result.grok_step is None and result.grok_seconds is None
    # the grokked path of the summary, with the numbers given
    grokked = demo.DemoResult(result.run, grok_step=540, grok_seconds=8.25, train_step=60, seconds=9.5)
    lines = demo.summary_lines(demo.DemoConfig(), grokked)
    assert lines == ["Training accuracy first reached 99% at step 60.",
                     "Held-out accuracy first reached 99% at step 540, after 8.2 s of wall time (probes included).",
                     "Trained 12 steps in 9.5 s."]


def test_train_until_grok_stops_at_the_target_then_trains_a_tail():
    # 90% of a p = 31 table: held-out accuracy passes 50% after ~150 steps (step 0 is never counted)
    cfg = demo.DemoConfig(**{**demo.SMOKE, "max_steps": 400, "probe_every": 5, "target": 0.5, "train_frac": 0.9})
    result = demo.train_until_grok(cfg)
    acc = result.run.history["acc/test"]
    first = next(s for s, v in zip(acc.steps, acc.values) if v >= 0.5 and s > 0)
    assert 50 < first < 400
    assert result.grok_step == first and result.grok_seconds > 0
    assert result.run.step_count == first + max(2 * 5, first // 4)


def test_first_step_at():
    h = History()
    for step, acc in [(0, 0.01), (10, 0.5), (20, 0.99), (30, 1.0)]:
        h.log(step, {"acc/test": acc})
    assert demo.first_step_at(h, "acc/test", 0.99) == 20
    assert demo.first_step_at(h, "acc/test", 1.01) is None
    assert demo.first_step_at(h, "acc/train", 0.5) is None


@pytest.mark.parametrize("argv, message", [(["--steps", "0"], "--steps must be a positive integer, got 0"),
                                           (["--threads", "-1"], "--threads must be a positive integer"),
                                           (["--bogus"], "unrecognized arguments: --bogus")])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        demo.parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_report_refuses_an_unrecorded_layer_and_strips_external_links():
    cfg = demo.DemoConfig(**{**demo.SMOKE, "max_steps": 2, "probe_every": 1})
    run = demo.build_run(cfg)
    run.train(2, progress=False)
    with pytest.raises(ValueError, match=r"no singular values recorded for layer 'layers.9'; recorded layers: "
                                         r"\['embed', 'layers.0', 'layers.1'\]"):
        build_report(run, title="t", layer="layers.9")
    html = '<link rel="stylesheet"\nhref="https://cdn.example/x.css">\n<div class="animation"></div>'
    assert "https://" not in offline_player(html) and '<div class="animation">' in offline_player(html)


def test_report_of_a_run_with_only_evaluation(tmp_path):
    from orthoscope.probes import Evaluate
    from orthoscope.viz.report import write_report

    run = demo.build_run(demo.DemoConfig(**{**demo.SMOKE, "max_steps": 3}))
    run.probes = [Evaluate(every=1)]
    run.train(3, progress=False)
    text = write_report(tmp_path / "r.html", run, title="only <curves>", config={"lr": 0.01}).read_text()
    assert "<title>only &lt;curves&gt;</title>" in text and "1. Loss and accuracy" in text
    assert "The spectrum" not in text and "Singular-value entropy" not in text
    assert "<h2>2. Configuration</h2>" in text and "<th>lr</th><td>0.01</td>" in text
