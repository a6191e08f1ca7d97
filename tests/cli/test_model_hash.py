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
