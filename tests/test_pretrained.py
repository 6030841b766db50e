"""Meta-device init and sharded loading of local Hugging Face weights (orthoscope.distributed.pretrained).

A tiny seeded ``LlamaForCausalLM`` is saved with ``save_pretrained(dir, max_shard_size=...)`` into several shard
files. Under torchrun (gloo, CPU) at world sizes 2 and 3 (tests/pretrained_worker.py), the model is built on meta,
sharded per block then at the root (as ``Seam.prepare`` shards), materialised and filled: its logits equal
``LlamaForCausalLM.from_pretrained(dir)``'s within 1e-6, each rank reads about 1/N of the files' tensor bytes, a
random meta init is the same at every world size, and an OFT run of the pretrained model under FSDP2 equals one
process. POET attached on meta loads the same way — each rank reads its rows of the pre-permuted base weight — and
equals POET attached to the model loaded in one process, before and after a few steps with a merge. One process (no
torchrun) loads the same way; bad files fail with errors naming the file and key.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from pretrained_worker import IDS, N_CTX, VOCAB, losses, poet_method, run_case  # noqa: E402

from orthoscope.distributed.pretrained import PretrainedError, materialize, on_meta  # noqa: E402
from orthoscope.models.llama import build_llama, llama_config  # noqa: E402

TORCHRUN = Path(sys.executable).with_name("torchrun")
LAUNCH_TIMEOUT_S = 300
SHARD_SIZE = "60KB"          # the tiny Llama's 0.5 MB of fp32 weights in 9 files


def save_tiny(directory: Path, max_shard_size: str | None = SHARD_SIZE) -> Path:
    from transformers import LlamaForCausalLM

    torch.manual_seed(3)
    model = LlamaForCausalLM(llama_config("tiny", VOCAB, N_CTX))
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(directory), **kwargs)
    return directory


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("hf_sharded"))


@pytest.fixture(scope="module")
def single_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("hf_single"), max_shard_size="1GB")


def reference_logits(directory: Path) -> torch.Tensor:
    from transformers import LlamaForCausalLM

    with torch.no_grad():
        return LlamaForCausalLM.from_pretrained(str(directory)).eval()(input_ids=IDS).logits.float()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, *args) -> str:
    """tests/pretrained_worker.py under torchrun; on failure or timeout the whole process group is killed."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), OMP_NUM_THREADS="1")
    cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port",
           str(free_port()), str(HERE / "pretrained_worker.py"), *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"torchrun timed out after {LAUNCH_TIMEOUT_S}s:\n{out[-4000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"N{n}")
def launched(request, sharded_dir, tmp_path_factory):
    from safetensors.torch import load_file

    n = request.param
    out = tmp_path_factory.mktemp(f"pretrained_N{n}")
    torchrun(n, sharded_dir, out)
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]
    return n, load_file(str(out / "results.safetensors")), reports


def tensor_bytes(directory: Path) -> tuple[int, int]:
    """(total tensor bytes, Σ over tensors of one row's bytes) of the checkpoint, from its safetensors headers."""
    from safetensors import safe_open

    total = row = 0
    files = sorted(directory.glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                t = f.get_slice(key)
                shape, size = t.get_shape(), {"F32": 4, "BF16": 2, "F16": 2}[t.get_dtype()]
                numel = 1
                for d in shape:
                    numel *= d
                total += numel * size
                row += numel // shape[0] * size
    return total, row


# ---- under torchrun -----------------------------------------------------------------------------------------------

def test_checkpoint_has_several_shards(sharded_dir):
    assert (sharded_dir / "model.safetensors.index.json").is_file()
    assert len(list(sharded_dir.glob("model-*.safetensors"))) >= 3


def test_sharded_load_equals_from_pretrained(launched, sharded_dir):
    n, results, _ = launched
    torch.testing.assert_close(results["load/logits"], reference_logits(sharded_dir), rtol=0, atol=1e-6)


def test_each_rank_reads_its_share_of_the_files(launched, sharded_dir):
    n, _, reports = launched
    total, one_row_each = tensor_bytes(sharded_dir)
    assert all(r["world"] == n and r["bytes_total"] == total for r in reports)
    assert sum(r["bytes_read"] for r in reports) == total          # every row read once, by one rank
    for r in reports:       # torch.chunk rows: a rank holds at most ⌈rows/N⌉, one row more than 1/N per tensor
        assert r["bytes_read"] <= total / n + one_row_each, (r, total / n)


def test_random_meta_init_is_the_same_at_every_world_size(launched):
    n, results, _ = launched
    one = build_llama(llama_config("tiny", VOCAB, N_CTX), seed=5, init_device="meta", autocast_dtype=None)
    materialize(one, "cpu")
    for name, p in one.named_parameters():
        assert torch.equal(results[f"random/{name}"], p.detach()), name


def test_fsdp_and_ddp_finetuning_runs_equal_one_process(launched, sharded_dir):
    n, results, _ = launched
    ref = torch.tensor(losses(run_case(str(sharded_dir))), dtype=torch.float64)
    torch.testing.assert_close(results["run/losses"], ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(results["ddp/losses"], ref, rtol=1e-5, atol=0)


def test_fsdp_run_config_names_the_weights(launched, sharded_dir):
    _, _, reports = launched
    assert reports[0]["described"] == {"pretrained": str(sharded_dir), "init_device": "meta", "init_seed": 0}


def poet_reference(directory: Path):
    """POET (``poet_method``) attached to the model loaded whole by ``from_pretrained``, in one process."""
    from transformers import LlamaForCausalLM

    from orthoscope.models.llama import CausalLM

    return poet_method().attach(CausalLM(LlamaForCausalLM.from_pretrained(str(directory)), None))


def test_poet_sharded_load_equals_poet_on_the_loaded_model(launched, sharded_dir):
    _, results, _ = launched
    with torch.no_grad():
        ref = poet_reference(sharded_dir)(IDS)
    torch.testing.assert_close(results["poet/logits"], ref, rtol=0, atol=1e-6)


def test_poet_load_reads_each_ranks_rows_once(launched, sharded_dir):
    """init="keep" reads every tensor; a rank's rows of W_s are as many rows of W₀ as its shard holds, read once."""
    n, _, reports = launched
    total, one_row_each = tensor_bytes(sharded_dir)
    assert all(r["poet_bytes_total"] == total for r in reports)
    assert sum(r["poet_bytes_read"] for r in reports) == total
    for r in reports:
        assert r["poet_bytes_read"] <= total / n + one_row_each, (r, total / n)


def test_poet_random_meta_init_is_the_same_at_every_world_size(launched):
    _, results, _ = launched
    one = poet_method().attach(build_llama(llama_config("tiny", VOCAB, N_CTX), seed=5, init_device="meta",
                                           autocast_dtype=None))
    materialize(one, "cpu")
    for name, p in one.named_parameters():
        assert torch.equal(results[f"poet_random/{name}"], p.detach()), name


def test_poet_fsdp_run_with_a_merge_equals_one_process(launched, sharded_dir):
    """Three steps with a merge after the second (merge_every=2): once per layer on its owner under FSDP2."""
    _, results, _ = launched
    run = run_case(str(sharded_dir), method="POET")
    ref = torch.tensor(losses(run), dtype=torch.float64)
    assert run.interventions[-1].merges == 1
    torch.testing.assert_close(results["poet_run/losses"], ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(results["poet_ddp/losses"], ref, rtol=1e-5, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(results["poet_run/logits"], run.model(IDS), rtol=0, atol=1e-5)


# ---- one process --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["sharded", "single"])
def test_one_process_load_equals_from_pretrained(which, sharded_dir, single_dir):
    from orthoscope import Run
    from orthoscope.methods.base import AdamW
    from pretrained_worker import make_task

    directory = sharded_dir if which == "sharded" else single_dir
    model = build_llama(pretrained=directory, autocast_dtype=None)
    assert on_meta(model) and model.meta_init.pretrained == str(directory)
    run = Run(model, make_task(), AdamW(), probes=[], distributed=None)
    assert not on_meta(run.model)
    assert run.load_report.bytes_read == run.load_report.bytes_total == tensor_bytes(directory)[0]
    with torch.no_grad():
        torch.testing.assert_close(run.model(IDS), reference_logits(directory), rtol=0, atol=1e-6)


def test_materialize_refuses_a_model_with_values():
    model = build_llama(llama_config("tiny", VOCAB, N_CTX), seed=5, init_device="meta", autocast_dtype=None)
    materialize(model, "cpu")
    with pytest.raises(PretrainedError, match="has no parameters on the meta device: it is materialised already"):
        materialize(model, "cpu")
    with pytest.raises(PretrainedError, match="no meta_init plan"):
        materialize(build_llama(llama_config("tiny", VOCAB, N_CTX)), "cpu")


def test_random_meta_init_is_deterministic_and_hf_like():
    def build(seed):
        m = build_llama(llama_config("tiny", VOCAB, N_CTX), seed=seed, init_device="meta", autocast_dtype=None)
        materialize(m, "cpu")
        return dict(m.named_parameters())

    a, b, c = build(5), build(5), build(6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.model.layers.0.mlp.up_proj.weight"], c["model.model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(a["model.model.norm.weight"], torch.ones(64))
    assert abs(float(a["model.model.embed_tokens.weight"].detach().std()) - 0.02) < 0.002     # initializer_range
    # every weight matrix is its own stream, not a continuation of another's
    assert not torch.equal(a["model.model.layers.0.self_attn.q_proj.weight"],
                           a["model.model.layers.1.self_attn.q_proj.weight"])


def test_adapters_keep_their_init_and_base_weights_load(sharded_dir):
    """OFT at R = I and LoRA with B = 0 leave the pretrained function unchanged; their base weights load under the
    names the adapters gave them (``...q_proj.base_layer.weight``)."""
    from orthoscope import Run
    from orthoscope.adapters import LoRA, OFT
    from orthoscope.models.llama import LLAMA_TARGETS
    from pretrained_worker import make_task

    ref = reference_logits(sharded_dir)
    for method in (OFT(block=8, targets=LLAMA_TARGETS), LoRA(rank=4, targets=["q_proj", "v_proj"])):
        run = Run(build_llama(pretrained=sharded_dir, autocast_dtype=None), make_task(), method, probes=[],
                  distributed=None)
        params = dict(run.model.named_parameters())
        assert "model.model.layers.0.self_attn.q_proj.base_layer.weight" in params
        with torch.no_grad():
            torch.testing.assert_close(run.model(IDS), ref, rtol=0, atol=1e-5)
        if isinstance(method, LoRA):
            a = params["model.model.layers.0.self_attn.q_proj.lora_A"]
            a = a.detach()
            assert float(a.abs().max()) > 0 and float(a.abs().max()) <= 1 / 64 ** 0.5    # kaiming(a=√5) bound
            assert float(params["model.model.layers.0.self_attn.q_proj.lora_B"].detach().abs().max()) == 0


@pytest.mark.parametrize("init, settings", [("normalized_gaussian", {}), ("normalize", {}), ("keep", {}),
                                            ("keep", {"variant": "fs", "memory_mode": True})])
def test_poet_finetunes_a_pretrained_model_in_one_process(init, settings, sharded_dir):
    """POET attaches on meta (its draws kept for materialize) and the model is filled from the files: parameters,
    buffers, the merge generator and two steps equal POET on the same model loaded by from_pretrained, bitwise —
    for each init, and for POET-X's memory mode with the fully stochastic variant (the same layer). The Gaussian init
    ignores the pretrained projections: their tensors are not read."""
    from transformers import LlamaForCausalLM

    from orthoscope import Run
    from orthoscope.adapters import POET
    from orthoscope.adapters.poet import poet_layers
    from orthoscope.models.llama import CausalLM
    from pretrained_worker import make_task

    run = Run(build_llama(pretrained=sharded_dir, autocast_dtype=None), make_task(), POET(block=8, init=init, **settings),
              probes=[], distributed=None)
    # attached on meta (its draws kept, then dropped by materialize), not materialised first
    assert all(vars(layer).get("meta_draws", "absent") is None for _, layer in poet_layers(run.model))
    ref = Run(CausalLM(LlamaForCausalLM.from_pretrained(str(sharded_dir)), None), make_task(),
              POET(block=8, init=init, **settings), probes=[], distributed=None)
    total = tensor_bytes(sharded_dir)[0]
    assert run.load_report.bytes_read == run.load_report.bytes_total
    assert (run.load_report.bytes_read < total) if init == "normalized_gaussian" else (
        run.load_report.bytes_read == total)
    for kind in ("named_parameters", "named_buffers"):
        mine, theirs = dict(getattr(run.model, kind)()), dict(getattr(ref.model, kind)())
        assert list(mine) == list(theirs)
        for name in mine:
            assert torch.equal(mine[name], theirs[name]), name
    assert torch.equal(run.model.poet_generator.get_state(), ref.model.poet_generator.get_state())
    run.train(2, progress=False)
    ref.train(2, progress=False)
    assert run.last_loss == ref.last_loss


def test_scattered_rows_are_read_as_their_contiguous_runs(tmp_path):
    """``read_rows``: rows in any order come back in that order, read with one slice per contiguous run."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from orthoscope.distributed.pretrained_poet import read_rows

    w = torch.randn(12, 5)
    save_file({"w": w}, str(tmp_path / "w.safetensors"))
    index = torch.tensor([7, 2, 3, 11, 4, 8, 0])                  # runs [0], [2, 3, 4], [7, 8], [11]

    class Counting:
        def __init__(self, piece):
            self.piece, self.slices = piece, []

        def __getitem__(self, item):
            self.slices.append((item.start, item.stop))
            return self.piece[item]

    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as f:
        piece = Counting(f.get_slice("w"))
        assert torch.equal(read_rows(piece, index), w[index])
    assert piece.slices == [(0, 1), (2, 5), (7, 9), (11, 12)]


def test_quantized_poet_on_meta_is_refused_clearly(sharded_dir):
    from orthoscope.adapters import POET

    model = POET(block=8, quantize=8, group_size=32).attach(build_llama(pretrained=sharded_dir, autocast_dtype=None))
    with pytest.raises(PretrainedError, match=r"POET layer 'model.model.layers.0.self_attn.q_proj' has a quantized "
                                              r"base \(quantize=8\)"):
        materialize(model, "cpu")


# ---- bad files ----------------------------------------------------------------------------------------------------

def rewrite(directory: Path, edit) -> None:
    """Apply ``edit(dict)`` to the single ``model.safetensors`` of ``directory``."""
    from safetensors.torch import load_file, save_file

    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def load_into_meta(directory: Path):
    model = build_llama(pretrained=directory, autocast_dtype=None)
    materialize(model, "cpu")


def test_missing_shard_file(sharded_dir, tmp_path):
    broken = Path(shutil.copytree(sharded_dir, tmp_path / "broken"))
    (broken / "model-00002-of-00009.safetensors").unlink()
    with pytest.raises(PretrainedError, match=r"model.safetensors.index.json names the shard "
                                              r"'model-00002-of-00009.safetensors', which is missing"):
        load_into_meta(broken)


def test_no_weights_file(single_dir, tmp_path):
    broken = Path(shutil.copytree(single_dir, tmp_path / "broken"))
    (broken / "model.safetensors").unlink()
    with pytest.raises(PretrainedError, match="holds neither model.safetensors nor model.safetensors.index.json"):
        load_into_meta(broken)


def test_wrong_shape(single_dir, tmp_path):
    broken = Path(shutil.copytree(single_dir, tmp_path / "broken"))
    key = "model.layers.1.self_attn.k_proj.weight"
    rewrite(broken, lambda t: t.update({key: t[key].t().contiguous()}))
    with pytest.raises(PretrainedError, match=rf"{broken}/model.safetensors holds '{key}' of shape \[64, 32\], the "
                                              r"model's parameter 'model.model.layers.1.self_attn.k_proj.weight' has "
                                              r"shape \[32, 64\]"):
        load_into_meta(broken)


def test_missing_key(single_dir, tmp_path):
    broken = Path(shutil.copytree(single_dir, tmp_path / "broken"))
    rewrite(broken, lambda t: t.pop("model.norm.weight"))
    with pytest.raises(PretrainedError, match=r"the model needs 'model.norm.weight', which no file of .*broken holds"):
        load_into_meta(broken)


def test_unexpected_key(single_dir, tmp_path):
    broken = Path(shutil.copytree(single_dir, tmp_path / "broken"))
    rewrite(broken, lambda t: t.update({"model.extra.weight": torch.zeros(3)}))
    with pytest.raises(PretrainedError, match=r"model.safetensors holds 'model.extra.weight', which the model has no "
                                              "parameter for"):
        load_into_meta(broken)


# ---- configs ------------------------------------------------------------------------------------------------------

CONFIG = """\
seed: 0
steps: 2
task: {name: TokenTask, n_eval: 8, task: {name: TinyLang, n_ctx: 16, batch_size: 6, n_sentences: 300}}
model: {name: Llama, pretrained: %s, autocast_dtype: null}
method: {name: OFT, block: 8, targets: [q_proj, v_proj], lr: 0.01}
probes: []
"""


def test_config_names_pretrained_weights_relative_to_its_file(sharded_dir, tmp_path):
    from orthoscope.config.train import prepare

    home = tmp_path / "project"
    shutil.copytree(sharded_dir, home / "weights" / "tiny")
    (home / "configs").mkdir()
    config = home / "configs" / "finetune.yaml"
    config.write_text(CONFIG % "../weights/tiny")
    run, cfg, run_dir = prepare(config, [], runs=str(tmp_path / "runs"))
    assert Path(cfg["model"]["pretrained"]).is_absolute()
    assert Path(cfg["model"]["pretrained"]).resolve() == (home / "weights" / "tiny").resolve()
    with torch.no_grad():
        torch.testing.assert_close(run.model(IDS), reference_logits(sharded_dir), rtol=0, atol=1e-5)
    described = run.config                           # run.config is the run: it rebuilds these very weights
    assert described["model"]["pretrained"] == cfg["model"]["pretrained"]
    assert described["model"]["init_device"] == "meta"


@pytest.mark.parametrize("model, message", [
    ({"pretrained": "nowhere"}, r"model.pretrained: '.*nowhere' is not a directory"),
    ({"pretrained": "HF", "size": "tiny"}, r"model.size: a pretrained model's shape comes from"),
    ({"pretrained": "HF", "config": {"hidden_size": 32}}, r"model.config.hidden_size is 32 but .*config.json says 64"),
    ({"pretrained": "HF", "init_device": None}, r"model.init_device: pretrained weights are loaded into a model"),
    ({"size": "tiny", "init_device": "cuda"}, r"model.init_device must be 'meta' or null, got 'cuda'"),
])
def test_config_errors(model, message, sharded_dir):
    from orthoscope.config.build import build_run
    from orthoscope.config.format import ConfigError

    if model.get("pretrained") == "HF":
        model = {**model, "pretrained": str(sharded_dir)}
    cfg = {"seed": 0, "task": {"name": "TokenTask", "task": {"name": "TinyLang", "n_ctx": 16, "batch_size": 6}},
           "model": {"name": "Llama", **model}, "method": {"name": "AdamW"}, "probes": []}
    with pytest.raises(ConfigError, match=message):
        build_run(cfg)


def test_bad_weights_are_a_config_error_at_build(single_dir, tmp_path):
    from orthoscope.config.build import build_run
    from orthoscope.config.format import ConfigError

    broken = Path(shutil.copytree(single_dir, tmp_path / "broken"))
    rewrite(broken, lambda t: t.pop("lm_head.weight"))
    cfg = {"seed": 0, "task": {"name": "TokenTask", "task": {"name": "TinyLang", "n_ctx": 16, "batch_size": 6}},
           "model": {"name": "Llama", "pretrained": str(broken)}, "method": {"name": "AdamW"}, "probes": []}
    with pytest.raises(ConfigError, match=r"model.pretrained: the model needs 'lm_head.weight'"):
        build_run(cfg)


def test_default_build_is_unchanged():
    """Without init_device the Llama is built as before: real tensors, the draws of torch.manual_seed(seed)."""
    from transformers import LlamaForCausalLM

    model = build_llama(llama_config("tiny", VOCAB, N_CTX), seed=4)
    torch.manual_seed(4)
    ref = LlamaForCausalLM(llama_config("tiny", VOCAB, N_CTX))
    assert not on_meta(model) and not hasattr(model, "meta_init")
    for (name, p), (_, q) in zip(model.model.named_parameters(), ref.named_parameters()):
        assert torch.equal(p, q), name


def test_example_config_builds(sharded_dir, tmp_path):
    """docs/examples/pretrained_oft.yaml as written, pointed at the tiny checkpoint on the CPU (its task's windows cut
    to the tiny model's 16 positions): every key is accepted and the weights are the checkpoint's."""
    from orthoscope.config.train import prepare

    example = HERE.parent / "docs" / "examples" / "pretrained_oft.yaml"
    run, cfg, _ = prepare(example, [f"model.pretrained={sharded_dir}", "device=cpu", "task.task.n_ctx=16",
                                    "method.block=8"], runs=str(tmp_path / "runs"))
    assert type(run.method).__name__ == "OFT" and cfg["model"]["checkpointing"] is True
    with torch.no_grad():
        torch.testing.assert_close(run.model(IDS), reference_logits(sharded_dir), rtol=0, atol=1e-5)


def test_poet_example_config_builds(sharded_dir, tmp_path):
    """docs/examples/pretrained_poet.yaml as written, pointed at the tiny checkpoint on the CPU: POET attaches on meta
    with init="keep", so the run starts from the checkpoint's function (R = P = I)."""
    from orthoscope.adapters.poet import poet_layers
    from orthoscope.config.train import prepare

    example = HERE.parent / "docs" / "examples" / "pretrained_poet.yaml"
    run, cfg, _ = prepare(example, [f"model.pretrained={sharded_dir}", "device=cpu", "task.task.n_ctx=16",
                                    "method.block=8"], runs=str(tmp_path / "runs"))
    assert type(run.method).__name__ == "POET" and run.method.init == "keep" and cfg["model"]["checkpointing"] is True
    assert len(poet_layers(run.model)) == 14 and run.load_report.bytes_read == tensor_bytes(sharded_dir)[0]
    with torch.no_grad():
        torch.testing.assert_close(run.model(IDS), reference_logits(sharded_dir), rtol=0, atol=1e-5)


def test_bf16_checkpoint_loads_into_fp32_weights(tmp_path):
    """The dtype on disk is converted to the parameter's; bytes are counted at the file's 2 bytes per element."""
    from safetensors.torch import load_file
    from transformers import LlamaForCausalLM

    torch.manual_seed(3)
    LlamaForCausalLM(llama_config("tiny", VOCAB, N_CTX)).to(torch.bfloat16).save_pretrained(str(tmp_path))
    model = build_llama(pretrained=tmp_path, autocast_dtype=None)
    report = materialize(model, "cpu")
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert report.bytes_read == sum(t.numel() * 2 for t in saved.values())
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p.detach(), saved[name.removeprefix("model.")].float()), name


def test_tied_embeddings_stay_tied(tmp_path):
    """A checkpoint with tied input/output embeddings holds no ``lm_head.weight``: ``to_empty`` gives each module its
    own tensor, so the tie is restored before loading, and the output layer is the loaded embedding."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(3)
    LlamaForCausalLM(llama_config("tiny", VOCAB, N_CTX, tie_word_embeddings=True)).save_pretrained(str(tmp_path))
    model = build_llama(pretrained=tmp_path, autocast_dtype=None)
    materialize(model, "cpu")
    assert model.model.lm_head.weight is model.model.model.embed_tokens.weight
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), reference_logits(tmp_path), rtol=0, atol=1e-6)
