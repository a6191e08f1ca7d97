import shutil

from cli import model, paths
from cli.bootstrap import ROOT


def test_hash_changes_with_training_data_and_only_then(tmp_path, monkeypatch):
    copy = tmp_path / "bot"
    shutil.copytree(ROOT / "bot" / "domain", copy / "domain")
    shutil.copy(ROOT / "config.yml", tmp_path / "config.yml")
    monkeypatch.setattr(model, "ROOT", tmp_path)
    monkeypatch.setattr(paths, "CONFIG", tmp_path / "config.yml")
    monkeypatch.setattr(paths, "DOMAIN", copy / "domain")
    monkeypatch.setattr(paths, "TRAINING_DATA", ())
    monkeypatch.setattr(paths, "MODEL_CODE", ())
    first = model.training_hash()
    assert model.training_hash() == first
    (copy / "domain" / "core.yml").write_text((copy / "domain" / "core.yml").read_text() + "\n# edited\n")
    assert model.training_hash() != first


def test_model_file_is_named_by_its_hash():
    assert model.model_path("abc123").name == "taxbot-abc123.tar.gz"


def test_rasa_gets_a_training_cache_of_its_own_for_each_dictionary(tmp_path, monkeypatch):
    """Rasa's training cache fingerprints the config and the training data, not the jieba dictionary the config
    points at: with one cache, a word added to the dictionary left the tokenizer, featurizers and DIET restored
    as trained with the old one. Each version of the dictionary (and of the custom components) gets its own."""
    from types import SimpleNamespace

    dictionary = tmp_path / "dictionary"
    dictionary.mkdir()
    (dictionary / "tax_terms.txt").write_text("个税 2000 n\n", encoding="utf-8")
    monkeypatch.setattr(model, "ROOT", tmp_path)
    monkeypatch.setattr(model, "UNSEEN_BY_RASA", (dictionary,))
    config = SimpleNamespace(cache_path=tmp_path / "cache")
    flat = config.cache_path / "rasa-train-cache" / "stale"  # the single cache of before, which nothing reads
    flat.mkdir(parents=True)
    first = model.rasa_train_cache(config)
    assert not flat.parent.exists()
    assert first.is_dir() and model.rasa_train_cache(config) == first
    (dictionary / "tax_terms.txt").write_text("个税 2000 n\n虚开 500 n\n", encoding="utf-8")
    second = model.rasa_train_cache(config)
    assert second != first and second.is_dir() and first.is_dir()  # the previous one is kept, for a quick revert
    (dictionary / "tax_terms.txt").write_text("个税 2000 n\n残保金 500 n\n", encoding="utf-8")
    third = model.rasa_train_cache(config)
    assert sorted(p.name for p in third.parent.iterdir()) == sorted([second.name, third.name])  # the oldest pruned
