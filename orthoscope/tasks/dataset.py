"""DatasetTask: your own data in a ``Run`` — a torch ``Dataset`` or ``DataLoader``, or a Hugging Face
``datasets.Dataset`` — with a seeded order that checkpoints save, so a resumed run draws exactly the batches the
uninterrupted one would have drawn.

    task = DatasetTask(train_set, eval_set, batch_size=64)              # map-style torch Datasets
    task = DatasetTask(DataLoader(train_set, batch_size=64, shuffle=True), eval_fraction=0.1)
    task = DatasetTask(hf_dataset, input_column="pixels", target_column="label", batch_size=32)
    run = Run(model, task, AdamW(lr=1e-3), seed=0)

**The order.** Batches follow orthoscope's own order, not a DataLoader iterator: epoch ``e`` visits the training
items in ``torch.randperm(n)`` drawn from a generator seeded with ``(seed, e)`` (in dataset order when
``shuffle=False``), ``batch_size`` at a time; the last, shorter batch of an epoch is used, or dropped with
``drop_last=True`` (the DataLoader's rules). The position is three integers, ``(seed, epoch, position)``, which
``state_dict(generator)`` returns and ``Run.save`` stores in the checkpoint; ``Run.load`` puts them back, so resume is
exact. Each run (each generator) has its own position, so runs that share one task do not disturb each other.
``seed=None`` (the default) draws the seed from the run's generator at the first batch, so ``Run(seed=...)`` seeds
the data order as it does for orthoscope's own tasks; an integer fixes the order whatever the run's seed.

**A DataLoader** gives its dataset, ``batch_size``, ``collate_fn``, ``drop_last`` and whether it shuffles (a
``RandomSampler`` without replacement, or a ``SequentialSampler``). Anything else it could do — a custom sampler or
batch sampler, sampling with replacement, a ``DistributedSampler`` (a ``Run`` under torchrun shards each batch
itself) — cannot be reproduced from three integers and is refused, never approximated. Items are read in this
process (``dataset[i]``, or ``dataset.__getitems__`` as the DataLoader's fetcher does); ``num_workers`` is not used.
A Dataset whose items draw random numbers (augmentation) must draw them from torch's global generator, which
checkpoints save too; Python's ``random`` and NumPy's are not saved.

**Iterable datasets** (a torch ``IterableDataset``, a Hugging Face ``IterableDataset``) are refused: a stream has no
index to resume from, and the ``state_dict`` of a Hugging Face stream does not restore its shuffle buffer, so a
resumed run would see other data than an uninterrupted one.

**Items** are ``(input, target)`` pairs (a tuple or list of two), or mappings (dicts, Hugging Face rows) read through
``input_column`` and ``target_column``. Anything else is an error that names the item's index and what was found.
A DataLoader's own ``collate_fn`` receives the items as they are and must return an ``(input, target)`` pair.

**Splits.** ``eval_data`` is an explicit evaluation set (``eval_sets()["eval"]``); ``eval_fraction`` instead holds out
that fraction of ``data`` by a seeded ``torch.utils.data.random_split`` (``split_seed``). ``eval_sets()["train"]`` is
the first ``max_eval`` training items in dataset order, so train and eval curves are measured alike.
"""
from __future__ import annotations

import numbers
import warnings
import weakref
from collections.abc import Mapping

import torch

# A multiplier of the golden ratio (2**64 / φ): epoch e's permutation is seeded with seed + e·φ (mod 2**64), so the
# (seed, epoch) pairs a user meets never share a generator seed (that would need e·φ ≡ Δseed, e near 2**64).
_GOLDEN = 0x9E3779B97F4A7C15
_STATE_KEYS = ("seed", "epoch", "position", "data")


class DatasetTask:
    """A task over your own data (module docstring).

    Args:
        data: the training data: a map-style torch ``Dataset`` (anything with ``__len__`` and ``__getitem__``), a
            ``DataLoader`` over one, or a Hugging Face ``datasets.Dataset``.
        eval_data: an evaluation set of the same kinds (its DataLoader settings are not used), or None.
        batch_size: items per training batch; None takes the whole training set (full batch). Taken from a
            DataLoader, so it must not be given with one (nor ``collate_fn``, ``shuffle``, ``drop_last``).
        shuffle: a new seeded permutation every epoch (default), or dataset order.
        drop_last: drop the last, shorter batch of every epoch.
        collate_fn: turns a list of items into a batch (default ``torch.utils.data.default_collate`` on the pairs).
        seed: the seed of the order; None draws it from the run's generator at the first batch.
        eval_fraction: hold out this fraction of ``data`` for evaluation (a seeded ``random_split``).
        split_seed: the seed of that split (independent of the run's, so every run evaluates on the same items).
        input_column, target_column: the fields of mapping items (required for a Hugging Face dataset, whose rows
            are read in torch format).
        max_eval: at most this many items per evaluation set (None: all), collated once and kept.
        device: where batches and evaluation sets go (default: stay on the CPU).
        has_accuracy: whether accuracy means something; None: when the targets are integers (classes).
        loss: the loss a ``Run`` uses when given none (a name such as ``"cross_entropy"`` or ``"mse"``).
    """

    def __init__(self, data, eval_data=None, *, batch_size: int | None = None, shuffle: bool | None = None,
                 drop_last: bool | None = None, collate_fn=None, seed: int | None = None,
                 eval_fraction: float | None = None, split_seed: int = 0, input_column: str | None = None,
                 target_column: str | None = None, max_eval: int | None = 2048, device=None,
                 has_accuracy: bool | None = None, loss: str = "cross_entropy"):
        if (input_column is None) != (target_column is None):
            raise ValueError("DatasetTask: give both input_column and target_column (the fields of each item that "
                             f"are the input and the target), got input_column={input_column!r}, "
                             f"target_column={target_column!r}")
        self.columns = None if input_column is None else (input_column, target_column)
        _check_order_arguments(shuffle=shuffle, drop_last=drop_last, collate_fn=collate_fn)
        source = _from_source(data, "data", self.columns, dict(batch_size=batch_size, shuffle=shuffle,
                                                                   drop_last=drop_last, collate_fn=collate_fn))
        self.dataset, self.collate_fn = source["dataset"], source["collate_fn"]
        self.batch_size, self.shuffle, self.drop_last = source["batch_size"], source["shuffle"], source["drop_last"]
        self.source = source["kind"]
        _check_settings(batch_size=self.batch_size, seed=seed, split_seed=split_seed, max_eval=max_eval,
                        eval_fraction=eval_fraction, has_accuracy=has_accuracy)
        self.train_indices, eval_source, eval_indices = self._split(eval_data, eval_fraction, split_seed)
        self.eval_dataset, self.eval_indices = eval_source, eval_indices
        if self.drop_last and self.batch_size is not None and self.batch_size > len(self.train_indices):
            raise ValueError(f"DatasetTask: drop_last=True with batch_size={self.batch_size} larger than the "
                             f"{len(self.train_indices)} training items gives no batch at all")
        self.eval_fraction, self.split_seed, self.max_eval = eval_fraction, split_seed, max_eval
        self.device = None if device is None else torch.device(device)
        self.default_loss = loss
        self.seed = seed
        # Each generator's (seed, epoch, position): one stream per run that draws from this task (``batch``).
        self._streams: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._order: tuple[int, int, torch.Tensor] | None = None        # (seed, epoch, its permutation), cached
        self._eval: dict | None = None
        with torch.random.fork_rng(devices=[]):    # an augmenting Dataset must not move the global RNG here
            _, first_targets = self._collate(self.dataset, self.train_indices[:1], "data")   # checks item 0 early
        self.has_accuracy = (not first_targets.is_floating_point()) if has_accuracy is None else has_accuracy

    # ---- the order ---------------------------------------------------------------------------------------------
    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training batch in the seeded order (module docstring); advances ``(epoch, position)``.

        Each generator draws its own stream: two runs that share this task (one per method, say) each start at
        the beginning of their own order, as they would with a task of their own."""
        stream = self._stream(generator)
        if stream["seed"] is None:                # Run(seed=...) seeds the order: one draw, once, then saved
            stream["seed"] = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        n = len(self.train_indices)
        size = n if self.batch_size is None else self.batch_size
        if stream["position"] >= n or (self.drop_last and stream["position"] + size > n):
            stream["epoch"], stream["position"] = stream["epoch"] + 1, 0
        start = stream["position"]
        rows = self._permutation(stream["seed"], stream["epoch"])[start:start + size].tolist()
        stream["position"] += len(rows)
        return self._collate(self.dataset, [self.train_indices[r] for r in rows], "data")

    def batch_sizes(self) -> list[int]:
        """The sizes ``batch`` returns: the batch size (first), and the shorter last batch of an epoch, if any (a
        ``Run`` under torchrun checks that the world size divides each)."""
        n = len(self.train_indices)
        size = n if self.batch_size is None else min(self.batch_size, n)
        return [size] + ([n % size] if n % size and not self.drop_last else [])

    def _stream(self, generator: torch.Generator) -> dict:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"DatasetTask.batch(generator): expected a torch.Generator (a Run passes its own), got "
                            f"{type(generator).__name__}")
        if generator not in self._streams:
            self._streams[generator] = {"seed": self.seed, "epoch": 0, "position": 0}
        return self._streams[generator]

    def _permutation(self, seed: int, epoch: int) -> torch.Tensor:
        if self._order is None or self._order[:2] != (seed, epoch):
            n = len(self.train_indices)
            if self.shuffle:
                g = torch.Generator().manual_seed((seed + epoch * _GOLDEN) % 2 ** 64)
                self._order = (seed, epoch, torch.randperm(n, generator=g))
            else:
                self._order = (seed, epoch, torch.arange(n))
        return self._order[2]

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self, generator: torch.Generator) -> dict:
        """The position of ``generator``'s stream, as JSON: ``{"seed", "epoch", "position", "data"}`` (``data``
        describes the training items and the order's settings: a resume checks it, since other data cannot resume
        exactly). ``Run.save`` stores it; a stream that has drawn nothing yet is at epoch 0, position 0."""
        stream = self._streams.get(generator) or {"seed": self.seed, "epoch": 0, "position": 0}
        return {**stream, "data": self._describe_data()}

    def check_state(self, state) -> None:
        """Raise ``ValueError`` naming the field when ``state`` cannot resume this task exactly."""
        if not isinstance(state, dict) or set(state) != set(_STATE_KEYS):
            raise ValueError(f"must be an object with keys {list(_STATE_KEYS)}, got {state!r:.120}")
        seed = state["seed"]
        if seed is not None and not (_is_int(seed) and 0 <= seed < 2 ** 64):
            raise ValueError(f"seed must be null or an integer in [0, 2**64), got {seed!r}")
        if seed is None and self.seed is not None:
            raise ValueError(f"seed is null (drawn from the run), but this task fixes seed={self.seed}")
        if self.seed is not None and seed != self.seed:
            raise ValueError(f"seed is {seed}, but this task fixes seed={self.seed}")
        for name in ("epoch", "position"):
            if not _is_int(state[name]) or state[name] < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {state[name]!r}")
        if state["position"] > len(self.train_indices):
            raise ValueError(f"position {state['position']} is past the {len(self.train_indices)} training items")
        mine, theirs = self._describe_data(), state["data"]
        if mine != theirs:
            theirs = theirs if isinstance(theirs, dict) else {}
            diff = [f"{k}: saved {theirs.get(k)!r}, now {mine.get(k)!r}" for k in sorted(set(mine) | set(theirs))
                    if theirs.get(k) != mine.get(k)]
            raise ValueError(f"was saved with other data or order settings ({'; '.join(diff)}): the batches after "
                             "the resume would not be those of the saved run")

    def load_state_dict(self, state: dict, generator: torch.Generator) -> None:
        """Put ``generator``'s stream at ``state`` (checked first: nothing changes when it is refused)."""
        self.check_state(state)
        self._stream(generator).update(seed=state["seed"], epoch=state["epoch"], position=state["position"])

    def _describe_data(self) -> dict:
        return {"n_train": len(self.train_indices), "batch_size": self.batch_size, "shuffle": self.shuffle,
                "drop_last": self.drop_last, "eval_fraction": self.eval_fraction, "split_seed": self.split_seed}

    # ---- evaluation --------------------------------------------------------------------------------------------
    def eval_sets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``"train"``: the first ``max_eval`` training items (dataset order); ``"eval"``: the evaluation set."""
        if self._eval is None:
            # Built once, on first use, which is at another step in a resumed run than in the uninterrupted one; so
            # an augmenting Dataset draws its randomness here from a fixed seed (the same sets in both), and the
            # global RNG of the training stream is left as it was.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.split_seed)
                self._eval = self._build_eval_sets()
        return self._eval

    def _build_eval_sets(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        cap = len(self.train_indices) if self.max_eval is None else self.max_eval
        sets = {"train": self._collate(self.dataset, self.train_indices[:cap], "data")}
        if self.eval_indices:
            cap = len(self.eval_indices) if self.max_eval is None else self.max_eval
            where = "data" if self.eval_dataset is self.dataset else "eval_data"
            sets["eval"] = self._collate(self.eval_dataset, self.eval_indices[:cap], where)
        return sets

    def config(self) -> dict:
        """A description (a ``DatasetTask`` holds your objects, so no config file can rebuild it)."""
        return {"task": "DatasetTask", "source": self.source, **self._describe_data(),
                "n_eval": len(self.eval_indices), "max_eval": self.max_eval}

    def __len__(self) -> int:
        return len(self.train_indices)

    def __repr__(self) -> str:
        return (f"DatasetTask({self.source}, {len(self.train_indices)} training items, {len(self.eval_indices)} "
                f"eval, batch_size={self.batch_size}, shuffle={self.shuffle})")

    # ---- items → batches ---------------------------------------------------------------------------------------
    def _split(self, eval_data, eval_fraction, split_seed):
        n = _length(self.dataset, "data")
        if n == 0:
            raise ValueError("DatasetTask: data holds no items")
        if eval_data is not None and eval_fraction is not None:
            raise ValueError("DatasetTask: give eval_data or eval_fraction, not both")
        if eval_fraction is None:
            if eval_data is None:
                return list(range(n)), None, []
            source = _from_source(eval_data, "eval_data", self.columns, {})
            return list(range(n)), source["dataset"], list(range(_length(source["dataset"], "eval_data")))
        from torch.utils.data import random_split

        train, held = random_split(range(n), [1 - eval_fraction, eval_fraction],
                                   generator=torch.Generator().manual_seed(split_seed))
        if len(train) == 0 or len(held) == 0:
            raise ValueError(f"DatasetTask: eval_fraction={eval_fraction} of {n} items leaves "
                             f"{len(train)} for training and {len(held)} for evaluation; both need at least one")
        return sorted(train.indices), self.dataset, sorted(held.indices)      # each in dataset order

    def _fetch(self, dataset, indices: list[int]) -> list:
        """Items as the DataLoader's map-style fetcher reads them (``__getitems__`` when the dataset has it)."""
        getitems = getattr(dataset, "__getitems__", None)
        return list(getitems(indices)) if getitems is not None else [dataset[i] for i in indices]

    def _collate(self, dataset, indices: list[int], where: str) -> tuple[torch.Tensor, torch.Tensor]:
        items = self._fetch(dataset, indices)
        if self.collate_fn is None:
            from torch.utils.data import default_collate

            x, y = default_collate([self._pair(item, i, where) for item, i in zip(items, indices)])
        else:
            out = self.collate_fn(items)
            x, y = self._pair(out, None, where, what=f"the batch collate_fn made from items {indices[:4]}"
                              f"{' …' if len(indices) > 4 else ''}")
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"DatasetTask: a batch of {where} (items {indices[:4]}…) collates to "
                            f"({type(x).__name__}, {type(y).__name__}); inputs and targets must become tensors")
        if self.device is not None:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y

    def _pair(self, item, index, where: str, what: str | None = None):
        """``item`` as ``(input, target)``: a pair, or a mapping read through the columns; else a clear error."""
        what = what or f"item {index} of {where}"
        if isinstance(item, Mapping):
            if self.columns is None:
                raise TypeError(f"DatasetTask: {what} is a mapping with keys {sorted(map(str, item))[:10]}, not an "
                                "(input, target) pair: name the fields with input_column=... and target_column=...")
            missing = [c for c in self.columns if c not in item]
            if missing:
                raise KeyError(f"DatasetTask: {what} has no field {missing[0]!r}; its fields are "
                               f"{sorted(map(str, item))[:10]}")
            return item[self.columns[0]], item[self.columns[1]]
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return item[0], item[1]
        found = (f"a {type(item).__name__} of {len(item)} elements" if isinstance(item, (tuple, list))
                 else f"a {type(item).__name__} ({item!r:.60})")
        raise TypeError(f"DatasetTask: {what} is {found}, not an (input, target) pair; return (x, y) from "
                        "__getitem__ (or a dict read through input_column/target_column)")


# ---- what a source gives -------------------------------------------------------------------------------------------
def _from_source(data, name: str, columns, given: dict) -> dict:
    """``{"kind", "dataset", "batch_size", "shuffle", "drop_last", "collate_fn"}`` of a Dataset, a DataLoader or a
    Hugging Face dataset; refuses what cannot be resumed exactly."""
    from torch.utils.data import DataLoader, IterableDataset

    defaults = {"batch_size": None, "shuffle": True, "drop_last": False, "collate_fn": None}
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(dataset, IterableDataset) or _is_hf(dataset, "IterableDataset"):
        raise TypeError(f"DatasetTask({name}=...): {type(dataset).__name__} is an iterable dataset, which cannot be "
                        "resumed exactly: a stream has no index to restart from (and a Hugging Face stream's "
                        "state_dict does not restore its shuffle buffer). Use a map-style Dataset (with __len__ and "
                        "__getitem__; for Hugging Face, datasets.Dataset rather than a streaming one)")
    if isinstance(data, DataLoader):
        settings, kind = _from_loader(data, name, given), "DataLoader"
    else:
        settings = {k: (defaults[k] if given.get(k) is None else given[k]) for k in defaults}
        kind = type(data).__name__
    if _is_hf(dataset, "Dataset"):
        if columns is None:
            raise ValueError(f"DatasetTask({name}=...): a Hugging Face dataset needs input_column and target_column; "
                             f"its columns are {dataset.column_names}")
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise KeyError(f"DatasetTask({name}=...): the Hugging Face dataset has no column {missing[0]!r}; its "
                           f"columns are {dataset.column_names}")
        dataset, kind = dataset.with_format("torch", columns=list(columns)), "datasets.Dataset"
    elif isinstance(dataset, Mapping):
        raise TypeError(f"DatasetTask({name}=...): got a mapping ({type(dataset).__name__} with keys "
                        f"{sorted(map(str, dataset))[:6]}); pass one split as data and another as eval_data "
                        "(a DatasetDict: data=ds['train'], eval_data=ds['test'])")
    elif isinstance(dataset, (str, bytes)) or not (hasattr(dataset, "__getitem__")
                                                            and hasattr(dataset, "__len__")):
        raise TypeError(f"DatasetTask({name}=...): expected a map-style torch Dataset (with __len__ and "
                        f"__getitem__), a DataLoader or a Hugging Face datasets.Dataset, got "
                        f"{type(data).__name__} {data!r:.60}")
    return {"kind": kind, "dataset": dataset, **settings}


def _from_loader(loader, name: str, given: dict) -> dict:
    from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler, default_collate

    twice = [k for k, v in given.items() if v is not None]
    if twice:
        raise ValueError(f"DatasetTask({name}=DataLoader): {twice[0]} is set by the DataLoader; do not give it "
                         "again (or pass the dataset instead of the DataLoader)")
    if loader.batch_size is None and loader.batch_sampler is None:
        raise ValueError(f"DatasetTask({name}=DataLoader): the DataLoader has batch_size=None (it yields single "
                         "items); give it a batch_size")
    sampler = loader.sampler
    if type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None:
        shuffle = True
    elif type(sampler) is SequentialSampler:
        shuffle = False
    else:
        detail = (" (replacement=True or num_samples)" if isinstance(sampler, RandomSampler) else
                  " (under torchrun a Run shards each batch itself)" if type(sampler).__name__ == "DistributedSampler"
                  else "")
        raise ValueError(f"DatasetTask({name}=DataLoader): its sampler {type(sampler).__name__}{detail} cannot be "
                         "reproduced from a saved (seed, epoch, position), so a resumed run would see other batches. "
                         "orthoscope draws its own seeded order: pass DataLoader(..., shuffle=True) or shuffle=False "
                         "without a sampler, or the dataset itself")
    if type(loader.batch_sampler) is not BatchSampler or loader.batch_sampler.sampler is not sampler:
        raise ValueError(f"DatasetTask({name}=DataLoader): its batch_sampler {type(loader.batch_sampler).__name__} "
                         "cannot be reproduced from a saved (seed, epoch, position); give the DataLoader a "
                         "batch_size instead")
    if loader.num_workers:
        warnings.warn(f"DatasetTask: the DataLoader's num_workers={loader.num_workers} is not used; items are read "
                      "in this process so that the order resumes exactly", stacklevel=4)
    collate = None if loader.collate_fn is default_collate else loader.collate_fn
    return {"batch_size": loader.batch_size, "shuffle": shuffle, "drop_last": loader.drop_last,
            "collate_fn": collate}


def _is_hf(obj, cls_name: str) -> bool:
    """Whether ``obj`` is a ``datasets.<cls_name>``, without importing ``datasets`` when it is not loaded."""
    import sys

    module = sys.modules.get("datasets")
    return module is not None and isinstance(obj, getattr(module, cls_name, ()))


def _length(dataset, name: str) -> int:
    try:
        return len(dataset)
    except TypeError as e:
        raise TypeError(f"DatasetTask({name}=...): {type(dataset).__name__} has no length ({e}); a map-style "
                        "Dataset needs __len__") from e


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_order_arguments(*, shuffle, drop_last, collate_fn) -> None:
    for name, value in (("shuffle", shuffle), ("drop_last", drop_last)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"DatasetTask({name}=...) must be True or False, got {value!r:.60}")
    if collate_fn is not None and not callable(collate_fn):
        raise TypeError(f"DatasetTask(collate_fn=...) must be callable (a list of items → (input, target)), got "
                        f"{collate_fn!r:.60}")


def _check_settings(*, batch_size, seed, split_seed, max_eval, eval_fraction, has_accuracy) -> None:
    from ..core.validate import check_number

    if batch_size is not None:
        check_number("DatasetTask(batch_size=...)", batch_size, low=1, integer=True)
    if seed is not None:
        check_number("DatasetTask(seed=...)", seed, low=0, high=2 ** 64 - 1, integer=True)
    check_number("DatasetTask(split_seed=...)", split_seed, low=0, high=2 ** 63 - 1, integer=True)
    if max_eval is not None:
        check_number("DatasetTask(max_eval=...)", max_eval, low=1, integer=True)
    if eval_fraction is not None and not (isinstance(eval_fraction, numbers.Real) and 0 < eval_fraction < 1):
        raise ValueError(f"DatasetTask(eval_fraction=...) must lie in (0, 1), got {eval_fraction!r}")
    if has_accuracy is not None and not isinstance(has_accuracy, bool):
        raise TypeError(f"DatasetTask(has_accuracy=...) must be True, False or None, got {has_accuracy!r}")
