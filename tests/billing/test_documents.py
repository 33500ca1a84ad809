"""Invoice and receipt PDFs (Bangla shaped, extractable, rendered) and the XLSX/CSV exports."""
from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import uharfbuzz
from openpyxl import load_workbook

from ispcore.accounts.models import Tenant
from ispcore.billing import documents
from ispcore.billing.documents import (
    BANGLA,
    LABELS,
    LATIN,
    METHOD_LABELS,
    STATUS_LABELS,
    DocumentFontsMissing,
    find_font_file,
    format_money,
    invoice_pdf,
    invoices_xlsx,
    ledger_statement_xlsx,
    receipt_pdf,
    script_runs,
    shape,
    table_csv,
    table_xlsx,
)
from ispcore.billing.invoicing import create_invoice
from ispcore.billing.models import Invoice, LedgerEntry
from ispcore.billing.sales import record_payment
from ispcore.billing.services import open_wallet
from ispcore.subscribers import services as subscribers
from ispcore.subscribers.models import Customer
from tests.billing.conftest import build_chain

ISP_NAME = "Dhaka Fiber Net (ঢাকা ফাইবার নেট)"
CUSTOMER_NAME = "রহিম উদ্দিন"
ADDRESS = "বাড়ি ১২, রোড ৫, মিরপুর ১০, ঢাকা"
ZONE = "মিরপুর"

POPPLER = "poppler-utils is not installed (apt-get install poppler-utils); `make` installs it for CI"
needs_poppler = pytest.mark.skipif(not all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "pdffonts", "pdfinfo")),
                                   reason=POPPLER)


# --------------------------------------------------------------------------- helpers


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """The text poppler extracts from `pdf`, whitespace collapsed."""
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True, timeout=60)
    return re.sub(r"\s+", " ", out.stdout.decode("utf-8"))


def pdf_fonts(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdffonts", str(path)], capture_output=True, check=True, timeout=60).stdout.decode()


def ink_fraction(pdf: bytes, tmp_path: Path) -> float:
    """Render page 1 at 50 dpi and return the fraction of pixels that are not near-white."""
    image_module = pytest.importorskip("PIL.Image", reason="Pillow (a ReportLab dependency) is not installed")
    path = tmp_path / "page.pdf"
    path.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", "-singlefile", str(path),
                    str(tmp_path / "page")], check=True, timeout=60)
    with image_module.open(tmp_path / "page.png") as image:
        gray = image.convert("L")
        histogram = gray.histogram()
        width, height = gray.size
    assert abs(width - 413) <= 1 and abs(height - 585) <= 1  # A4 at 50 dpi
    return sum(histogram[:200]) / (width * height)


def world():
    """A tenant with a Bangla name, a monthly customer with a Bangla name, address and zone,
    a December invoice (7.5% VAT, a discount) and a part payment in cash."""
    chain = build_chain(vat="7.5")
    tenant = chain["tenant"]
    Tenant.objects.filter(pk=tenant.pk).update(name=ISP_NAME)
    zone = subscribers.create_zone(actor=chain["admin"], tenant=tenant, name=ZONE)
    customer = chain["customer"](chain["root"], "rahim", package=chain["monthly"], monthly_discount=Decimal("33.33"))
    Customer.objects.filter(pk=customer.pk).update(full_name=CUSTOMER_NAME, address=ADDRESS, zone=zone)
    customer.refresh_from_db()
    invoice = Invoice.objects.select_related("tenant", "customer").get(pk=create_invoice(customer.pk, date(2026, 12, 1)).pk)
    payment = record_payment(customer, Decimal("500"), method="cash", actor=chain["cash_manager"],
                             idempotency_key="doc-pay-1", reference="=HYPERLINK(\"x\")")
    invoice.refresh_from_db()
    return {**chain, "customer_obj": customer, "invoice": invoice, "payment": payment, "zone": zone}


@pytest.fixture
def docs(db):
    return world()


# --------------------------------------------------------------------------- fonts and shaping (no database)


def test_missing_fonts_name_the_debian_package(tmp_path):
    with pytest.raises(DocumentFontsMissing, match="fonts-noto-core"):
        find_font_file("NotoSansBengali-Regular.ttf", dirs=[tmp_path / "nothing-here", tmp_path])


def test_fonts_are_found_in_subdirectories_and_via_the_environment(tmp_path, monkeypatch):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "Fake.ttf").write_bytes(b"x")
    assert find_font_file("Fake.ttf", dirs=[tmp_path]) == nested / "Fake.ttf"
    monkeypatch.setenv(documents.FONT_DIRS_ENV, str(tmp_path))
    assert documents.font_dirs()[0] == tmp_path


def test_mixed_text_is_split_into_script_runs():
    assert script_runs("Total (মোট)") == [("Total", LATIN), (" (মোট)", BANGLA)]
    assert script_runs("৳ 1,039.17") == [("৳ 1,039.17", BANGLA)]
    assert script_runs("1,039.17") == [("1,039.17", LATIN)]
    assert script_runs("ঢাকাNet") == [("ঢাকা", BANGLA), ("Net", LATIN)]
    assert script_runs("Home 10M, December 2026") == [("Home 10M, December 2026", LATIN)]


def test_bangla_is_shaped_not_drawn_in_logical_order():
    # 'বিল' (bill): the i-kar is drawn before the consonant; unshaped it came out as 'বলি'.
    glyphs, width = shape("বিল", BANGLA, 10)
    assert str(glyphs)[0] == "\u09bf" and width > 0
    # 'ক্ষ' is one conjunct glyph, not three characters.
    conjunct, _ = shape("ক্ষ", BANGLA, 10)
    assert len(conjunct) == 1


def test_every_bangla_label_has_real_glyphs():
    """No label, status or method text falls back to .notdef (the 'boxes') in its font."""
    blobs = {}
    for text in [*LABELS.values(), *STATUS_LABELS.values(), *METHOD_LABELS.values(), ISP_NAME, CUSTOMER_NAME,
                 ADDRESS, format_money(Decimal("-1234.5"))]:
        for run, font in script_runs(text):
            filename = documents.FONT_FILES[font]
            if filename not in blobs:
                blobs[filename] = uharfbuzz.Font(uharfbuzz.Face(uharfbuzz.Blob.from_file_path(str(find_font_file(filename)))))
            buf = uharfbuzz.Buffer()
            buf.add_str(run)
            buf.guess_segment_properties()
            uharfbuzz.shape(blobs[filename], buf, {})
            assert all(info.codepoint != 0 for info in buf.glyph_infos), (text, run, font)


def test_money_and_quantity_formatting():
    assert format_money(Decimal("1039.17")) == "৳ 1,039.17"
    assert format_money(Decimal("-33.335")) == "-৳ 33.34"
    assert format_money(Decimal("5"), "USD") == "USD 5.00"
    assert documents.format_quantity(Decimal("1.0000")) == "1"
    assert documents.format_quantity(Decimal("0.5667")) == "0.5667"
    assert documents.format_period(date(2026, 12, 1)) == "December 2026"


# --------------------------------------------------------------------------- PDFs


def test_invoice_and_receipt_are_a4_pdfs(docs):
    for pdf in (invoice_pdf(docs["invoice"]), receipt_pdf(docs["payment"])):
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
        assert re.search(rb"/MediaBox \[ ?0 0 595\.27\d* 841\.889\d* ?\]", pdf)


@needs_poppler
def test_invoice_pdf_text_round_trips_with_bangla(docs, tmp_path):
    inv, customer = docs["invoice"], docs["customer_obj"]
    assert inv.total == Decimal("1039.17") and inv.paid == Decimal("500.00")
    text = pdf_text(invoice_pdf(inv), tmp_path)
    for expected in [ISP_NAME, "Invoice (চালান)", inv.number, "December 2026", CUSTOMER_NAME, customer.username,
                     customer.mobile, ADDRESS, ZONE, "Total (মোট)", "মোট", "Subtotal (উপমোট)", "VAT (ভ্যাট) 7.5%",
                     "৳ 1,000.00", "-৳ 33.33", "৳ 72.50", "৳ 1,039.17", "৳ 500.00", "৳ 539.17",
                     "Unpaid (অপরিশোধিত)", "Home 10M, December 2026", "Due date (পরিশোধের শেষ তারিখ)"]:
        assert expected in text, expected
    # Logical order, not glyph order: the glyphs of 'বিবরণ' are drawn as 'িববরণ', 'মোট' as 'েমাট'.
    assert "Description (বিবরণ)" in text and "িববরণ" not in text and "েমাট" not in text


@needs_poppler
def test_invoice_dates_are_in_the_tenant_time_zone(docs, tmp_path):
    inv = docs["invoice"]
    # 23:30 UTC on 30 Nov is already 1 Dec in Dhaka (UTC+6).
    Invoice.objects.filter(pk=inv.pk).update(issued_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC),
                                             due_date=date(2026, 12, 11))
    inv.refresh_from_db()
    text = pdf_text(invoice_pdf(inv), tmp_path)
    assert "Issue date (প্রদানের তারিখ) 01 Dec 2026" in text and "30 Nov 2026" not in text
    assert "11 Dec 2026" in text


@needs_poppler
def test_invoice_pdf_embeds_both_fonts_and_is_not_blank(docs, tmp_path):
    pdf = invoice_pdf(docs["invoice"])
    fonts = pdf_fonts(pdf, tmp_path)
    assert "NotoSansBengali" in fonts and "NotoSans-" in fonts
    ink = ink_fraction(pdf, tmp_path)
    assert 0.005 < ink < 0.5, ink


@needs_poppler
def test_long_invoices_flow_onto_more_pages(docs, tmp_path):
    inv = docs["invoice"]
    line = inv.lines.first()
    for i in range(80):
        inv.lines.create(description=f"{CUSTOMER_NAME} extra line {i}", quantity=Decimal("1"),
                         unit_price=line.unit_price, amount=line.amount)
    pdf = invoice_pdf(inv)
    text = pdf_text(pdf, tmp_path)
    assert "extra line 79" in text and "Balance due (মোট প্রদেয়)" in text
    path = tmp_path / "long.pdf"
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True).stdout.decode()
    assert int(re.search(r"Pages:\s+(\d+)", info).group(1)) >= 2


@needs_poppler
def test_receipt_pdf(docs, tmp_path):
    payment, inv = docs["payment"], docs["invoice"]
    pdf = receipt_pdf(payment)
    text = pdf_text(pdf, tmp_path)
    for expected in ["Money receipt (টাকা প্রাপ্তির রসিদ)", payment.receipt_number, CUSTOMER_NAME, "rahim",
                     "৳ 500.00", "Cash (নগদ)", docs["cash_manager"].username, "Invoices settled (পরিশোধিত চালান)",
                     inv.number, "December 2026", "=HYPERLINK", ISP_NAME]:
        assert expected in text, expected
    assert 0.003 < ink_fraction(pdf, tmp_path) < 0.5


@needs_poppler
def test_receipt_for_an_advance_payment_says_so(docs, tmp_path):
    customer = docs["customer_obj"]
    advance = record_payment(customer, Decimal("2000"), method="bkash", actor=None, idempotency_key="doc-pay-2",
                             reference="TRX9")
    text = pdf_text(receipt_pdf(advance), tmp_path)
    assert "bKash (বিকাশ)" in text and "TRX9" in text
    assert "৳ 539.17" in text and "Credited to balance (ব্যালেন্সে জমা)" in text and "৳ 1,460.83" in text


# --------------------------------------------------------------------------- spreadsheets


def load(data: bytes):
    assert data[:2] == b"PK"
    return load_workbook(io.BytesIO(data))


def test_invoices_xlsx(docs):
    inv = docs["invoice"]
    data = invoices_xlsx(Invoice.objects.filter(pk=inv.pk))
    ws = load(data).active
    headers = [c.value for c in ws[1]]
    assert headers == list(documents.INVOICE_HEADERS)
    assert all(c.font.bold for c in ws[1]) and ws.freeze_panes == "A2"
    row = {h: c for h, c in zip(headers, ws[2], strict=True)}
    assert row["Invoice no."].value == inv.number
    assert row["Period"].value == datetime(2026, 12, 1) and row["Period"].is_date
    assert row["Due date"].value == datetime.combine(inv.due_date, datetime.min.time())
    assert row["Customer"].value == CUSTOMER_NAME and row["Zone"].value == ZONE
    for name, expected in [("Subtotal", "1000.00"), ("Discount", "33.33"), ("VAT", "72.50"), ("Total", "1039.17"),
                           ("Paid", "500.00"), ("Outstanding", "539.17")]:
        cell = row[name]
        assert cell.data_type == "n" and cell.number_format == "0.00", name
        assert Decimal(str(cell.value)) == Decimal(expected), name
    assert row["Status"].value == "Open"
    assert ws.column_dimensions["F"].width >= len(CUSTOMER_NAME)
    # Written as the exact decimal text, not a binary float's expansion.
    sheet = zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml").decode()
    assert "<v>1039.17</v>" in sheet


def test_ledger_statement_xlsx(docs):
    wallet = open_wallet(tenant=docs["tenant"], customer=docs["customer_obj"])
    ws = load(ledger_statement_xlsx(wallet, LedgerEntry.objects.all())).active
    assert [c.value for c in ws[1]] == list(documents.LEDGER_HEADERS) and ws.freeze_panes == "A2"
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=2)]
    assert [r[1] for r in rows] == ["invoice", "payment"]  # oldest first, only this wallet
    invoice_row, payment_row = rows
    assert invoice_row[4] == pytest.approx(1039.17) and invoice_row[5] is None
    assert Decimal(str(invoice_row[6])) == Decimal("-1039.17")
    assert payment_row[4] is None and Decimal(str(payment_row[5])) == Decimal("500.00")
    assert Decimal(str(payment_row[6])) == Decimal("-539.17")
    assert isinstance(invoice_row[0], datetime) and ws["A2"].number_format == "yyyy-mm-dd hh:mm"
    assert invoice_row[2] == docs["invoice"].number and payment_row[2] == "cash payment"
    assert payment_row[3] == '=HYPERLINK("x")' and ws["D3"].data_type == "s"  # text, not a formula


def test_table_xlsx_types_and_formula_safety():
    rows = [["রহিম উদ্দিন", Decimal("1234.56"), date(2026, 12, 10), 3, None, "=1+1"],
            ["Karim", Decimal("0.1"), date(2027, 1, 1), 0, True, "-5"]]
    ws = load(table_xlsx("Receivables: Dec/2026 [zone*]", ["Name", "Due", "Due date", "Days", "Flag", "Note"], rows)).active
    assert ws.title == "Receivables  Dec 2026  zone"
    assert ws.freeze_panes == "A2" and ws["A1"].font.bold and ws.auto_filter.ref == "A1:F3"
    assert ws["A2"].value == "রহিম উদ্দিন"
    assert ws["B2"].value == pytest.approx(1234.56) and ws["B2"].number_format == "0.00"
    assert ws["C2"].value == datetime(2026, 12, 10) and ws["C2"].is_date
    assert ws["D2"].value == 3 and ws["E2"].value is None and ws["E3"].value is True
    assert ws["F2"].value == "=1+1" and ws["F2"].data_type == "s"
    assert ws["F3"].value == "-5" and ws["F3"].data_type == "s"


def test_table_xlsx_with_no_rows_still_has_a_header():
    ws = load(table_xlsx("Empty", ["A", "B"], [])).active
    assert [c.value for c in ws[1]] == ["A", "B"] and ws.max_row == 1


def test_table_csv_has_a_bom_and_round_trips_bangla():
    data = table_csv(["Name", "Due", "Due date", "Note"],
                     [[CUSTOMER_NAME, Decimal("539.17"), date(2026, 12, 11), "=cmd|' /C calc'!A0"],
                      ["Karim, Jr.", Decimal("-1.50"), None, "line\nbreak"]])
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows == [["Name", "Due", "Due date", "Note"],
                    [CUSTOMER_NAME, "539.17", "2026-12-11", "'=cmd|' /C calc'!A0"],
                    ["Karim, Jr.", "-1.50", "", "line\nbreak"]]
    assert b"\r\n" in data
