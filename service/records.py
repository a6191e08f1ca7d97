"""CSV import and export of taxpayer records (taxpayers, tax due, payments, refunds).

Files are UTF-8 with a BOM (Excel opens the Chinese correctly) and a header row. An import validates
every row first and then writes all of them or none. Row numbers in errors are spreadsheet rows:
the header is row 1, the first record row 2.

    python -m service.records import PATH   # a directory holding any of the four files, or one file
    python -m service.records export DIR
"""
from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, joinedload

from service.db import configured_engine, make_sessionmaker
from service.errors import RecordsImportError
from service.models import (
    CATEGORIES, CHINA_TZ, DUE_STATUSES, PAYMENT_STATUSES, REFUND_STATUSES, TAXPAYER_KINDS, Payment, Refund, TaxDue,
    Taxpayer,
)
from taxlib.identifiers import classify_identifier, is_valid_id_number, is_valid_uscc, normalize_phone

logger = logging.getLogger(__name__)

Parser = Callable[[str], Any]


def _text(max_len: int) -> Parser:
    def parse(value: str) -> str:
        if not value:
            raise ValueError("不能为空")
        if len(value) > max_len:
            raise ValueError(f"超过 {max_len} 个字符")
        return value
    return parse


def _optional(parser: Parser) -> Parser:
    return lambda value: parser(value) if value else None


def _choice(values: Sequence[str]) -> Parser:
    def parse(value: str) -> str:
        if value not in values:
            raise ValueError(f"取值“{value}”无效，应为 {'/'.join(values)} 之一")
        return value
    return parse


def _uscc(value: str) -> str:
    if not is_valid_uscc(value):
        raise ValueError("统一社会信用代码无效（格式或校验位错误）")
    return value.upper()


def _id_number(value: str) -> str:
    if not is_valid_id_number(value):
        raise ValueError("身份证号码无效（格式、出生日期或校验位错误）")
    return value.upper()


def _identifier(value: str) -> str:
    if classify_identifier(value) is None:
        raise ValueError("纳税人识别号或身份证号码无效（格式或校验位错误）")
    return value.upper()


def _phone(value: str) -> str:
    phone = normalize_phone(value)
    if phone is None:
        raise ValueError("手机号码无效")
    return phone


def _email(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value) or len(value) > 120:
        raise ValueError("电子邮箱无效")
    return value


def _money(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError("金额不是数字") from None
    if not amount.is_finite() or amount <= 0 or amount >= Decimal("1e12"):
        raise ValueError("金额应大于 0 且小于一万亿")
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]  # finite, so an int
        raise ValueError("金额最多两位小数")
    return amount.quantize(Decimal("0.01"))


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("日期应为 YYYY-MM-DD") from None


def _datetime(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("时间应为 YYYY-MM-DD HH:MM[:SS][+08:00]") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TZ)  # naive times are China time


# file stem -> (Chinese label, model, columns with their parsers, natural key)
TABLES: dict[str, tuple[str, type, dict[str, Parser], tuple[str, ...]]] = {
    "taxpayers": ("纳税人", Taxpayer, {
        "taxpayer_id": _optional(_uscc), "id_number": _optional(_id_number), "name": _text(100),
        "kind": _choice(TAXPAYER_KINDS), "category": _choice(CATEGORIES), "phone": _phone,
        "email": _optional(_email), "address": _optional(_text(200)), "tax_office": _optional(_text(100)),
    }, ()),
    "tax_due": ("应缴", TaxDue, {
        "taxpayer": _identifier, "tax_type": _text(32), "period": _text(32), "amount": _money, "due_date": _date,
        "status": _choice(DUE_STATUSES),
    }, ("taxpayer", "tax_type", "period")),
    "payments": ("缴款", Payment, {
        "taxpayer": _identifier, "tax_type": _text(32), "period": _text(32), "amount": _money, "paid_at": _datetime,
        "channel": _text(32), "voucher_no": _text(32), "status": _choice(PAYMENT_STATUSES),
    }, ("voucher_no",)),
    "refunds": ("退税", Refund, {
        "taxpayer": _identifier, "tax_type": _text(32), "period": _text(32), "amount": _money,
        "applied_at": _datetime, "status": _choice(REFUND_STATUSES), "updated_at": _optional(_datetime),
        "note": _optional(_text(200)),
    }, ("taxpayer", "tax_type", "period")),
}


def summary(counts: dict[str, int]) -> str:
    """{"taxpayers": 36, ...} -> '纳税人 36 条，应缴 40 条，…'"""
    return "，".join(f"{TABLES[name][0]} {counts.get(name, 0)} 条" for name in TABLES)


def _locate(path: Path) -> dict[str, Path]:
    if path.is_dir():
        files = {name: path / f"{name}.csv" for name in TABLES if (path / f"{name}.csv").is_file()}
        if not files:
            raise RecordsImportError([f"{path} 中没有 {', '.join(f'{n}.csv' for n in TABLES)} 中的任何文件"])
        return files
    if not path.is_file():
        raise RecordsImportError([f"找不到 {path}"])
    if path.suffix != ".csv" or path.stem not in TABLES:
        raise RecordsImportError([f"{path.name}: 文件名应为 {', '.join(f'{n}.csv' for n in TABLES)} 之一"])
    return {path.stem: path}


def _parse(name: str, path: Path, errors: list[str]) -> list[dict[str, Any]]:
    """Valid rows of one file (each with its '_row' number); problems go to ``errors``."""
    columns = TABLES[name][2]
    rows: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                errors.append(f"{path.name} 第1行: 缺少列 {', '.join(missing)}")
                return rows
            for number, raw in enumerate(reader, start=2):
                row_errors = [] if None not in raw else ["列数多于表头"]
                row: dict[str, Any] = {"_row": number}
                for column, parse in columns.items():
                    try:
                        value = (raw[column] or "").strip()
                        if "\x00" in value:
                            raise ValueError("含有非法字符")
                        row[column] = parse(value)
                    except ValueError as exc:
                        row_errors.append(f"{column}: {exc}")
                errors.extend(f"{path.name} 第{number}行: {problem}" for problem in row_errors)
                if not row_errors:
                    rows.append(row)
    except UnicodeDecodeError:
        errors.append(f"{path.name}: 不是 UTF-8 编码")
    except csv.Error as exc:
        errors.append(f"{path.name}: CSV 格式错误（{exc}）")
    return rows


def _known_taxpayers(session: Session, identifiers: set[str]) -> dict[str, Taxpayer]:
    """Existing taxpayers, keyed by each of their identifiers."""
    found = session.scalars(select(Taxpayer).where(
        or_(Taxpayer.taxpayer_id.in_(identifiers), Taxpayer.id_number.in_(identifiers)))).all()
    return {ident: taxpayer for taxpayer in found for ident in (taxpayer.taxpayer_id, taxpayer.id_number) if ident}


def _check(parsed: dict[str, list[dict[str, Any]]], known: dict[str, Taxpayer], errors: list[str]) -> None:
    """Rules across rows: identifiers present and unique, references resolvable, keys not repeated."""
    in_file: set[str] = set()
    for row in parsed.get("taxpayers", []):
        where = f"taxpayers.csv 第{row['_row']}行"
        idents = {i for i in (row["taxpayer_id"], row["id_number"]) if i}
        if not idents:
            errors.append(f"{where}: taxpayer_id 与 id_number 至少填写一项")
        if in_file & idents:
            errors.append(f"{where}: 纳税人重复出现")
        in_file |= idents
        if len({known[i].id for i in idents if i in known}) > 1:
            errors.append(f"{where}: taxpayer_id 与 id_number 分属两个已有纳税人")
    for name, (_label, _model, _columns, key) in TABLES.items():
        if name == "taxpayers":
            continue
        seen: set[tuple[Any, ...]] = set()
        for row in parsed.get(name, []):
            where = f"{name}.csv 第{row['_row']}行"
            if row["taxpayer"] not in in_file and row["taxpayer"] not in known:
                errors.append(f"{where}: 纳税人 {row['taxpayer']} 不存在")
            if tuple(row[k] for k in key) in seen:
                errors.append(f"{where}: 与前面的行重复（{', '.join(key)}）")
            seen.add(tuple(row[k] for k in key))


def _upsert_records(session: Session, name: str, rows: list[dict[str, Any]], known: dict[str, Taxpayer]) -> None:
    if not rows:
        return
    _label, model, columns, key = TABLES[name]
    pk_key = tuple("taxpayer_pk" if k == "taxpayer" else k for k in key)
    for row in rows:
        row["taxpayer_pk"] = known[row.pop("taxpayer")].id
    first = getattr(model, pk_key[0])
    existing = {tuple(getattr(r, k) for k in pk_key): r
                for r in session.scalars(select(model).where(first.in_({row[pk_key[0]] for row in rows})))}
    for row in rows:
        record = existing.get(tuple(row[k] for k in pk_key)) or model()
        for column in (*columns, "taxpayer_pk"):
            if column != "taxpayer":
                setattr(record, column, row[column])
        if name == "refunds" and record.updated_at is None:
            record.updated_at = record.applied_at
        session.add(record)


def import_records(session: Session, path: Path | str) -> dict[str, int]:
    """Validate then upsert every row of the CSV file(s) at ``path``; all or nothing. Returns counts per table."""
    files = _locate(Path(path))
    errors: list[str] = []
    parsed = {name: _parse(name, file, errors) for name, file in files.items()}
    identifiers = {row[c] for row in parsed.get("taxpayers", []) for c in ("taxpayer_id", "id_number") if row[c]}
    identifiers |= {row["taxpayer"] for name, rows in parsed.items() if name != "taxpayers" for row in rows}
    known = _known_taxpayers(session, identifiers)
    _check(parsed, known, errors)
    if errors:
        raise RecordsImportError(errors)
    try:
        for row in parsed.get("taxpayers", []):
            taxpayer = known.get(row["taxpayer_id"]) or known.get(row["id_number"]) or Taxpayer()
            for column in TABLES["taxpayers"][2]:
                setattr(taxpayer, column, row[column])
            session.add(taxpayer)
            known |= {ident: taxpayer for ident in (row["taxpayer_id"], row["id_number"]) if ident}
        session.flush()
        for name in ("tax_due", "payments", "refunds"):
            _upsert_records(session, name, parsed.get(name, []), known)
        session.commit()
    except Exception:
        session.rollback()
        raise
    counts = {name: len(rows) for name, rows in parsed.items()}
    logger.info("records.imported %s", counts)
    return counts


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")
    return value.isoformat() if isinstance(value, date) else str(value)


def export_records(session: Session, directory: Path | str) -> dict[str, int]:
    """Write the four CSV files into ``directory``; returns counts per table."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name, (_label, model, columns, _key) in TABLES.items():
        query = select(model).order_by(model.id)
        if model is not Taxpayer:
            query = query.options(joinedload(model.taxpayer))
        records = session.scalars(query).all()
        with (directory / f"{name}.csv").open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for record in records:
                writer.writerow(
                    _cell(record.taxpayer.identifier if column == "taxpayer" else getattr(record, column))
                    for column in columns
                )
        counts[name] = len(records)
    logger.info("records.exported %s", counts)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.records", description="导入或导出纳税人记录（CSV）")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("import", help="导入一个目录或一个 CSV 文件").add_argument("path", type=Path)
    commands.add_parser("export", help="导出全部记录到目录").add_argument("path", type=Path)
    args = parser.parse_args(argv)
    engine = configured_engine()
    if engine is None:
        return 2
    try:
        with make_sessionmaker(engine)() as session:
            if args.command == "export":
                print(f"已导出 {summary(export_records(session, args.path))}（{args.path}）")
                return 0
            try:
                counts = import_records(session, args.path)
            except RecordsImportError as exc:
                print("导入失败，未导入任何记录：", *exc.errors, sep="\n", file=sys.stderr)
                return 1
            print(f"已导入 {summary(counts)}")
            return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
