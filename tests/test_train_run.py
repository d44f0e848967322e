"""The training run on a tiny model saved to disk: checkpoints, resume, the output model directory, the
CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bookqa.errors import ConfigError
from bookqa.lab.train.checkpoint import latest_checkpoint
from bookqa.lab.train.samples import TrainSample, write_samples
from bookqa.lab.train.scope import prepare
from bookqa.lab.train.scores import QRScorer
from bookqa.rerank.heads import HeadSet, save_heads
from bookqa.lab.train.trainer import (CHECKPOINTS, CURVE_FILE, HEADS_FILE, REPORT_FILE, TrainOptions, sample_order,
                                  train)
from test_rerank_tiny import tiny_model, tiny_tokenizer

HEADS = HeadSet(heads=[(2, 1), (0, 3), (2, 2)], model="tiny",
                detection={"prompt_layout": {"instruction": "Find the chunks that answer.", "question_span": "question"}})
WORDS = "whale ship captain sea river garden letter sister doctor village".split()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup(tmp_path):
    model = tiny_model("qwen2", layers=4)  # layer 3 lies above the deepest QR layer: dropped
    model.save_pretrained(tmp_path / "tiny")
    tiny_tokenizer().save_pretrained(tmp_path / "tiny")
    save_heads(tmp_path / "heads.json", HEADS)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(12):
        cands = [" ".join(rng.choice(WORDS, 6)) for _ in range(5)]
        samples.append(TrainSample(f"s{i}", "x", f"who was the {WORDS[i % 10]}?", cands, [i % 5], doc_id=f"d{i % 6}",
                                   split="val" if i % 6 == 0 else "train"))
    write_samples(tmp_path / "samples.jsonl", samples)
    return tmp_path


def _run(setup, out, steps, settings, merge=False, **kw):
    opts = dict(steps=steps, lr=1e-3, accum=2, checkpoint_every=2, candidates=5, max_tokens=40)
    opts.update(kw)
    lines = []
    report = train(str(setup / "tiny"), [setup / "samples.jsonl"], setup / out, heads=str(setup / "heads.json"),
                   settings=settings, options=TrainOptions(**opts), merge=merge, log=lines.append)
    return report, lines


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_sample_order_is_a_function_of_the_step():
    a = [i for step in range(1, 8) for i in sample_order(5, 0, step, 3)]
    assert sorted(a[:5]) == list(range(5)) and sorted(a[5:10]) == list(range(5))  # each epoch a permutation
    assert sample_order(5, 0, 4, 3) == a[9:12] and sample_order(5, 1, 1, 3) != a[:3]


def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(setup, settings):
    full, _ = _run(setup, "a", 4, settings)
    assert [v["step"] for v in full["validation"]] == [0, 2, 4]
    assert len(full["losses"]) == 4 and full["resumed_from"] == []
    assert latest_checkpoint(setup / "a" / CHECKPOINTS).name == "step-000004"  # older ones removed
    assert len(list((setup / "a" / CHECKPOINTS).iterdir())) == 1

    first, _ = _run(setup, "b", 2, settings)
    assert latest_checkpoint(setup / "b" / CHECKPOINTS).name == "step-000002"
    resumed, lines = _run(setup, "b", 4, settings)
    assert any("resuming from" in l and "(step 2)" in l for l in lines)
    assert [l.split()[1] for l in lines if l.startswith("step ")] == ["3/4", "4/4"]  # only the missing steps
    assert resumed["resumed_from"] == [2] and resumed["steps_done"] == 4
    assert resumed["losses"][:2] == first["losses"]
    np.testing.assert_allclose(resumed["losses"], full["losses"], rtol=0, atol=1e-6)
    assert resumed["validation"] == json.loads(json.dumps(full["validation"]))
    wa, wb = _weights(setup / "a"), _weights(setup / "b")
    assert set(wa) == set(wb)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)
    # A finished run asked again does nothing new; other options refuse the checkpoint unless fresh.
    again, lines = _run(setup, "b", 4, settings)
    assert not [l for l in lines if l.startswith("step ")] and again["steps_done"] == 4
    with pytest.raises(ConfigError, match="--fresh"):
        _run(setup, "b", 4, settings, lr=5e-4)


def test_output_directory_loads_in_qrranker(setup, settings):
    from bookqa.rerank import QRRanker

    report, _ = _run(setup, "out", 2, settings)
    out = setup / "out"
    for name in ("config.json", "model.safetensors", "tokenizer.json", HEADS_FILE, REPORT_FILE, CURVE_FILE):
        assert (out / name).is_file(), name
    assert "<svg" in (out / CURVE_FILE).read_text()
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["losses"] == report["losses"] and saved["before"]["step"] == 0 and saved["after"]["step"] == 2
    assert saved["layers_kept"] == 3 and saved["samples"]["train"] == 10 and saved["samples"]["val"] == 2
    for ev in (saved["before"], saved["after"]):
        assert set(ev["qr"]) >= {"R@1", "R@3", "R@5", "MRR", "n"}
    base = _weights(setup / "tiny") if (setup / "tiny" / "model.safetensors").exists() else None
    trained = _weights(out)
    assert not any(k.startswith(("layers.3.", "model.layers.3.")) for k in trained)  # dropped above L
    if base is not None:
        assert not torch.equal(trained["embed_tokens.weight"], base["model.embed_tokens.weight"])
    ranker = QRRanker(model=str(out), settings=settings)
    assert ranker.heads.heads == HEADS.heads and ranker.heads.source.endswith(HEADS_FILE)
    assert ranker.layout.instruction == "Find the chunks that answer."  # the layout travels with the heads
    assert ranker.heads.detection["trained"]["scope"] == "full"
    texts = ["the whale was at sea.", "the captain of the ship was Silas.", "a letter to her sister."]
    got, _ = ranker.head_scores("who was the captain?", texts)
    scorer = QRScorer(ranker.model, ranker.tokenizer, ranker.heads, ranker.layout)
    with torch.no_grad():
        mine = scorer.scores(scorer.prompt("who was the captain?", texts)).numpy()
    np.testing.assert_allclose(got.sum(axis=0), mine, atol=1e-5)


def test_lora_run_writes_a_small_adapter_that_scores_like_the_merged_model(setup, settings):
    from bookqa.rerank import QRRanker
    from bookqa.rerank.adapter import ADAPTER_META, ADAPTER_WEIGHTS, read_adapter

    out = setup / "lora"
    _run(setup, "lora", 1, settings, scope="lora", lr=1e-2)
    assert (out / ADAPTER_META).is_file() and (out / ADAPTER_WEIGHTS).is_file()
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    adapter = read_adapter(out)
    assert adapter.base_model == str((setup / "tiny").resolve()) and adapter.rank == 16
    assert "layers.0.self_attn.q_proj" in adapter.targets and not any(t.startswith("layers.3.") for t in adapter.targets)
    assert (out / ADAPTER_WEIGHTS).stat().st_size < (setup / "tiny" / "model.safetensors").stat().st_size
    texts = ["the whale was at sea.", "the captain of the ship was Silas.", "a letter to her sister."]
    ranker = QRRanker(model=str(out), settings=settings)
    assert ranker.heads.detection["trained"]["scope"] == "lora" and ranker.heads.source.endswith(HEADS_FILE)
    from_adapter, _ = ranker.head_scores("who was the captain?", texts)
    base, _ = QRRanker(model=str(setup / "tiny"), heads=HEADS, settings=settings).head_scores(
        "who was the captain?", texts)
    assert not np.allclose(from_adapter, base, atol=1e-6)  # the adapter changed the scores
    from bookqa.lab.baselines.pointwise import PointwiseReranker
    from bookqa.rerank.readout import decoder_of

    pointwise = PointwiseReranker(model=str(out), settings=settings)  # the same merge into the full causal LM
    for name in ("layers.0.self_attn.q_proj.weight", "layers.2.self_attn.k_proj.weight", "layers.1.mlp.up_proj.weight"):
        torch.testing.assert_close(decoder_of(pointwise.model).get_parameter(name),
                                   decoder_of(ranker.model).get_parameter(name), atol=0, rtol=0)

    # The same finished run written with merge: a full model, the adapter files gone, the same scores.
    _run(setup, "lora", 1, settings, scope="lora", lr=1e-2, merge=True)
    assert not (out / ADAPTER_META).exists() and not (out / ADAPTER_WEIGHTS).exists()
    trained = _weights(out)
    assert not any("lora" in k for k in trained)
    merged, _ = QRRanker(model=str(out), settings=settings).head_scores("who was the captain?", texts)
    np.testing.assert_allclose(from_adapter, merged, atol=1e-5, rtol=0)


def test_an_adapter_is_merged_before_the_weights_are_rounded(setup, settings):
    """Ranking in bfloat16 from a float32 checkpoint: the adapter is merged in float32 and the sum rounded
    once, as a merged checkpoint loaded in bfloat16 would be (not the rounded weights plus the delta)."""
    from safetensors.torch import load_file

    from bookqa.rerank.adapter import ADAPTER_WEIGHTS, read_adapter
    from bookqa.rerank.qr import load_model

    _run(setup, "lora", 1, settings, scope="lora", lr=1e-2)
    adapter = read_adapter(setup / "lora")
    lora = load_file(str(setup / "lora" / ADAPTER_WEIGHTS))
    base = _weights(setup / "tiny")
    model = load_model(str(setup / "tiny"), dtype="bfloat16", adapter=adapter)
    assert model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert model.rotary_emb.inv_freq.dtype == torch.float32  # buffers stay as a plain bfloat16 load has them
    rel = "layers.0.self_attn.q_proj"
    full = base[f"model.{rel}.weight"] + (lora[f"{rel}.lora_B"] @ lora[f"{rel}.lora_A"]) * adapter.scale
    torch.testing.assert_close(model.get_parameter(f"{rel}.weight"), full.to(torch.bfloat16), atol=0, rtol=0)
    twice = (base[f"model.{rel}.weight"].to(torch.bfloat16).float()
             + (lora[f"{rel}.lora_B"] @ lora[f"{rel}.lora_A"]) * adapter.scale).to(torch.bfloat16)
    assert not torch.equal(twice, full.to(torch.bfloat16))  # the case the order matters for
    untouched = "layers.0.input_layernorm.weight"
    torch.testing.assert_close(model.get_parameter(untouched), base[f"model.{untouched}"].to(torch.bfloat16),
                               atol=0, rtol=0)


def test_a_shipped_adapter_is_named_like_a_model(setup, settings, tmp_path, monkeypatch):
    """An adapter inside the package (bookqa/adapters/<name>/) is selected by its name, as reranker model
    and as `bookqa eval --trained`, and scores exactly like the directory it was copied from."""
    import shutil

    from bookqa.rerank import QRRanker, adapter as adapter_module
    from bookqa.rerank.adapter import adapter_dir, find_adapter

    _run(setup, "lora", 1, settings, scope="lora", lr=1e-2)
    shipped = tmp_path / "adapters"
    shutil.copytree(setup / "lora", shipped / "tiny-qr-lora", ignore=shutil.ignore_patterns(CHECKPOINTS))
    monkeypatch.setattr(adapter_module, "SHIPPED_DIR", shipped)
    assert adapter_dir("Tiny-QR-LoRA ") == shipped / "tiny-qr-lora" and find_adapter("tiny-qr") is None
    texts = ["the whale was at sea.", "the captain of the ship was Silas.", "a letter to her sister."]
    by_name = QRRanker(model="tiny-qr-lora", settings=settings)
    assert by_name.heads.source == str(shipped / "tiny-qr-lora" / HEADS_FILE)  # its own trained heads
    np.testing.assert_array_equal(by_name.head_scores("who was the captain?", texts)[0],
                                  QRRanker(model=str(setup / "lora"), settings=settings).head_scores(
                                      "who was the captain?", texts)[0])
    # reranker_adapter: "auto" merges the shipped adapter trained on the reranker model, with its heads
    from bookqa.errors import ConfigError, NotFoundError
    from bookqa.rerank.adapter import chosen_adapter

    base = str(setup / "tiny")
    auto = QRRanker(model=base, settings=settings.replace(reranker_adapter="auto"))
    assert auto.describe()["adapter"] == "tiny-qr-lora" and auto.heads.source == by_name.heads.source
    np.testing.assert_array_equal(auto.head_scores("who was the captain?", texts)[0],
                                  by_name.head_scores("who was the captain?", texts)[0])
    plain = QRRanker(model=base, heads=HEADS, settings=settings.replace(reranker_adapter="auto"))
    assert plain.adapter is None  # heads given: an adapter belongs to the heads it was trained with
    assert QRRanker(model=base, heads=HEADS, settings=settings).describe()["adapter"] is None  # default none
    assert chosen_adapter(base, "tiny-qr-lora").path == shipped / "tiny-qr-lora"
    assert chosen_adapter(str(tmp_path / "other-model"), "auto") is None
    with pytest.raises(ConfigError, match="was trained on"):
        chosen_adapter("qwen2.5-coder-0.5b", "tiny-qr-lora")
    with pytest.raises(NotFoundError, match="known: tiny-qr-lora"):
        chosen_adapter(base, "no-such-adapter")
    from bookqa.cli.eval import checkpoint_fingerprint

    # the copy without the resume state, with a README, is the same checkpoint to `bookqa eval` (its rows
    # stay resumable)
    (shipped / "tiny-qr-lora" / "README.md").write_text("# tiny adapter\n", encoding="utf-8")
    assert checkpoint_fingerprint(shipped / "tiny-qr-lora")["sha256"] == checkpoint_fingerprint(setup / "lora")["sha256"]


def test_the_embedded_reranker_gets_its_shipped_adapter_by_default():
    """reranker_adapter defaults to auto: the embedded model is ranked with the adapter in the package (its
    heads with it); a heads file, or a model without a shipped adapter, keeps the weights as they are."""
    from bookqa.rerank.adapter import SHIPPED_DIR, chosen_adapter
    from bookqa.settings import Settings

    setting = Settings().reranker_adapter
    assert setting == "auto"
    adapter = chosen_adapter("qwen2.5-coder-0.5b", setting)
    assert adapter is not None and adapter.path == SHIPPED_DIR / "qwen2.5-coder-0.5b-qr-lora"
    assert (adapter.path / HEADS_FILE).is_file()
    assert chosen_adapter("qwen2.5-coder-0.5b", setting, heads_given=True) is None
    assert chosen_adapter("Qwen/Qwen3-4B-Instruct-2507", setting) is None


def test_the_shipped_adapter_ranks_in_one_order_with_refinement_on_every_device(monkeypatch):
    """Its heads record their training, so rerank_permutations=0 gives one order (then the top 5 refined) on
    a GPU too, and `bookqa eval` writes that into its run file; the plain heads keep two orders there."""
    import bookqa.weights as models

    from bookqa.cli.eval import _resolved
    from bookqa.rerank.adapter import SHIPPED_DIR
    from bookqa.rerank.config import QRRankerConfig
    from bookqa.rerank.orders import trained_heads
    from bookqa.rerank.heads import load_heads
    from bookqa.settings import Settings

    assert trained_heads(load_heads(SHIPPED_DIR / "qwen2.5-coder-0.5b-qr-lora" / HEADS_FILE))
    monkeypatch.setattr(models, "resolve_device", lambda device: "cuda:0")

    def orders(settings):  # as `bookqa eval` calls it: with the adapter the settings choose
        return _resolved(QRRankerConfig.from_settings(settings)).permutations

    assert orders(Settings()) == 1
    assert orders(Settings(reranker_adapter="none")) == 2
    assert orders(Settings(rerank_permutations=3)) == 3


def test_adapter_errors_are_clear(setup, settings, tmp_path):
    import json as _json

    from bookqa.errors import InputError, ModelError
    from bookqa.rerank import QRRanker
    from bookqa.rerank.adapter import ADAPTER_META, apply_adapter, read_adapter

    _run(setup, "lora", 1, settings, scope="lora", lr=1e-2)
    out = setup / "lora"
    adapter = read_adapter(out)
    other = tiny_model("qwen3", layers=3).model  # another architecture
    with pytest.raises(ModelError, match="qwen2 model, not qwen3"):
        apply_adapter(other, adapter)
    from transformers import Qwen2Config, Qwen2Model

    narrower = Qwen2Model(Qwen2Config(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ModelError, match="does not fit"):
        apply_adapter(narrower, adapter)
    meta = _json.loads((out / ADAPTER_META).read_text())
    (out / ADAPTER_META).write_text(_json.dumps({**meta, "rank": "many"}))
    with pytest.raises(InputError, match="malformed"):
        QRRanker(model=str(out), settings=settings)
    (out / ADAPTER_META).write_text("{not json")
    with pytest.raises(InputError, match="adapter"):
        read_adapter(out)


def test_merging_lora_keeps_the_scores(setup):
    model, tok = tiny_model("qwen3", layers=3).model, tiny_tokenizer()
    prepared = prepare(model, HEADS, "lora")
    with torch.no_grad():
        for name, p in prepared.trainable.items():
            p.add_(torch.randn_like(p) * 0.05)  # adapters that change the scores
    scorer = QRScorer(model, tok, HEADS)
    prompt = scorer.prompt("who was the captain?", ["the whale.", "the captain Silas.", "a letter."])
    with torch.no_grad():
        before = scorer.scores(prompt)
        merged = prepared.merged(model)
        after = QRScorer(merged, tok, HEADS).scores(prompt)
    torch.testing.assert_close(before, after, atol=1e-5, rtol=0)


def test_cli_builds_samples_and_trains(setup, settings, capsys):
    from pathlib import Path

    from bookqa.cli import main

    fixture = Path(__file__).parent / "fixtures" / "eval" / "musique" / "musique_mini.jsonl"
    samples = setup / "musique.jsonl"
    assert main(["-q", "train", "samples", "--dataset", "musique", "--data", str(fixture), "--out", str(samples),
                 "--model", str(setup / "tiny"), "--candidates", "5", "--max-tokens", "30", "--val-frac", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {samples}: 2 samples from musique" in printed and "dropped: none" in printed
    rows = [json.loads(l) for l in samples.read_text().splitlines()]
    assert all(r["split"] in ("train", "val") and r["gold"] and len(r["candidates"]) == 5 for r in rows)
    out = setup / "cli-out"
    argv = ["-q", "train", "--model", str(setup / "tiny"), "--heads", str(setup / "heads.json"), "--data",
            str(samples), "--data", str(setup / "samples.jsonl"), "--out", str(out), "--steps", "2",
            "--candidates", "4", "--max-tokens", "30", "--accum", "1", "--checkpoint-every", "1", "--lr", "1e-4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: 2 steps, scope full" in printed and "validation before" in printed
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["options"]["candidates"] == 4 and report["command"].startswith("bookqa train --model")
    assert report["samples"]["sources"].get("musique", 0) + report["samples"]["sources"]["x"] == report["samples"]["train"]
    assert main(["-q", "train", "--model", str(setup / "tiny"), "--data", str(samples)]) == 2  # no --out


def test_learning_rate_by_scope_when_none_is_set():
    """LoRA's adapters start at zero and get ten times the paper's full fine-tuning rate unless one is set."""
    from bookqa.lab.settings import TrainSettings

    assert TrainOptions.from_settings(TrainSettings()).lr == 1e-5
    assert TrainOptions.from_settings(TrainSettings(), scope="lora").lr == 1e-4
    assert TrainOptions.from_settings(TrainSettings(), scope="qr-layers").lr == 1e-5
    assert TrainOptions.from_settings(TrainSettings(), scope="lora", lr=3e-4).lr == 3e-4
    assert TrainOptions.from_settings(TrainSettings(train_lr=2e-5), scope="lora").lr == 2e-5
    with pytest.raises(ConfigError):
        TrainOptions(lr=-1.0).validate()


def test_shuffled_order_trains_on_shuffled_prompts_and_validates_in_retriever_order(setup, settings):
    report, lines = _run(setup, "shuf", 2, settings, order="shuffled")
    plain, _ = _run(setup, "plain", 2, settings)
    assert report["options"]["order"] == "shuffled" and plain["options"]["order"] == "retriever"
    assert report["losses"] != plain["losses"]  # other prompts
    # the validation prompts are the same in both runs: equal scores before training
    assert report["before"] == plain["before"]
    assert 0 <= report["samples"]["gold_first_share"] <= 1
    # a checkpoint of one order is not resumed with the other
    with pytest.raises(ConfigError, match="other"):
        _run(setup, "shuf", 3, settings, order="retriever")


def test_block_attention_trains_the_scores_the_cached_pass_ranks_by(setup, settings):
    """With --attention block the training scores are the cached-chunk pass's scores (same model, same
    texts), and the trained heads file says how it was trained."""
    from bookqa.rerank import QRRanker
    from bookqa.rerank.blocks import BlockSequence
    from bookqa.rerank.cached import CachedQRRanker

    report, lines = _run(setup, "block", 2, settings, attention="block")
    assert report["options"]["attention"] == "block" and report["after"]["step"] == 2
    ranker = QRRanker(model=str(setup / "block"), settings=settings, dtype="float32")  # bf16 rounds apart
    assert ranker.heads.detection["trained"]["attention"] == "block"
    texts = ["the whale was at sea.", "the captain of the ship was Silas.", "a letter to her sister."]
    scorer = QRScorer(ranker.model, ranker.tokenizer, ranker.heads, ranker.layout, attention="block")
    prompt = scorer.prompt("who was the captain?", texts)
    assert isinstance(prompt, BlockSequence)
    with torch.no_grad():
        mine = scorer.scores(prompt).numpy()
    cached = CachedQRRanker(ranker, kv_dtype="float32")
    kv, spans, longest, _ = cached._gather_memory(texts)
    got, _, _ = cached.head_scores("who was the captain?", kv, spans, longest)
    np.testing.assert_allclose(got.sum(axis=0), mine, rtol=1e-4, atol=1e-6)
    # a block run is its own run: it never resumes a full-prompt checkpoint
    assert TrainOptions(attention="block").run_key() != TrainOptions().run_key()
    assert "attention" not in TrainOptions().run_key()
    with pytest.raises(ConfigError, match="attention"):
        TrainOptions(attention="sparse").validate()


def test_question_side_scores_are_the_block_layouts_before_training(setup):
    """With the adapter at its zero start, the question-side pass (blocks from the base copy, the question
    through the trained model) scores what the block layout in one masked forward scores."""
    from bookqa.lab.train.basekv import BaseBlockKV

    model, tok = tiny_model("qwen2", layers=3).model, tiny_tokenizer()
    base = tiny_model("qwen2", layers=3).model  # the same seeded weights: a separate frozen copy
    prepare(model, HEADS, "lora")
    texts = ["the whale was at sea.", "the captain of the ship was Silas.", "a letter to her sister."]
    block = QRScorer(model, tok, HEADS, attention="block")
    side = QRScorer(model, tok, HEADS, attention="question")
    side.base_kv = BaseBlockKV(base, HEADS.deepest_layer, setup / "kv", store_dtype=torch.float32)
    with torch.no_grad():
        want = block.scores(block.prompt("who was the captain?", texts))
        got = side.scores(side.prompt("who was the captain?", texts))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert side.base_kv.encoded == 4  # the prefix and three chunks, each once
    again = QRScorer(model, tok, HEADS, attention="question")
    again.base_kv = BaseBlockKV(base, HEADS.deepest_layer, setup / "kv", store_dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(again.scores(again.prompt("who was the captain?", texts)), got)
    assert again.base_kv.encoded == 0  # read back from disk
    # gradients reach the adapter through the question tokens alone
    loss = side.scores(side.prompt("who was the captain?", texts)).logsumexp(0)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n and p.grad is not None]
    assert grads and all(p.grad is None for p in base.parameters())


def test_question_side_training_runs_over_stored_blocks(setup, settings):
    report, _ = _run(setup, "qside", 2, settings, scope="lora", attention="question", lr=1e-2)
    assert report["options"]["attention"] == "question" and report["after"]["step"] == 2
    assert report["losses"] and all(np.isfinite(report["losses"]))
    stored = sorted((setup / "qside" / "base-kv").rglob("*.safetensors"))
    assert stored  # the blocks' rows, kept for the next epoch or a resumed run
    assert TrainOptions(attention="question", scope="lora").run_key() != TrainOptions(scope="lora").run_key()
    with pytest.raises(ConfigError, match="scope lora"):
        TrainOptions(attention="question").validate()


def test_a_question_side_adapter_ranks_in_the_cached_pass_as_it_was_trained(setup, settings):
    """The written adapter says it acts on the question only; the cached ranker encodes the chunks with the
    base weights (the store a ranker without adapter uses) and scores what training scored; the full prompt
    refuses it."""
    from bookqa.lab.train.basekv import BaseBlockKV
    from bookqa.rerank import QRRanker
    from bookqa.rerank.adapter import read_adapter
    from bookqa.rerank.cached import CachedQRRanker
    from bookqa.errors import ConfigError as Refused

    _run(setup, "qside", 2, settings, scope="lora", attention="question", lr=5e-2)
    adapter = read_adapter(setup / "qside")
    assert adapter.applies_to == "question"
    ranker = QRRanker(model=str(setup / "qside"), settings=settings, dtype="float32")
    with pytest.raises(Refused, match="cached"):
        ranker.rank("who was the captain?", ["the whale.", "the captain Silas."])
    cached = CachedQRRanker(ranker, kv_dtype="float32")
    assert cached.question_adapter is not None and cached.encoder is not ranker.model
    plain = CachedQRRanker(QRRanker(model=str(setup / "tiny"), heads=str(setup / "heads.json"), settings=settings,
                                    dtype="float32"), kv_dtype="float32")
    assert cached.identity("c") == plain.identity("c")  # one chunk cache for both
    texts = ["the whale was at sea.", "the captain of the ship was Silas.", "a letter to her sister."]
    kv, spans, longest, _ = cached._gather_memory(texts)
    got, _, _ = cached.head_scores("who was the captain?", kv, spans, longest)
    base_got, _, _ = plain.head_scores("who was the captain?", kv, spans, longest)
    assert not np.allclose(got, base_got)  # the adapter changed the question's attention
    scorer = QRScorer(cached.model, ranker.tokenizer, ranker.heads, ranker.layout, attention="question")
    scorer.base_kv = BaseBlockKV(cached.encoder, ranker.heads.deepest_layer, store_dtype=torch.float32)
    with torch.no_grad():
        trained = scorer.scores(scorer.prompt("who was the captain?", texts)).numpy()
    np.testing.assert_allclose(got.sum(axis=0), trained, rtol=1e-4, atol=1e-6)
    # the same adapter given as the cached pass's own, over the plain ranker
    also = CachedQRRanker(plain.ranker, kv_dtype="float32", question_adapter=adapter)
    again, _, _ = also.head_scores("who was the captain?", kv, spans, longest)
    np.testing.assert_allclose(again, got, rtol=1e-5, atol=1e-7)
    with pytest.raises(Refused, match="every token"):
        _run(setup, "full-lora", 1, settings, scope="lora", lr=1e-2)
        CachedQRRanker(plain.ranker, question_adapter=read_adapter(setup / "full-lora"))
