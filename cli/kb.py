"""``./taxbot kb build | search | lint | eval | calibrate | status``: the knowledge base from the command line."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

from cli.config import RuntimeConfig
from cli.paths import REPORTS_DIR
from cli.runtime import fail

USAGE = """用法：./taxbot kb 命令
  build [--force]            检查条目并构建索引（条目和编码器都没变时什么也不做），切换为当前版本
  search "问题" [-k 5] [--json] 检索，打印前 k 个条目（编号、标题、分数、答复；错别字纠正后的问句）
  lint                       检查条目：格式、重复或冲突、缺少引用、已过期、语音答复过长
  eval [--set 文件或通配] [--json] 在评测集（默认 eval/test_*.yml）上比较 BM25、向量和混合检索（Recall@1/5、MRR、拒答）
  calibrate                  用开发集拟合融合权重和答复阈值，写入 knowledge_index/calibration.json
  status                     当前索引版本和编码器
  export-e5 目录             把内置的 multilingual-e5-small 导出为 sentence-transformers 模型目录
                             （之后可设 TAXBOT_KB_ENCODER=该目录）"""


def _corpus():
    from knowledge_index.corpus import CorpusError, load_corpus

    try:
        return load_corpus()
    except CorpusError as exc:
        fail(f"知识条目有误：\n{exc}", code=1)


def _encoder(config: RuntimeConfig, threads: int | None = None):
    from knowledge_index.encoders import EncoderUnavailable, make_encoder

    try:
        return make_encoder(config.kb_encoder, threads=threads)
    except EncoderUnavailable as exc:
        fail(f"编码器不可用：{exc}", code=2)


def ensure_index(config: RuntimeConfig, force: bool = False, quiet: bool = False) -> Path:
    """Lint, then build the index version for the current entries and encoder if it does not exist; activate it."""
    from knowledge_index.index import build
    from knowledge_index.lint import lint

    corpus = _corpus()
    errors = [f for f in lint(corpus) if f.level == "error"]
    if errors:
        fail("知识条目未通过检查（./taxbot kb lint）：\n" + "\n".join(map(str, errors)), code=1)
    started = time.perf_counter()
    # The embedding cache lives with the venvs and models, so a fresh checkout (or CI) re-encodes nothing.
    cache = config.cache_path / "kb" / "embeddings.sqlite3"
    directory, built = build(corpus, _encoder(config), config.kb_index_path, force=force, cache=cache)
    if not quiet:
        state = f"已构建，用时 {time.perf_counter() - started:.1f} 秒" if built else "条目和编码器未变化，沿用"
        print(f"[kb] {state}：{directory.name}（{len(corpus.entries)} 个条目）")
    return directory


def _load_index(config: RuntimeConfig, threads: int | None = 1):
    from knowledge_index.index import KnowledgeIndex, KnowledgeIndexError, current_version

    ensure_index(config, quiet=True)
    version = current_version(config.kb_index_path)
    try:
        return KnowledgeIndex(config.kb_index_path / "versions" / str(version), _encoder(config, threads))
    except KnowledgeIndexError as exc:
        fail(str(exc), code=2)


def main(config: RuntimeConfig, args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="taxbot kb", usage=USAGE, add_help=False)
    parser.add_argument("command", nargs="?")
    parser.add_argument("query", nargs="?")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--set", type=Path)
    ns = parser.parse_args(args)

    if ns.command == "build":
        ensure_index(config, force=ns.force)
        return 0
    if ns.command == "lint":
        from knowledge_index.lint import lint

        corpus = _corpus()
        findings = lint(corpus)
        for finding in findings:
            print(finding)
        errors = sum(f.level == "error" for f in findings)
        reviews = sum(e.review == "needs_review" for e in corpus.entries)
        print(f"[kb lint] {len(corpus.entries)} 个条目，{errors} 个错误，{len(findings) - errors} 个提醒（其中待复核 {reviews}）")
        return 1 if errors else 0
    if ns.command == "search":
        if not ns.query:
            fail('用法：./taxbot kb search "问题" [-k 5] [--json]', code=2)
        from knowledge_index.scoring import load_calibration, rank

        index = _load_index(config)
        ranked = rank(index.candidates(ns.query), load_calibration(index.meta.encoder))[: ns.k]
        hits = [
            {"id": s.entry_id, "title": s.candidate.entry.title, "score": round(s.probability, 4),
             "dense": round(s.candidate.dense, 4), "lexical": round(s.candidate.lexical, 4),
             "answer": s.candidate.entry.answer, "citation": s.candidate.entry.source.cited()}
            for s in ranked
        ]
        searched = index.corrected(ns.query)
        if ns.json:
            print(json.dumps({"query": ns.query, "searched_as": searched, "index_version": index.version,
                              "hits": hits}, ensure_ascii=False))
        else:
            if searched != ns.query:
                print(f"（按“{searched}”检索）")
            for position, hit in enumerate(hits, start=1):
                print(f"{position}. [{hit['score']:.3f}] {hit['id']}  {hit['title']}\n   {hit['answer']}")
        return 0
    if ns.command in {"eval", "calibrate"}:
        from knowledge_index import evaluate
        from knowledge_index.scoring import load_calibration, save_calibration

        index = _load_index(config)
        known = set(index.by_id)
        if ns.command == "calibrate":
            labelled = evaluate.load_set(evaluate.DEV_SET, known)
            calibration = evaluate.calibrate(index, labelled, fitted_on=f"eval/{evaluate.DEV_SET} ({len(labelled.answerable)} "
                                                                      f"answerable, {len(labelled.unanswerable)} unanswerable)")
            save_calibration(calibration)
            print(json.dumps({"encoder": calibration.encoder, "dev": calibration.metrics}, ensure_ascii=False, indent=1))
            return 0
        path = ns.set or Path(evaluate.TEST_SET)
        labelled = evaluate.load_set(path, known)
        results = evaluate.evaluate(index, load_calibration(index.meta.encoder), labelled)
        report = {"set": str(path.name), "answerable": len(labelled.answerable), "unanswerable": len(labelled.unanswerable),
                  "index_version": index.version, "encoder": index.meta.encoder, "date": date.today().isoformat(),
                  "modes": results}
        REPORTS_DIR.mkdir(parents=True, exist_ok=True)
        (REPORTS_DIR / "kb_eval.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        if ns.json:
            print(json.dumps(report, ensure_ascii=False))
            return 0
        print(f"[kb eval] {path.name}: {len(labelled.answerable)} 个可答问题，{len(labelled.unanswerable)} 个不可答问题")
        columns = ("recall@1", "recall@5", "mrr", "unanswerable_refused", "answerable_refused", "answered_wrong", "threshold")
        print(f"{'':8}" + "".join(f"{c:>22}" for c in columns))
        for mode, values in results.items():
            print(f"{mode:8}" + "".join(f"{values[c]:>22.3f}" for c in columns))
        return 0
    if ns.command == "export-e5":
        if not ns.query:
            fail("用法：./taxbot kb export-e5 目录", code=2)
        from knowledge_index.e5_export import export_sentence_transformers

        out = export_sentence_transformers(Path(ns.query))
        print(f"[kb] 已导出 sentence-transformers 模型：{out}（设置 TAXBOT_KB_ENCODER={out} 后需重新 ./taxbot kb build "
              "和 ./taxbot kb calibrate）")
        return 0
    if ns.command == "status":
        from knowledge_index.index import current_version

        version = current_version(config.kb_index_path)
        meta_file = config.kb_index_path / "versions" / str(version) / "meta.json"
        print(meta_file.read_text(encoding="utf-8") if version and meta_file.is_file() else "[kb] 还没有构建索引：./taxbot kb build")
        return 0
    print(USAGE, file=sys.stderr)
    return 2
