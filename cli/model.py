"""The trained Rasa model (status messages go to stderr), keyed by a hash of everything that shapes it.

``train`` only trains when config, domain, training data or the custom NLU code changed;
a model for the same hash is reused from ``models/`` or from the cache directory.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cli import paths
from cli.bootstrap import ROOT
from cli.config import RuntimeConfig
from cli.runtime import process_env, run


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def training_hash() -> str:
    return _digest((paths.CONFIG, paths.DOMAIN, *paths.TRAINING_DATA, *paths.MODEL_CODE))


# What shapes a component's output but is not in Rasa's own fingerprint of a training step (the config's values and
# the training data): the jieba dictionary's contents (the config names only its directory) and the custom
# components' code. Rasa's training cache restored the tokenizer, the featurizers and DIET trained with the old
# dictionary after a word was added to it, so that cache is kept apart for each version of these.
UNSEEN_BY_RASA = (ROOT / "nlu_data" / "dictionary", *paths.MODEL_CODE)
TRAIN_CACHES_KEPT = 2


def _digest(sources) -> str:  # noqa: ANN001 - paths
    digest = hashlib.sha256()
    for source in sources:
        for file in _files(source):
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def rasa_train_cache(config: RuntimeConfig) -> Path:
    """Rasa's training cache for the current dictionary and component code; older ones beyond the newest
    :data:`TRAIN_CACHES_KEPT` are removed, and so is the single flat cache used before there was one per dictionary
    (nothing reads it, and it could be hundreds of megabytes)."""
    shutil.rmtree(config.cache_path / "rasa-train-cache", ignore_errors=True)
    root = config.cache_path / "rasa-train-caches"
    current = root / _digest(UNSEEN_BY_RASA)
    current.mkdir(parents=True, exist_ok=True)
    current.touch()
    others = sorted((d for d in root.iterdir() if d.is_dir() and d != current), key=lambda d: d.stat().st_mtime,
                    reverse=True)
    for old in others[TRAIN_CACHES_KEPT - 1:]:
        shutil.rmtree(old, ignore_errors=True)
    return current


def model_path(digest: str | None = None) -> Path:
    return paths.MODELS_DIR / f"taxbot-{digest or training_hash()}.tar.gz"


def ensure_model(config: RuntimeConfig, force: bool = False) -> Path:
    """The model for the current training data, training it only when needed."""
    digest = training_hash()
    target = model_path(digest)
    cached = config.cache_path / "models" / target.name
    if not force and target.exists():
        print(f"[train] 训练数据未变化，使用现有模型 {target.relative_to(ROOT)}", file=sys.stderr, flush=True)
        return target
    paths.MODELS_DIR.mkdir(exist_ok=True)
    if not force and cached.exists():
        shutil.copy2(cached, target)
        print(f"[train] 使用缓存的模型 {target.relative_to(ROOT)}", file=sys.stderr, flush=True)
        return target
    print(f"[train] 训练数据有变化（{digest}），开始训练…", file=sys.stderr, flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=paths.MODELS_DIR) as out:
        run(
            [
                paths.RASA_BIN, "train",
                "--config", paths.CONFIG,
                "--domain", paths.DOMAIN,
                "--data", *paths.TRAINING_DATA,
                "--out", out,
                "--fixed-model-name", target.stem.removesuffix(".tar"),
            ],
            config,
            env=process_env(config, RASA_CACHE_DIRECTORY=str(rasa_train_cache(config))),
            stdout=sys.stderr,  # `nlu parse` writes JSON to stdout: keep training chatter off it
        )
        built = Path(out) / target.name
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, cached.with_suffix(".partial"))
        cached.with_suffix(".partial").replace(cached)  # atomic: never a half-written cached model
        built.replace(target)
    print(f"[train] 完成，用时 {time.monotonic() - started:.0f} 秒：{target.relative_to(ROOT)}", file=sys.stderr, flush=True)
    return target
