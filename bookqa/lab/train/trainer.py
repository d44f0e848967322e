"""The QR training loop (the QRRanker paper's recipe): AdamW over the scope's parameters, batch size 1 with gradient
accumulation, checkpoints every N steps, resume from the last one, validation Recall@1/3/5 before, at
every checkpoint and after, and an output directory that QRRanker loads as a model.

Sample order: optimiser step k (1-based) uses the samples at positions (k−1)·accum … k·accum−1 of an
endless sequence of seeded permutations of the training split (one permutation per epoch), so the order
depends only on the step number and a resumed run sees exactly the samples an uninterrupted one would.

Precision: float32 weights everywhere (AdamW updates of 1e-5 vanish in bfloat16 weights); on CUDA the
forward runs under bfloat16 autocast. The question-row softmax is float32 either way (readout.py).

Output directory (``out``)::

    config.json, model.safetensors     the decoder, layers 0..L only (LoRA merged), float32
    tokenizer files                    the base model's tokenizer
    qr_heads.json                      the heads, the prompt layout and how they were trained
    training-report.json               options, samples, per-step losses, validation before/after
    loss-curve.svg                     per-step loss and its running mean
    checkpoints/step-NNNNNN/           the last checkpoint (resume point)
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ...errors import ConfigError, InputError
from ...fileio import fingerprint, write_json
from ...progress import Progress, no_progress
from ...rerank.heads import MODEL_DIR_HEADS
from ...settings import Settings
from ..settings import TrainSettings
from .checkpoint import latest_checkpoint, load_checkpoint, read_state, save_checkpoint
from .curve import running_mean, write_loss_curve
from .loss import SCALE, group_contrastive_loss
from .samples import TrainSample, fit_sample, read_samples, shuffled
from .scope import SCOPES, prepare

HEADS_FILE = MODEL_DIR_HEADS  # found by bookqa.rerank.heads.resolve_heads in a model directory
REPORT_FILE = "training-report.json"
CURVE_FILE = "loss-curve.svg"
CHECKPOINTS = "checkpoints"
KS = (1, 3, 5)
# Learning rate when none is set: the paper's for full fine-tuning; LoRA's adapters start at zero and need
# about ten times more to move in a few dozen steps (the 30-step CPU run, docs/training-qwen2.5-coder-0.5b.md)
DEFAULT_LR = {"full": 1e-5, "qr-layers": 1e-5, "lora": 1e-4}
# Candidate order in training prompts. Retriever order (the paper's) puts a gold chunk first far more often
# than chance (docs/training-qwen2.5-coder-0.5b.md, "But it learned the prompt position"), which rewards the
# primacy that untrained heads already have; "shuffled" permutes each training sample's candidates once
# (seeded by sample id), so position carries no information. Validation keeps retriever order.
ORDERS = ("retriever", "shuffled")
# How candidates are laid out: the full prompt (every candidate reads those before it), or the block layout
# of cached-chunk QR (bookqa/rerank/blocks.py: each candidate sees only the shared prefix and itself, all at
# one position range), so the heads learn to rank as the cached pass scores; or that layout with the adapter on
# the question block only ("question"): the prefix's and the chunks' keys/values are the base model's, as
# a book's chunk cache holds them, so one cache serves the base model and every such adapter, and a training
# sample runs only the question's tokens with gradients (basekv.py keeps the blocks' rows on disk).
ATTENTIONS = ("full", "block", "question")
BASE_KV_DIR = "base-kv"


@dataclass(frozen=True)
class TrainOptions:
    scope: str = "full"
    steps: int = 100
    lr: float = 0.0  # 0 = by scope (DEFAULT_LR)
    accum: int = 4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    candidates: int = 20
    order: str = "retriever"  # ORDERS
    attention: str = "full"  # ATTENTIONS
    max_tokens: int = 120
    checkpoint_every: int = 25
    val_frac: float = 0.1
    val_limit: int = 50
    grad_checkpointing: bool = True
    lora_rank: int = 16
    lora_alpha: float = 32.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lr == 0:  # frozen: set once, here
            object.__setattr__(self, "lr", DEFAULT_LR.get(self.scope, DEFAULT_LR["full"]))

    @classmethod
    def from_settings(cls, settings: TrainSettings, **overrides: Any) -> "TrainOptions":
        values = {f.name: getattr(settings, f"train_{f.name}") for f in dataclasses.fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        opts = cls(**values)
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        for name in ("steps", "accum", "candidates", "max_tokens", "checkpoint_every", "lora_rank"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train {name} must be at least 1, got {getattr(self, name)}")
        if self.order not in ORDERS:
            raise ConfigError(f"train order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"train attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if self.candidates < 2:
            raise ConfigError("training needs at least 2 candidates per prompt")
        if self.attention == "question" and self.scope != "lora":
            raise ConfigError("attention 'question' trains an adapter over the base weights: it needs scope lora")
        if not 0 <= self.val_frac < 1:
            raise ConfigError(f"val_frac must be in [0, 1), got {self.val_frac}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.val_limit < 0:
            raise ConfigError("lr must be positive; weight_decay, grad_clip and val_limit not negative")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_key(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed (steps, checkpoint spacing and validation size
        may change between runs)."""
        key = {k: v for k, v in self.to_json().items() if k not in ("steps", "checkpoint_every", "val_limit")}
        if key["order"] == "retriever":  # checkpoints from before the option existed stay resumable
            del key["order"]
        if key["attention"] == "full":
            del key["attention"]
        return key


# ---------------------------------------------------------------------------------------------
# pieces (also used by the tests)
# ---------------------------------------------------------------------------------------------

@dataclass
class Example:
    """A fitted sample and its built prompt."""

    sample: TrainSample
    prompt: Any  # BuiltPrompt


def make_optimizer(trainable: dict, options: TrainOptions):
    import torch

    return torch.optim.AdamW(list(trainable.values()), lr=options.lr, weight_decay=options.weight_decay)


def sample_loss(scorer, example: Example):
    return group_contrastive_loss(scorer.scores(example.prompt), example.sample.gold)


def optimizer_step(scorer, batch: Sequence[Example], trainable: dict, optimizer, grad_clip: float = 0.0) -> float:
    """One optimiser step over ``batch`` (gradients accumulated one sample at a time); the mean loss."""
    import torch

    total = 0.0
    for ex in batch:
        loss = sample_loss(scorer, ex) / len(batch)
        loss.backward()
        total += float(loss.detach())
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(list(trainable.values()), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def sample_order(n: int, seed: int, step: int, accum: int) -> list[int]:
    """Training-split indices used by optimiser step ``step`` (1-based); see the module docstring."""
    out, perms = [], {}
    for micro in range(accum):
        epoch, pos = divmod((step - 1) * accum + micro, n)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        out.append(int(perms[epoch][pos]))
    return out


def validate(scorer, examples: Sequence[Example], progress: Progress = no_progress) -> dict[str, Any]:
    """Recall@1/3/5, Hit@k and MRR of the QR scores on ``examples``, next to the retriever order."""
    import torch

    from ..detection.detect import evaluate

    mats, golds = [], []
    progress("validating", 0, len(examples))
    with torch.no_grad():
        for i, ex in enumerate(examples):
            mats.append(scorer.scores(ex.prompt).double().cpu().numpy()[None])
            golds.append(ex.sample.gold)
            progress("validating", i + 1, len(examples))
    if not mats:
        return {}
    return {"qr": evaluate(mats, golds, [0], KS), "retriever_order": evaluate(mats, golds, None, KS)}


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _recall_line(ev: dict[str, Any]) -> str:
    if not ev:
        return "no validation samples"
    q, r = ev["qr"], ev["retriever_order"]
    return (f"R@1 {q['R@1']:.3f}  R@3 {q['R@3']:.3f}  R@5 {q['R@5']:.3f}  MRR {q['MRR']:.3f}  (n={q['n']}; "
            f"retriever order R@1 {r['R@1']:.3f} R@3 {r['R@3']:.3f} R@5 {r['R@5']:.3f})")


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

def load_examples(paths: Sequence[str | Path], tokenizer, scorer, options: TrainOptions
                  ) -> tuple[list[Example], list[Example], dict[str, Any]]:
    """Read the sample files, fit each sample to the options and build its prompt."""
    from ..detection.seeds import TokenBudget

    samples = read_samples(paths, options.val_frac)
    budget = TokenBudget(tokenizer.backend_tokenizer)
    drops: dict[str, int] = {}
    train, val = [], []
    for s in samples:
        fitted = fit_sample(s, budget, options.candidates, options.max_tokens, drops)
        if fitted is None:
            continue
        if options.order == "shuffled" and fitted.split != "val":
            fitted = shuffled(fitted, options.seed)
        ex = Example(fitted, scorer.prompt(fitted.question, fitted.candidates, fitted.prefix))
        (val if fitted.split == "val" else train).append(ex)
    if not train:
        raise InputError(f"no training samples left in {', '.join(map(str, paths))} "
                         f"(read {len(samples)}, dropped {drops or 'none'}, validation {len(val)})")
    tokens = [ex.prompt.n_tokens for ex in train + val]
    info = {"read": len(samples), "train": len(train), "val": len(val), "dropped": drops,
            "with_prefix": sum(1 for ex in train + val if ex.sample.prefix),
            "sources": {src: sum(1 for ex in train if ex.sample.source == src)
                        for src in sorted({ex.sample.source for ex in train})},
            "prompt_tokens_mean": float(np.mean(tokens)), "prompt_tokens_max": int(max(tokens)),
            "candidates_mean": float(np.mean([len(ex.sample.candidates) for ex in train + val])),
            "gold_first_share": float(np.mean([0 in ex.sample.gold for ex in train]))}
    return train, val, info


def _precision(device: str):
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16, "float32 weights, bfloat16 autocast"
    return None, "float32"


def train(model: str, data: Sequence[str | Path], out: str | Path, *, heads: Optional[str] = None,
          settings: Optional[Settings] = None, options: Optional[TrainOptions] = None, fresh: bool = False,
          merge: bool = False, command: str = "", progress: Progress = no_progress,
          log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Train the layers feeding the QR heads of ``model`` (registry name, hub id or directory) on the
    sample files ``data`` and write a QRRanker model directory to ``out``; returns the training report.

    ``heads``: a heads file or builtin:NAME (default: the model's resolved heads). An existing checkpoint
    in ``out`` made with the same model, heads, data and options is resumed unless ``fresh``. The ``lora``
    scope writes the adapter alone (~25 MB for the embedded model, loaded over ``model``), or with ``merge``
    a full merged copy.
    """
    import torch

    from ...weights import causal_lm_source, resolve_device
    from ...rerank import QRRanker
    from ...rerank.heads import resolve_heads
    from ...rerank.qr import load_model, load_tokenizer
    from .scores import QRScorer

    settings = settings or Settings.from_env()
    options = options or TrainOptions.from_settings(TrainSettings.from_env())
    options.validate()
    out = Path(out)
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    started = time.time()
    source = causal_lm_source(model, settings, progress)
    headset = resolve_heads(model, heads, model_dir=source)
    device = resolve_device(settings.device)
    autocast, precision = _precision(device)
    progress("loading model", 0, 1)
    net = load_model(source, device=device, dtype="float32", keep_layers=headset.deepest_layer + 1)
    tokenizer = load_tokenizer(source)
    progress("loading model", 1, 1)
    # The prompt layout and question span exactly as QRRanker would use with these heads.
    layout = QRRanker(model=(net, tokenizer), heads=headset, settings=settings).layout
    scorer = QRScorer(net, tokenizer, headset, layout, checkpointing=options.grad_checkpointing,
                      autocast_dtype=autocast, attention=options.attention)
    if options.attention == "question":
        from .basekv import BaseBlockKV
        from ...rerank.qr import resolve_dtype

        # A frozen copy encodes the blocks, in the dtype the product's reranker would run on this device.
        base_dtype = str(resolve_dtype(settings.dtype, device)).removeprefix("torch.")
        base = load_model(source, device=device, dtype=base_dtype, keep_layers=headset.deepest_layer + 1)
        scorer.base_kv = BaseBlockKV(base, headset.deepest_layer, out / BASE_KV_DIR,
                                     identity=fingerprint({"source": str(source), "dtype": base_dtype}))
    train_set, val_set, sample_info = load_examples(data, tokenizer, scorer, options)
    val_set = val_set[:options.val_limit]
    torch.manual_seed(options.seed)  # LoRA's initial adapters
    prepared = prepare(net, headset, options.scope, options.lora_rank, options.lora_alpha)
    optimizer = make_optimizer(prepared.trainable, options)
    n_trainable = sum(p.numel() for p in prepared.trainable.values())
    log(f"model {model} ({source}), {len(scorer.decoder.layers)} layers kept, {len(headset.heads)} heads "
        f"(deepest layer {headset.deepest_layer}); scope {options.scope}: {n_trainable:,} trainable parameters "
        f"in {len(prepared.trainable)} tensors; {device}, {precision}")
    log(f"samples: {sample_info['train']} train, {sample_info['val']} validation "
        f"({len(val_set)} scored), dropped {sample_info['dropped'] or 'none'}; "
        f"{sample_info['prompt_tokens_mean']:.0f} prompt tokens on average")

    key = fingerprint({"source": str(source), "heads": [list(h) for h in headset.heads], "layout": layout.to_json(),
                       "options": options.run_key(),
                       "train": [[ex.sample.id, ex.prompt.input_ids, ex.sample.gold] for ex in train_set]})
    ckpt_dir = out / CHECKPOINTS
    if fresh and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    state: dict[str, Any] = {"run_key": key, "losses": [], "step_seconds": [], "validation": [],
                             "resumed_from": []}
    start = 0
    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        saved = read_state(last)
        if saved.get("run_key") != key:
            raise ConfigError(f"{last} was made with another model, heads, data or options; pass --fresh to "
                              f"start over (its checkpoints are deleted) or choose another --out")
        state = load_checkpoint(last, prepared.trainable, optimizer)
        state.pop("optimizer", None)
        start = int(state["step"])
        state["resumed_from"] = list(state.get("resumed_from", [])) + [start]
        log(f"resuming from {last} (step {start})")
    if not state["validation"] and val_set:
        ev = validate(scorer, val_set, progress)
        state["validation"].append({"step": 0, **ev})
        log(f"validation before training: {_recall_line(ev)}")

    steps = options.steps
    progress("training", start, steps)
    for step in range(start + 1, steps + 1):
        t0 = time.perf_counter()
        batch = [train_set[i] for i in sample_order(len(train_set), options.seed, step, options.accum)]
        loss = optimizer_step(scorer, batch, prepared.trainable, optimizer, options.grad_clip)
        if not math.isfinite(loss):
            raise ConfigError(f"the loss became {loss} at step {step}; lower the learning rate")
        dt = time.perf_counter() - t0
        state["losses"].append(loss)
        state["step_seconds"].append(dt)
        recent = state["step_seconds"][-10:]
        eta = (steps - step) * (sum(recent) / len(recent))
        log(f"step {step}/{steps}  loss {loss:.4f}  running {running_mean(state['losses'], 10)[-1]:.4f}  "
            f"{dt:.1f} s/step  ETA {_fmt_duration(eta)}")
        progress("training", step, steps)
        if step % options.checkpoint_every == 0 or step == steps:
            if val_set:
                ev = validate(scorer, val_set, progress)
                state["validation"].append({"step": step, **ev})
                log(f"validation at step {step}: {_recall_line(ev)}")
                progress("training", step, steps)
            save_checkpoint(ckpt_dir, step, prepared.trainable, optimizer, {**state, "step": step})
    end_step = max(start, steps)  # a checkpoint past --steps is kept as it is

    report = {
        "command": command, "model": model, "source": str(source), "heads": [list(h) for h in headset.heads],
        "heads_source": headset.source, "options": options.to_json(), "device": device, "precision": precision,
        "trainable_parameters": n_trainable, "trainable_tensors": len(prepared.trainable),
        "layers_kept": len(scorer.decoder.layers), "samples": sample_info, "data": [str(p) for p in data],
        "steps_done": end_step, "resumed_from": state.get("resumed_from", []), "losses": state["losses"],
        "seconds_per_step": float(np.mean(state["step_seconds"])) if state["step_seconds"] else None,
        # the first step also allocates gradients and optimiser state: the median is the steady rate
        "seconds_per_step_median": float(np.median(state["step_seconds"])) if state["step_seconds"] else None,
        "validation": state["validation"],
        "before": state["validation"][0] if state["validation"] else None,
        "after": state["validation"][-1] if len(state["validation"]) > 1 else None,
        "objective": {"normalisation": f"max-min to [0, {SCALE:g}]", "loss": "group contrastive, mean over positives"},
        "date": _dt.datetime.now().isoformat(timespec="seconds"), "wall_seconds_this_run": time.time() - started,
    }
    if options.scope == "lora" and not merge:
        path = Path(os.path.expanduser(model))
        base = str(path.resolve()) if path.exists() else model  # a registry name or hub id stays as given
        adapter = {"modules": prepared.lora_modules(), "base_model": base, "rank": options.lora_rank,
                   "alpha": options.lora_alpha}
        write_model(out, net, tokenizer, headset, layout, report, adapter=adapter)
    else:
        write_model(out, prepared.merged(net), tokenizer, headset, layout, report)
    if report["after"]:
        log(f"validation after training: {_recall_line(report['after'])}")
    log(f"wrote {out}")
    return report


def write_model(out: Path, model, tokenizer, headset, layout, report: dict[str, Any],
                adapter: Optional[dict[str, Any]] = None) -> None:
    """The QRRanker model directory: weights and tokenizer (or, with ``adapter``, the LoRA adapter over its
    base model), heads file, report, loss curve. Written into a temporary directory first; each file is
    then moved into ``out`` (checkpoints stay where they are)."""
    from ...rerank.adapter import ADAPTER_META, ADAPTER_WEIGHTS, write_adapter
    from ...rerank.heads import HeadSet, save_heads

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=out))
    try:
        if adapter is not None:
            write_adapter(tmp, model, adapter["modules"], base_model=adapter["base_model"], rank=adapter["rank"],
                          alpha=adapter["alpha"], extra={"trained": {"steps": report["steps_done"],
                                                                     "date": report["date"]},
                                                         **({"applies_to": "question"}
                                                            if report["options"].get("attention") == "question" else {})})
        else:
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
        # QRRanker reads the prompt layout from here, so the trained model is prompted as it was trained.
        detection = {"method": "bookqa train (group contrastive fine-tuning of the QR heads' layers)",
                     "prompt_layout": layout.to_json(), "question_span": layout.question_span,
                     "trained": {"scope": report["options"]["scope"], "steps": report["steps_done"],
                                 "attention": report["options"].get("attention", "full"),
                                 "data": report["data"], "date": report["date"], "from": report["source"],
                                 "heads_from": headset.source},
                     "base_detection": {k: v for k, v in headset.detection.items() if k != "prompt_layout"}}
        # A new set: detection scores and position priors measured on the base weights do not carry over.
        trained = HeadSet(heads=list(headset.heads), model=str(out), revision=report["date"], detection=detection)
        save_heads(tmp / HEADS_FILE, trained)
        write_json(tmp / REPORT_FILE, report)
        write_loss_curve(tmp / CURVE_FILE, report["losses"], f"QR training loss ({report['options']['scope']})")
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
        if adapter is None:  # an adapter left by an earlier lora run would be loaded instead of these weights
            for name in (ADAPTER_META, ADAPTER_WEIGHTS):
                (out / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
