"""CSV import/export of records, the demo data set, and the command line."""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.app import DEMO_DATA
from service.errors import RecordsImportError
from service.models import Payment, Refund, TaxDue, Taxpayer
from service.records import export_records, import_records, main
from service.settings import get_settings
from taxlib.identifiers import classify_identifier, normalize_phone

from tests.service.service_support import TOKEN

MODELS = (Taxpayer, TaxDue, Payment, Refund)
TAXPAYERS_HEADER = "taxpayer_id,id_number,name,kind,category,phone,email,address,tax_office\n"
DUE_HEADER = "taxpayer,tax_type,period,amount,due_date,status\n"


def counts(session: Session) -> list[int]:
    return [session.scalar(select(func.count()).select_from(model)) for model in MODELS]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8-sig")
    return path


def test_demo_data_is_seeded_and_complete(db: Session) -> None:
    taxpayers = db.scalars(select(Taxpayer)).all()
    assert len(taxpayers) >= 36
    assert {t.kind for t in taxpayers} == {"enterprise", "individual", "household"}
    assert {t.category for t in taxpayers} == {"normal", "VIP"}
    for t in taxpayers:
        assert t.taxpayer_id is None or classify_identifier(t.taxpayer_id) == "taxpayer_id"
        assert t.id_number is None or classify_identifier(t.id_number) == "id_number"
        assert normalize_phone(t.phone) == t.phone
    assert {d.status for d in db.scalars(select(TaxDue))} >= {"unpaid", "overdue"}
    assert {p.status for p in db.scalars(select(Payment))} == {"success", "processing", "failed"}
    assert {r.status for r in db.scalars(select(Refund))} == {"submitted", "reviewing", "approved", "paid", "rejected", "returned"}
    with_dues = set(db.scalars(select(TaxDue.taxpayer_pk).where(TaxDue.status != "paid")))
    assert 0 < len(with_dues) < len(taxpayers)  # some owe nothing

    zhang = db.scalar(select(Taxpayer).filter_by(id_number="110101198704020880"))
    assert (zhang.name, zhang.kind, zhang.category, zhang.phone) == ("张伟", "individual", "normal", "13817414333")
    assert [(d.tax_type, d.period, d.amount, d.status) for d in db.scalars(select(TaxDue).filter_by(taxpayer_pk=zhang.id))] \
        == [("个人所得税", "2025年", Decimal("1280.00"), "unpaid")]
    assert [p.status for p in db.scalars(select(Payment).filter_by(taxpayer_pk=zhang.id))] == ["success"]
    assert [(r.tax_type, r.period, r.amount, r.status) for r in db.scalars(select(Refund).filter_by(taxpayer_pk=zhang.id))] \
        == [("个人所得税", "2025年", Decimal("860.00"), "reviewing")]

    yunfan = db.scalar(select(Taxpayer).filter_by(taxpayer_id="9111010178CCCC3FLD"))
    assert (yunfan.name, yunfan.kind, yunfan.category, yunfan.phone) == ("北京云帆科技有限公司", "enterprise", "VIP", "13925449920")
    assert {(d.tax_type, d.period, d.amount, d.status) for d in db.scalars(select(TaxDue).filter_by(taxpayer_pk=yunfan.id))} \
        == {("增值税", "2026年10月", Decimal("36500.00"), "unpaid"), ("企业所得税", "2026年第三季度", Decimal("12000.00"), "overdue")}
    assert "processing" in {p.status for p in db.scalars(select(Payment).filter_by(taxpayer_pk=yunfan.id))}
    assert [r.status for r in db.scalars(select(Refund).filter_by(taxpayer_pk=yunfan.id))] == ["paid"]

    lina = db.scalar(select(Taxpayer).filter_by(id_number="310104199402160600"))
    assert (lina.name, lina.phone) == ("李娜", "15718746331")
    for model in (TaxDue, Payment, Refund):
        assert db.scalar(select(func.count()).select_from(model).filter_by(taxpayer_pk=lina.id)) == 0


def test_seeding_can_be_switched_off(make_client: Callable[..., object]) -> None:
    client = make_client(seed_demo_data=False)
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        assert counts(session) == [0, 0, 0, 0]


def test_export_import_round_trip(db: Session, tmp_path: Path) -> None:
    first = export_records(db, tmp_path / "a")
    assert first == dict(zip(("taxpayers", "tax_due", "payments", "refunds"), counts(db)))
    raw = (tmp_path / "a" / "taxpayers.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf" + TAXPAYERS_HEADER.strip().encode())  # BOM for Excel, then the header
    assert "北京云帆科技有限公司".encode() in raw
    for model in reversed(MODELS):
        db.execute(delete(model))
    db.commit()
    assert counts(db) == [0, 0, 0, 0]
    assert import_records(db, tmp_path / "a") == first
    assert export_records(db, tmp_path / "b") == first
    for name in first:
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (tmp_path / "b" / f"{name}.csv").read_bytes()


def test_invalid_file_imports_nothing_and_names_the_rows(db: Session, tmp_path: Path) -> None:
    before = counts(db)
    write(tmp_path / "taxpayers.csv", TAXPAYERS_HEADER + ",110101199003070011,赵新,individual,normal,13800000000,,,\n")
    write(tmp_path / "tax_due.csv", DUE_HEADER
          + "110101199003070011,个人所得税,2025年,100.00,2026-06-30,unpaid\n"     # row 2: fine
          + "110101199003070012,个人所得税,2024年,100.00,2025-06-30,unpaid\n"     # row 3: bad check digit
          + "110101199003070011,增值税,2025年,100.00,2026-06-30,unpaid\n"         # row 4: fine
          + "110101199003070011,印花税,2025年,100.00,2026-06-30,pending\n")       # row 5: unknown status
    with pytest.raises(RecordsImportError) as info:
        import_records(db, tmp_path)
    errors = info.value.errors
    assert len(errors) == 2
    assert errors[0].startswith("tax_due.csv 第3行: taxpayer:") and "校验位" in errors[0]
    assert errors[1].startswith("tax_due.csv 第5行: status:") and "pending" in errors[1]
    assert counts(db) == before  # neither the valid taxpayer nor the valid rows went in
    assert db.scalar(select(Taxpayer).filter_by(id_number="110101199003070011")) is None


@pytest.mark.parametrize(("text", "problem"), [
    (",110101199003070011,赵新,individual,normal,1380000000,,,\n", "phone: 手机号码无效"),
    (",110101199003070011,赵新,person,normal,13800000000,,,\n", "kind: 取值“person”无效"),
    (",110101199003070011,赵新,individual,gold,13800000000,,,\n", "category: 取值“gold”无效"),
    (",,赵新,individual,normal,13800000000,,,\n", "至少填写一项"),
    ("9111010178CCCC3FLA,,某公司,enterprise,normal,13800000000,,,\n", "taxpayer_id: 统一社会信用代码无效"),
    (",110101199002300011,赵新,individual,normal,13800000000,,,\n", "id_number: 身份证号码无效"),
    (",110101199003070011,,individual,normal,13800000000,,,\n", "name: 不能为空"),
    (",110101199003070011,赵新,individual,normal,13800000000,not-an-email,,\n", "email: 电子邮箱无效"),
    (",110101199003070011,赵新,individual,normal,13800000000,,,,extra\n", "列数多于表头"),
    (",110101199003070011,赵\x00新,individual,normal,13800000000,,,\n", "name: 含有非法字符"),
])
def test_taxpayer_rows_are_validated(db: Session, tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(RecordsImportError) as info:
        import_records(db, write(tmp_path / "taxpayers.csv", TAXPAYERS_HEADER + text))
    assert len(info.value.errors) == 1 and info.value.errors[0].startswith("taxpayers.csv 第2行")
    assert problem in info.value.errors[0]


@pytest.mark.parametrize(("row", "problem"), [
    ("110101198704020880,个人所得税,2023年,-5,2024-06-30,unpaid", "amount: 金额应大于 0"),
    ("110101198704020880,个人所得税,2023年,1.005,2024-06-30,unpaid", "amount: 金额最多两位小数"),
    ("110101198704020880,个人所得税,2023年,abc,2024-06-30,unpaid", "amount: 金额不是数字"),
    ("110101198704020880,个人所得税,2023年,NaN,2024-06-30,unpaid", "amount: 金额应大于 0"),
    ("110101198704020880,个人所得税,2023年,10,2024/06/30,unpaid", "due_date: 日期应为 YYYY-MM-DD"),
    ("110101199003070011,个人所得税,2023年,10,2024-06-30,unpaid", "纳税人 110101199003070011 不存在"),
    ("110101198704020880,个人所得税,2025年,10,2026-06-30,unpaid\n110101198704020880,个人所得税,2025年,20,2026-06-30,unpaid",
     "第3行: 与前面的行重复"),
])
def test_record_rows_are_validated(db: Session, tmp_path: Path, row: str, problem: str) -> None:
    with pytest.raises(RecordsImportError) as info:
        import_records(db, write(tmp_path / "tax_due.csv", DUE_HEADER + row + "\n"))
    assert [problem in e for e in info.value.errors] == [True]


def test_payment_and_refund_times(db: Session, tmp_path: Path) -> None:
    write(tmp_path / "payments.csv", "taxpayer,tax_type,period,amount,paid_at,channel,voucher_no,status\n"
          "310104199402160600,个人所得税,2025年,12.30,2026-01-05 10:00,个人所得税App,V1,success\n"
          "310104199402160600,个人所得税,2024年,5,2026-01-05T02:00:00Z,银行柜台,V2,processing\n")
    write(tmp_path / "refunds.csv", "taxpayer,tax_type,period,amount,applied_at,status,updated_at,note\n"
          "310104199402160600,个人所得税,2025年,8.8,2026-02-01T09:00:00+08:00,submitted,,\n")
    assert import_records(db, tmp_path) == {"payments": 2, "refunds": 1}
    v1, v2 = db.scalars(select(Payment).where(Payment.voucher_no.in_(["V1", "V2"])).order_by(Payment.voucher_no))
    assert v1.paid_at == v2.paid_at  # naive times are China time
    refund = db.scalar(select(Refund).filter_by(period="2025年", amount=Decimal("8.80")))
    assert refund.updated_at == refund.applied_at and refund.note is None


def test_import_upserts_by_natural_keys(db: Session, tmp_path: Path) -> None:
    before = counts(db)
    write(tmp_path / "taxpayers.csv", TAXPAYERS_HEADER + ",310104199402160600,李娜,individual,VIP,15718746331,lina@example.cn,,\n")
    write(tmp_path / "tax_due.csv", DUE_HEADER + "110101198704020880,个人所得税,2025年,1300.50,2026-06-30,overdue\n")
    write(tmp_path / "payments.csv", "taxpayer,tax_type,period,amount,paid_at,channel,voucher_no,status\n"
          f"110101198704020880,个人所得税,2024年,2360.00,2025-05-18T20:41:09+08:00,个人所得税App,"
          f"{db.scalar(select(Payment.voucher_no).join(Taxpayer).filter(Taxpayer.name == '张伟'))},failed\n")
    assert import_records(db, tmp_path) == {"taxpayers": 1, "tax_due": 1, "payments": 1}
    db.expire_all()
    assert counts(db) == before
    assert db.scalar(select(Taxpayer).filter_by(name="李娜")).category == "VIP"
    due = db.scalar(select(TaxDue).join(Taxpayer).filter(Taxpayer.name == "张伟"))
    assert (due.amount, due.status) == (Decimal("1300.50"), "overdue")
    assert db.scalar(select(Payment.status).join(Taxpayer).filter(Taxpayer.name == "张伟")) == "failed"


def test_file_and_header_problems(db: Session, tmp_path: Path) -> None:
    def errors(path: Path) -> list[str]:
        with pytest.raises(RecordsImportError) as info:
            import_records(db, path)
        return info.value.errors

    assert "找不到" in errors(tmp_path / "missing")[0]
    assert "没有" in errors(tmp_path)[0]
    assert "文件名应为" in errors(write(tmp_path / "people.csv", TAXPAYERS_HEADER))[0]
    assert errors(write(tmp_path / "tax_due.csv", "taxpayer,tax_type,amount\n"))[0] == \
        "tax_due.csv 第1行: 缺少列 period, due_date, status"
    (tmp_path / "tax_due.csv").write_bytes(DUE_HEADER.encode("gbk") + "张伟".encode("gbk"))
    assert "UTF-8" in errors(tmp_path / "tax_due.csv")[0]


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_url: str, tmp_path: Path) -> Iterator[str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAXBOT_SERVICE_TOKEN", TOKEN)
    monkeypatch.setenv("TAXBOT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def test_command_line_import_and_export(cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(DEMO_DATA)]) == 0
    with (DEMO_DATA / "taxpayers.csv").open(encoding="utf-8-sig") as handle:
        taxpayers = sum(1 for _ in csv.DictReader(handle))
    out = capsys.readouterr().out
    assert out.startswith(f"已导入 纳税人 {taxpayers} 条，应缴 ") and "缴款" in out and "退税" in out
    assert main(["export", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.startswith(f"已导出 纳税人 {taxpayers} 条")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["payments.csv", "refunds.csv", "tax_due.csv", "taxpayers.csv"]

    bad = write(tmp_path / "taxpayers.csv", TAXPAYERS_HEADER + ",110101199003070012,赵新,individual,normal,13800000000,,,\n")
    assert main(["import", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "未导入任何记录" in captured.err and "taxpayers.csv 第2行" in captured.err and captured.out == ""


def test_command_line_refuses_without_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAXBOT_SERVICE_TOKEN", raising=False)
    get_settings.cache_clear()
    assert main(["export", str(tmp_path)]) == 2
    assert "TAXBOT_SERVICE_TOKEN" in capsys.readouterr().err
    get_settings.cache_clear()
