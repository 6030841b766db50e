"""History: append-only keyed series, pandas export, safetensors + JSON round trip."""
import json
import math

import pytest
import torch

from orthoscope import History
from orthoscope.core.checkpoint import CheckpointError


def make_history() -> History:
    h = History()
    g = torch.Generator().manual_seed(0)
    for step in (0, 10, 20):
        h.log(step, {"loss/train": 1.0 / (step + 1), "acc/test": torch.tensor(step / 20.0),
                     "sv/layers.0": torch.rand(5, generator=g, dtype=torch.float64),
                     "sv_entropy/layers.0": 0.5 + step / 100})
    h.log(20, {"grad_norm/total": float("nan"), "spectral_norm/embed": float("inf")})
    h.log(30, {"grad_norm/total": 2.5, "spectral_norm/embed": float("-inf")})
    return h


def test_keys_metrics_modules_and_series():
    h = make_history()
    assert h.keys() == ["loss/train", "acc/test", "sv/layers.0", "sv_entropy/layers.0", "grad_norm/total",
                        "spectral_norm/embed"]
    assert h.keys("sv") == ["sv/layers.0"]
    assert h.metrics() == ["acc", "grad_norm", "loss", "spectral_norm", "sv", "sv_entropy"]
    assert h.modules("sv_entropy") == ["layers.0"]
    assert h.last_step == 30
    s = h["loss/train"]
    assert s.steps == [0, 10, 20] and s.values == [1.0, 1.0 / 11, 1.0 / 21] and not s.is_array
    # 0-d tensors become Python floats; arrays become CPU float32
    assert h["acc/test"].values == [0.0, 0.5, 1.0] and isinstance(h["acc/test"].values[0], float)
    sv = h["sv/layers.0"]
    assert sv.is_array and sv.stack().shape == (3, 5) and sv.stack().dtype == torch.float32
    assert "loss/train" in h and "loss/nope" not in h
    with pytest.raises(KeyError, match="recorded keys"):
        h["loss/nope"]


def test_append_only_and_bad_values():
    h = make_history()
    with pytest.raises(ValueError, match="append-only"):
        h.log(5, {"new/key": 1.0, "loss/train": 0.1})
    assert h["loss/train"].steps == [0, 10, 20]           # the refused record left nothing behind
    assert "new/key" not in h
    with pytest.raises(TypeError, match="must be a number or a tensor"):
        h.log(40, {"loss/train": "low"})
    with pytest.raises(TypeError, match=r"'loss/train' holds numbers; step 40 gave an array"):
        h.log(40, {"loss/train": torch.ones(3)})
    with pytest.raises(TypeError, match=r"'sv/layers.0' holds arrays; step 40 gave a number"):
        h.log(40, {"sv/layers.0": 1.0})
    assert h["loss/train"].steps == [0, 10, 20] and h["sv/layers.0"].steps == [0, 10, 20]


def test_logged_tensor_is_a_copy():
    h = History()
    t = torch.ones(3)
    h.log(0, {"sv/a": t})
    t.mul_(7)
    assert torch.equal(h["sv/a"].last(), torch.ones(3))


def test_to_frame_holds_scalars_only():
    frame = make_history().to_frame()
    assert list(frame.columns) == ["step", "key", "metric", "module", "value"]
    assert "sv/layers.0" not in set(frame["key"])
    rows = frame[frame.key == "sv_entropy/layers.0"]
    assert rows["step"].tolist() == [0, 10, 20]
    assert rows["value"].tolist() == [0.5, 0.6, 0.7]
    assert set(rows["module"]) == {"layers.0"} and set(rows["metric"]) == {"sv_entropy"}
    assert len(frame) == 3 * 3 + 2 * 2


def test_save_load_round_trip_is_exact(tmp_path):
    h = make_history()
    h.save(tmp_path / "h.safetensors")
    back = History.load(tmp_path / "h.safetensors")
    assert back.keys() == h.keys()
    for key in h:
        a, b = h[key], back[key]
        assert a.steps == b.steps
        if a.is_array:
            assert all(torch.equal(x, y) for x, y in zip(a.values, b.values))
        else:
            for x, y in zip(a.values, b.values):
                assert x == y or (math.isnan(x) and math.isnan(y)), key
    assert math.isnan(back["grad_norm/total"].values[0])
    assert back["spectral_norm/embed"].values == [float("inf"), float("-inf")]
    # the reloaded history keeps appending
    back.log(40, {"loss/train": 0.01})
    assert back["loss/train"].steps[-1] == 40


def test_nothing_written_until_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_history().to_frame()
    assert list(tmp_path.iterdir()) == []


def test_load_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not an orthoscope checkpoint"):
        History.load(tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        History.load(tmp_path / "missing.safetensors")
    # a Run checkpoint is not a History file
    from orthoscope.core.checkpoint import write_atomic

    write_atomic(tmp_path / "run.safetensors", {"x": torch.ones(1)}, {"kind": "orthoscope.Run"})
    with pytest.raises(CheckpointError, match="expected a 'orthoscope.History'"):
        History.load(tmp_path / "run.safetensors")


def test_saved_metadata_is_plain_json(tmp_path):
    from safetensors import safe_open

    make_history().save(tmp_path / "h.safetensors")
    with safe_open(str(tmp_path / "h.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["orthoscope"])
    assert meta["kind"] == "orthoscope.History"
    assert meta["history"]["grad_norm/total"]["values"] == ["nan", 2.5]


def test_keys_are_built_and_read_by_one_helper():
    from orthoscope.core.keys import key, metric_of, split_key, where_of

    assert key("sv", "layers.0.mlp") == "sv/layers.0.mlp" and key("step_time") == "step_time"
    assert split_key("sv/layers.0.mlp") == ("sv", "layers.0.mlp") and split_key("step_time") == ("step_time", None)
    assert split_key("grad_norm/a/b") == ("grad_norm", "a/b")              # the metric ends at the first "/"
    assert metric_of("acc/test") == "acc" and where_of("acc/test") == "test" and where_of("loss") is None
    for bad in ("", "sv/x"):
        with pytest.raises(ValueError, match="metric name"):
            key(bad, "m")
