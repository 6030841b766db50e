"""The recorder inside the trainers people run: a Hugging Face ``Trainer`` on a tiny GPT-2 built from code, and a
Lightning ``Trainer`` on CPU, 20 steps each. Every probe is in the History at its scheduled steps, and the trainer's
own logs are those of the same training without the callback."""
from __future__ import annotations

import pytest
import torch

from orthoscope.probes import Energy, GradNorm, LearningRate, Spectrum, WeightNorm

STEPS, EVERY = 20, 5
TIMING = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos")


def probes():
    return [Spectrum(EVERY), WeightNorm(EVERY), Energy(EVERY, s=(1,)), GradNorm(1), LearningRate(1)]


def assert_scheduled(history, matrix: str):
    assert history[f"sv/{matrix}"].steps == list(range(0, STEPS + 1, EVERY))
    assert history[f"he_s1/{matrix}"].steps == list(range(0, STEPS + 1, EVERY))
    assert history["weight_norm/total"].steps == list(range(0, STEPS + 1, EVERY))
    assert history["grad_norm/total"].steps == list(range(1, STEPS + 1))
    assert history["lr/group0"].steps == list(range(0, STEPS + 1))
    assert history["loss/batch"].steps == list(range(1, STEPS + 1))


# ---- Hugging Face Trainer ----------------------------------------------------------------------------------------
def train_gpt2(tmp_path, callback=None):
    transformers = pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    transformers.set_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2))
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (80, 16), generator=g)]
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=STEPS, per_device_train_batch_size=4,
                             learning_rate=1e-3, lr_scheduler_type="linear", warmup_steps=4, logging_steps=1,
                             save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback] if callback else None)
    trainer.train()
    return trainer, model


def test_hf_trainer_records_every_probe_on_schedule_and_its_logs_are_unchanged(tmp_path):
    from orthoscope.integrations.hf import OrthoscopeCallback
    from orthoscope.viz.watch import WatchedRun

    plain, plain_model = train_gpt2(tmp_path)
    callback = OrthoscopeCallback(probes(), run_dir=tmp_path / "run")
    observed, model = train_gpt2(tmp_path, callback)

    strip = [{k: v for k, v in entry.items() if k not in TIMING} for entry in observed.state.log_history]
    assert strip == [{k: v for k, v in entry.items() if k not in TIMING} for entry in plain.state.log_history]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain_model.state_dict().values()))

    h = callback.history
    assert_scheduled(h, "transformer.h.0.attn.c_attn")
    logs = [e for e in observed.state.log_history if "loss" in e]
    assert [e["step"] for e in logs] == list(range(1, STEPS + 1))
    # the Trainer logs the loss and learning rate of each step; the recorder saw the same numbers
    assert h["loss/batch"].values == pytest.approx([e["loss"] for e in logs], abs=1e-4)
    assert h["lr/group0"].values[1:] == pytest.approx([e["learning_rate"] for e in logs], rel=1e-12)
    # the Trainer logs the norm before clipping to max_grad_norm (1.0); the recorder, the gradient the optimizer used
    assert h["grad_norm/total"].values == pytest.approx([min(e["grad_norm"], 1.0) for e in logs], rel=1e-5)
    watched = WatchedRun(tmp_path / "run")
    watched.refresh()
    assert watched.step_count == STEPS and sorted(watched.history) == sorted(h)


# ---- Lightning ---------------------------------------------------------------------------------------------------
def train_lightning(tmp_path, callback=None, name="plain"):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.loggers import CSVLogger

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    L.seed_everything(0, verbose=False)
    module = Classifier()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(160, 8, generator=g), torch.randint(0, 4, (160,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(1))
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=STEPS, logger=CSVLogger(tmp_path, name=name),
                        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback] if callback else None,
                        default_root_dir=tmp_path)
    trainer.fit(module, loader)
    return trainer, module


def test_lightning_trainer_records_every_probe_on_schedule_and_its_logs_are_unchanged(tmp_path):
    from orthoscope.integrations.lightning import OrthoscopeCallback

    plain, plain_module = train_lightning(tmp_path)
    callback = OrthoscopeCallback(probes())
    observed, module = train_lightning(tmp_path, callback, name="observed")

    read = lambda t: (__import__("pathlib").Path(t.logger.log_dir) / "metrics.csv").read_text()   # noqa: E731
    assert read(observed) == read(plain)
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), plain_module.state_dict().values()))
    h = callback.history
    assert_scheduled(h, "net.0")
    import csv
    import io
    logged = [float(r["train_loss"]) for r in csv.DictReader(io.StringIO(read(observed))) if r["train_loss"]]
    assert h["loss/batch"].values == pytest.approx(logged, rel=1e-6)
    assert h["lr/group0"].values[-1] == pytest.approx(1e-2 * 0.5 ** (STEPS // 7))   # after the step's scheduler


def test_integrations_name_the_missing_extra(monkeypatch):
    import builtins
    import importlib
    import sys

    real = builtins.__import__

    def no_lightning(name, *args, **kwargs):
        if name.startswith("lightning"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "orthoscope.integrations.lightning", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_lightning)
    with pytest.raises(ImportError, match=r"pip install orthoscope\[integrations\]"):
        importlib.import_module("orthoscope.integrations.lightning")
