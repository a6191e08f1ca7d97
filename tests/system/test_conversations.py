"""Whole conversations through the REST channel of the running system, checked on the replies
and on the records the service keeps."""
from __future__ import annotations

import re
import sqlite3

import httpx

ZHANG_WEI_ID = "110101198704020880"  # demo taxpayer: 个人所得税 2025年 1,280.00 unpaid
ZHANG_WEI_PHONE = "13817414333"


def test_greeting_says_what_the_assistant_can_do(system, sender):
    reply = system.texts(sender, "你好")
    assert "12366智能税务助手" in reply
    assert "退税" in reply and "转接人工" in reply


def test_phone_channel_gets_the_spoken_variation(system, sender):
    reply = system.texts(sender, "你好", channel="phone")
    assert "12366智能税务助手" in reply
    assert "\n" not in reply  # written for the ear: no list layout


def test_policy_answers_carry_the_fact_and_its_citation(system, sender):
    """The knowledge base answers through the assistant: the fact asked for, then the document it rests on."""
    for question, fact, document in [
        ("个税的起征点是多少", "5000元", "《中华人民共和国个人所得税法》"),
        ("公司交企业所得税税率是多少", "25%", "《中华人民共和国企业所得税法》"),
        ("税交晚了滞纳金怎么算", "万分之五", "《中华人民共和国税收征收管理法》"),
        ("发票真伪在哪里查验", "全国增值税发票查验平台", "依据："),
    ]:
        reply = system.texts(sender, question)
        assert fact in reply and document in reply and "起执行" in reply, (question, reply)


def test_the_phone_hears_the_spoken_answer(system, sender):
    reply = system.texts(sender, "个税的起征点是多少", channel="phone")
    assert "五千" in reply and "依据是" in reply
    assert "《" not in reply and "\n" not in reply


def test_a_question_the_knowledge_base_cannot_answer_goes_to_a_person(system, sender):
    reply = system.texts(sender, "海南自贸港引进的高端人才个税超过15%的部分怎么申请免征")
    assert "转人工" in reply and "12366" in reply


def test_identity_verification_then_tax_due(system, sender):
    reply = system.texts(sender, "帮我查一下我还欠多少个税")
    assert "核验" in reply and "身份证号" in reply
    assert "手机号" in system.texts(sender, ZHANG_WEI_ID)
    offset = len(system.log_text())
    reply = system.texts(sender, ZHANG_WEI_PHONE)
    assert "138****4333" in reply and "验证码" in reply
    code = system.sms_code("138****4333", after=offset)
    wrong = "000000" if code != "000000" else "111111"
    assert "验证码不正确，您还可以再试4次" in system.texts(sender, wrong)
    reply = system.texts(sender, code)
    assert "身份核验成功" in reply and "张伟" in reply
    assert "1,280.00" in reply and "个人所得税" in reply
    # Verified: the next query is answered at once, without a new code.
    reply = system.texts(sender, "我的退税到哪一步了")
    assert "审核中" in reply and "860.00" in reply


def test_mismatched_phone_is_refused_without_saying_which_part(system, sender):
    system.texts(sender, "查下我的缴款记录")
    system.texts(sender, ZHANG_WEI_ID)
    reply = system.texts(sender, "13925449920")
    assert "不一致" in reply
    assert "验证码" not in reply


def test_typing_no_leaves_verification(system, sender):
    system.texts(sender, "我的退税什么时候到账")
    assert "已取消" in system.texts(sender, "算了不查了")
    assert "12366智能税务助手" in system.texts(sender, "你好")


def test_complaint_is_filed_with_a_reference(system, sender):
    assert "投诉" in system.texts(sender, "我要投诉你们大厅的工作人员")
    assert "描述" in system.texts(sender, "朝阳区办税服务厅3号窗口")
    assert "联系电话" in system.texts(sender, "今天上午排了两个小时，轮到我时说系统坏了让明天再来")
    reply = system.texts(sender, "13817414333")
    reference = re.search(r"受理编号：(TS\d{14})", reply)
    assert reference, reply
    (ticket,) = system.service_get("/api/v1/tickets", conversation_id=sender)["items"]
    assert ticket["reference"] == reference.group(1)
    assert ticket["kind"] == "complaint"
    assert ticket["subject"] == "朝阳区办税服务厅3号窗口"
    assert "两个小时" in ticket["detail"]


def test_anonymous_report(system, sender):
    system.texts(sender, "我要举报一家饭店不给开发票")
    system.texts(sender, "幸福路上的老王饭店")
    system.texts(sender, "上周吃饭花了800元，老板说开发票要加税点")
    reply = system.texts(sender, "匿名")
    assert re.search(r"JB\d{14}", reply), reply
    (ticket,) = system.service_get("/api/v1/tickets", conversation_id=sender)["items"]
    assert ticket["kind"] == "report" and ticket["contact_phone"] is None


def test_asking_for_a_person_records_a_handoff(system, sender):
    reply = system.texts(sender, "给我转人工客服")
    reference = re.search(r"RG\d{14}", reply)
    assert reference and "您排在第" in reply and "分钟" in reply, reply  # queued: place and estimated wait
    (handoff,) = system.service_get("/api/v1/handoffs", conversation_id=sender)["items"]
    assert handoff["reason"] == "user_request" and handoff["reference"] == reference.group(0)
    assert handoff["status"] == "queued"
    assert system.say(sender, "个税起征点是多少") == []  # the bot is paused: the message waits for a person


def test_repeated_misunderstanding_rephrase_then_offer_then_handoff(system, sender):
    # "/nlu_fallback" is what the FallbackClassifier turns a low-confidence message into.
    assert "换个说法" in system.texts(sender, "/nlu_fallback")
    offer = system.say(sender, "/nlu_fallback")
    assert "转接人工" in offer[0]["text"]
    assert [b["payload"] for b in offer[0]["buttons"]] == ["/request_human", "/deny"]
    reply = system.texts(sender, "/nlu_fallback")
    assert re.search(r"RG\d{14}", reply), reply
    (handoff,) = system.service_get("/api/v1/handoffs", conversation_id=sender)["items"]
    assert handoff["reason"] == "low_confidence"


def test_conversations_are_kept_in_the_sqlite_tracker_store(system, sender):
    system.texts(sender, "谢谢")
    with sqlite3.connect(system.data_dir / "rasa_tracker.db") as db:
        rows = db.execute("SELECT type_name FROM events WHERE sender_id = ?", (sender,)).fetchall()
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    kinds = {r[0] for r in rows}
    assert {"user", "bot", "action"} <= kinds
    assert journal == "wal"  # set by the Rasa server (channels/rasa_speedups.py) and persistent


def test_identifiers_are_masked_in_every_log_line(system):
    log = system.log_text()
    assert ZHANG_WEI_ID not in log
    assert ZHANG_WEI_PHONE not in log


def test_health_and_version_endpoints(system):
    assert httpx.get(f"{system.service_url}/health").json()["status"] == "ok"
    assert httpx.get(f"{system.service_url}/version").json()["version"]
    assert httpx.get(f"{system.actions_url}/health").status_code == 200
    assert httpx.get(f"{system.rasa_url}/status").status_code in (401, 403)
    status = httpx.get(f"{system.rasa_url}/status", params={"token": system.rasa_token})
    assert status.status_code == 200 and status.json()["model_id"]
