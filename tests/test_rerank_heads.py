"""Head sets: parsing, built-in lists, heads files, config.json fields and resolution order."""
from __future__ import annotations

import json

import pytest

from bookqa.errors import ConfigError, ModelError, NotFoundError
from bookqa.rerank.heads import (BUILTIN, SHIPPED_DIR, HeadSet, builtin_heads, heads_from_config, load_heads,
                                 parse_head, resolve_heads, save_heads)
from test_rerank_tiny import tiny_model, tiny_tokenizer

QRRANKER_QWEN3 = [(20, 15), (21, 11), (17, 27), (23, 10), (22, 4), (21, 10), (21, 8), (21, 18), (18, 15), (18, 19),
                  (17, 25), (17, 17), (24, 13), (17, 4), (19, 12), (21, 31)]


def test_parse_head_forms():
    assert parse_head("20-15") == (20, 15) == parse_head([20, 15]) == parse_head(" 20 : 15 ")
    for bad in ("20", "a-b", [1, 2, 3], None):
        with pytest.raises(ConfigError):
            parse_head(bad)


def test_builtin_lists_are_the_published_ones():
    qr = builtin_heads("qrranker-qwen3-4b-instruct-2507")
    assert qr.heads == QRRANKER_QWEN3 and qr.deepest_layer == 24
    assert {l for l, _ in qr.heads} == set(range(17, 25))
    assert builtin_heads("builtin:qrranker-llama-3.2-3b-instruct").heads[:3] == [(12, 1), (13, 9), (13, 23)]
    assert len(BUILTIN["qrhead-llama-3.1-70b-instruct-lme"]["heads"]) == 32
    assert BUILTIN["qrhead-qwen2.5-7b-instruct-nq"]["heads"][-1] == (20, 21)
    for entry in BUILTIN.values():
        assert len(set(entry["heads"])) == len(entry["heads"]) in (16, 32)
    with pytest.raises(NotFoundError):
        builtin_heads("nope")


def test_heads_file_round_trip(tmp_path):
    hs = HeadSet(heads=[(3, 1), (2, 0)], model="m", detection={"method": "qr", "n_items": 300}, scores=[0.5, 0.4])
    save_heads(tmp_path / "h.json", hs)
    back = load_heads(tmp_path / "h.json")
    assert back.heads == [(3, 1), (2, 0)] and back.scores == [0.5, 0.4] and back.detection["n_items"] == 300
    assert back.by_layer() == {3: [1], 2: [0]} and back.date
    assert json.loads((tmp_path / "h.json").read_text())["heads"] == [[3, 1], [2, 0]]
    with pytest.raises(ConfigError):
        HeadSet(heads=[(1, 1), (1, 1)])
    with pytest.raises(ModelError):
        hs.validate_for(n_layers=3, n_heads=4)  # layer 3 does not exist
    with pytest.raises(NotFoundError):
        load_heads(tmp_path / "missing.json")


def _mindscape_config(directory, **fields):
    cfg = {"architectures": ["Qwen3Model"], "model_type": "qwen3",
           "auto_map": {"AutoConfig": "modeling_qwen3_qr.Qwen3ConfigGating"}, **fields}
    (directory / "config.json").write_text(json.dumps(cfg))


def test_config_json_fields(tmp_path):
    _mindscape_config(tmp_path, qr_head_list_mapped=[[1, 2], [2, 3]], qr_start_layer=1, qr_end_layer=3)
    hs = heads_from_config(tmp_path)
    assert hs.heads == [(1, 2), (2, 3)] and hs.detection["qr_end_layer"] == 3
    _mindscape_config(tmp_path, qr_head_list=["2-1", "0-3"])
    assert heads_from_config(tmp_path).heads == [(2, 1), (0, 3)]
    _mindscape_config(tmp_path, qr_head_list="2-1,0-3")
    assert heads_from_config(tmp_path).heads == [(2, 1), (0, 3)]
    _mindscape_config(tmp_path, qr_head_list_mapped=[[5, 0]], qr_start_layer=1, qr_end_layer=3)
    with pytest.raises(ConfigError):
        heads_from_config(tmp_path)
    _mindscape_config(tmp_path)
    assert heads_from_config(tmp_path) is None


def test_resolution_order(tmp_path):
    # 1. explicit file wins over everything
    save_heads(tmp_path / "mine.json", HeadSet(heads=[(0, 0)]))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    _mindscape_config(model_dir, qr_head_list_mapped=[[1, 1]], _name_or_path="Qwen/Qwen3-4B-Instruct-2507")
    assert resolve_heads(str(model_dir), str(tmp_path / "mine.json")).heads == [(0, 0)]
    assert resolve_heads(str(model_dir), "builtin:qrhead-llama-3.2-1b-instruct-nq").heads[0] == (8, 21)
    # 2. config.json fields
    assert resolve_heads(str(model_dir)).heads == [(1, 1)]
    # 3. the shipped file for an embedded model
    if (SHIPPED_DIR / "qwen2.5-coder-0.5b.json").is_file():
        shipped = resolve_heads("qwen2.5-coder-0.5b")
        assert shipped.source.endswith("qwen2.5-coder-0.5b.json") and len(shipped.heads) == 16
    # 4. a built-in list by hub id, or by the hub id a local directory records
    assert resolve_heads("Qwen/Qwen3-4B-Instruct-2507").heads == QRRANKER_QWEN3
    assert resolve_heads("MindscapeRAG/QRRanker").heads == QRRANKER_QWEN3
    _mindscape_config(model_dir, _name_or_path="Qwen/Qwen3-4B-Instruct-2507")
    assert resolve_heads(str(model_dir)).heads == QRRANKER_QWEN3
    # otherwise: a clear error naming the command to run
    with pytest.raises(NotFoundError, match="bookqa heads detect"):
        resolve_heads("someone/unknown-model")


def _cache_hub_repo(cache, repo_id, files):
    """A model in the Hugging Face cache's own layout (what a download leaves), for offline resolution."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_text(content)


def test_a_hub_id_finds_the_heads_its_repository_carries(tmp_path, monkeypatch):
    """A `bookqa train` checkpoint pushed to the hub (qr_heads.json) or a QRRanker-style repository
    (config.json fields) gives its own heads by hub id, from the cache when offline (HF_HUB_OFFLINE=1)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    trained = HeadSet(heads=[(3, 1), (2, 0)], model="qwen2.5-coder-0.5b", detection={"trained": {"steps": 30}})
    save_heads(tmp_path / "h.json", trained)
    _cache_hub_repo(tmp_path / "hub", "someone/qr-trained", {"qr_heads.json": (tmp_path / "h.json").read_text(),
                                                            "config.json": "{}"})
    _cache_hub_repo(tmp_path / "hub", "someone/qr-style", {"config.json": json.dumps(
        {"qr_head_list_mapped": [[1, 2], [2, 3]], "qr_start_layer": 1, "qr_end_layer": 3})})
    got = resolve_heads("someone/qr-trained")
    assert got.heads == [(3, 1), (2, 0)] and got.detection["trained"] == {"steps": 30}
    assert got.source.endswith("qr_heads.json")
    assert resolve_heads("someone/qr-style").heads == [(1, 2), (2, 3)]
    # A hub model without either file still falls through to the published list by its id.
    _cache_hub_repo(tmp_path / "hub", "Qwen/Qwen3-4B-Instruct-2507", {"config.json": "{}"})
    assert resolve_heads("Qwen/Qwen3-4B-Instruct-2507").heads == QRRANKER_QWEN3


def test_mindscape_style_checkpoint_loads_without_remote_code(tmp_path, settings):
    """A local QRRanker-style directory (architecture Qwen3Model, qr_* fields in config.json, no LM
    head) loads with the standard Qwen3 classes, takes its heads from config.json, and keeps only the
    layers the read-out needs."""
    from bookqa.rerank import QRRanker

    base = tiny_model("qwen3", layers=4).model
    base.config.architectures = ["Qwen3Model"]
    base.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(qr_head_list_mapped=[[1, 2], [2, 0]], qr_start_layer=1, qr_end_layer=3,
               auto_map={"AutoConfig": "modeling_qwen3_qr.Qwen3ConfigGating",
                         "AutoModel": "modeling_qwen3_qr.Qwen3Model"})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    ranker = QRRanker(model=str(tmp_path), settings=settings, device="cpu", dtype="float32")
    assert ranker.heads.heads == [(1, 2), (2, 0)]
    assert len(ranker.model.layers) == 3  # layers 0..2; layer 3 is never built
    res = ranker.rank("who was the captain?", ["the whale in the sea", "Silas was the captain"])
    assert len(res) == 2 and res.info["layers_run"] == 3
