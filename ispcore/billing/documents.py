"""Printable and exportable billing documents: invoice and receipt PDFs, XLSX and CSV exports.

PDFs are A4 with bilingual labels (English, Bangla in parentheses). Bangla is shaped with
HarfBuzz (`uharfbuzz`, through ReportLab) and drawn in Noto Sans Bengali, Latin runs in Noto
Sans: no font on Debian has both scripts in the same family weight, so every line is split
into script runs, each shaped in its own font. Each drawn line is wrapped in a PDF
`/ActualText` span carrying its logical Unicode text, so copy/paste, search and `pdftotext`
give back 'মোট', not the reordered glyph sequence ('িবল' for 'বিল').

The fonts come from the Debian package `fonts-noto-core` and are looked up at runtime in the
standard font directories; they are never copied into the repository.

Exports write money as exact numbers (a Decimal is written as its own decimal string, never
through a float) with a `0.00` format, dates as real dates, a bold frozen header row and
column widths; text that a spreadsheet would run as a formula is kept as text."""
from __future__ import annotations

import csv
import functools
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from django.utils import timezone
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics, ttfonts
from reportlab.pdfbase.ttfonts import ShapedStr, TTFont, shapeStr
from reportlab.platypus import Flowable, SimpleDocTemplate, Spacer, Table, TableStyle

FONT_PACKAGE = "fonts-noto-core"
"""The Debian package that provides the PDF fonts (`apt-get install fonts-noto-core`)."""

FONT_DIRS_ENV = "ISP_DOCUMENT_FONT_DIRS"
"""Extra font directories to search first (os.pathsep separated), e.g. on a non-Debian host."""

DEFAULT_FONT_DIRS = (
    "/usr/share/fonts/truetype/noto",
    "/usr/share/fonts/opentype/noto",
    "/usr/share/fonts/truetype",
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
)

LATIN, LATIN_BOLD, BANGLA, BANGLA_BOLD = "ISPDoc-Latin", "ISPDoc-Latin-Bold", "ISPDoc-Bangla", "ISPDoc-Bangla-Bold"
FONT_FILES = {
    LATIN: "NotoSans-Regular.ttf",
    LATIN_BOLD: "NotoSans-Bold.ttf",
    BANGLA: "NotoSansBengali-Regular.ttf",
    BANGLA_BOLD: "NotoSansBengali-Bold.ttf",
}

CURRENCY_SYMBOLS = {"BDT": "৳"}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

# Bilingual labels: English first, Bangla in parentheses.
LABELS = {
    "invoice": "Invoice (চালান)",
    "invoice_no": "Invoice no. (চালান নং)",
    "period": "Billing period (বিলের মাস)",
    "issued": "Issue date (প্রদানের তারিখ)",
    "due": "Due date (পরিশোধের শেষ তারিখ)",
    "status": "Status (অবস্থা)",
    "bill_to": "Bill to (গ্রাহক)",
    "name": "Name (নাম)",
    "username": "Username (ইউজারনেম)",
    "mobile": "Mobile (মোবাইল)",
    "address": "Address (ঠিকানা)",
    "zone": "Zone (এলাকা)",
    "description": "Description (বিবরণ)",
    "qty": "Qty (পরিমাণ)",
    "unit_price": "Unit price (একক মূল্য)",
    "amount": "Amount (টাকা)",
    "subtotal": "Subtotal (উপমোট)",
    "discount": "Discount (ছাড়)",
    "vat": "VAT (ভ্যাট)",
    "total": "Total (মোট)",
    "previous_due": "Previous due (পূর্বের বকেয়া)",
    "paid": "Amount paid (পরিশোধিত)",
    "balance_due": "Balance due (মোট প্রদেয়)",
    "currency": "Currency (মুদ্রা)",
    "receipt": "Money receipt (টাকা প্রাপ্তির রসিদ)",
    "receipt_no": "Receipt no. (রসিদ নং)",
    "date": "Date (তারিখ)",
    "customer": "Customer (গ্রাহক)",
    "amount_received": "Amount received (প্রাপ্ত টাকা)",
    "method": "Method (মাধ্যম)",
    "reference": "Reference (রেফারেন্স)",
    "collected_by": "Collected by (আদায়কারী)",
    "settled": "Invoices settled (পরিশোধিত চালান)",
    "applied": "Amount applied (সমন্বিত টাকা)",
    "none_settled": "No open invoice: credited to the balance (কোনো বকেয়া চালান নেই: ব্যালেন্সে জমা)",
    "to_balance": "Credited to balance (ব্যালেন্সে জমা)",
    "footer": "Computer-generated document, no signature required (কম্পিউটারে তৈরি, স্বাক্ষরের প্রয়োজন নেই)",
}
STATUS_LABELS = {"open": "Unpaid (অপরিশোধিত)", "paid": "Paid (পরিশোধিত)", "void": "Void (বাতিল)"}
METHOD_LABELS = {
    "cash": "Cash (নগদ)",
    "online": "Online gateway (অনলাইন)",
    "bkash": "bKash (বিকাশ)",
    "send_money": "Send money (সেন্ড মানি)",
    "card": "Recharge card (রিচার্জ কার্ড)",
    "adjustment": "Adjustment (সমন্বয়)",
}

MARGIN = 16 * mm
CONTENT_WIDTH = A4[0] - 2 * MARGIN - 12  # inside the frame's default 6 pt paddings
INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#52606d")
RULE = colors.HexColor("#9aa5b1")
SHADE = colors.HexColor("#e4e7eb")


class DocumentFontsMissing(RuntimeError):
    """The fonts the PDFs need are not installed on this machine."""


# --------------------------------------------------------------------------- fonts


def font_dirs() -> list[Path]:
    """The directories searched for fonts: $ISP_DOCUMENT_FONT_DIRS first, then the standard ones."""
    extra = [p for p in os.environ.get(FONT_DIRS_ENV, "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in (*extra, *DEFAULT_FONT_DIRS)]


def find_font_file(filename: str, dirs: Iterable[Path] | None = None) -> Path:
    """Return the path of font `filename` in `dirs` (default: `font_dirs()`), searching each
    directory and its subdirectories; raise `DocumentFontsMissing` naming the Debian package."""
    searched = []
    for directory in font_dirs() if dirs is None else dirs:
        directory = Path(directory)
        searched.append(str(directory))
        if not directory.is_dir():
            continue
        direct = directory / filename
        if direct.is_file():
            return direct
        for found in sorted(directory.rglob(filename)):
            if found.is_file():
                return found
    raise DocumentFontsMissing(
        f"Font {filename} not found (searched {', '.join(searched)}). Install the Debian package "
        f"{FONT_PACKAGE} (apt-get install {FONT_PACKAGE}) or point {FONT_DIRS_ENV} at a directory holding it."
    )


@functools.lru_cache(maxsize=1)
def register_fonts() -> frozenset[int]:
    """Register the four document fonts with ReportLab (once per process) and return the set
    of code points the Bangla font covers. Raises if a font or HarfBuzz is missing."""
    if getattr(ttfonts, "uharfbuzz", None) is None:
        raise DocumentFontsMissing("Bangla shaping needs the Python package uharfbuzz (see requirements.txt).")
    paths = {name: find_font_file(filename) for name, filename in FONT_FILES.items()}
    for name, path in paths.items():
        pdfmetrics.registerFont(TTFont(name, str(path)))
    bangla = pdfmetrics.getFont(BANGLA)
    return frozenset(bangla.face.charToGlyph)


def _is_bangla(ch: str) -> bool:
    cp = ord(ch)
    return 0x0980 <= cp <= 0x09FF or cp in (0x0964, 0x0965, 0x200C, 0x200D, 0x25CC)


def script_runs(text: str, *, bold: bool = False) -> list[tuple[str, str]]:
    """Split `text` into (run, font name) pairs: Bangla runs in the Bangla font, everything
    else in the Latin one. Characters both fonts have (digits, punctuation, spaces) join the
    next run, or the previous one at the end, so '(মোট)' stays in one font."""
    bangla_cmap = register_fonts()
    fonts = (BANGLA_BOLD, LATIN_BOLD) if bold else (BANGLA, LATIN)
    runs: list[list[str]] = []  # [font, text]
    pending = ""
    for ch in text:
        if _is_bangla(ch):
            font = fonts[0]
        elif ord(ch) in bangla_cmap:
            pending += ch
            continue
        else:
            font = fonts[1]
        if runs and runs[-1][0] == font:
            runs[-1][1] += pending + ch
        else:
            runs.append([font, pending + ch])
        pending = ""
    if pending:
        if runs:
            runs[-1][1] += pending
        else:
            runs.append([fonts[1], pending])
    return [(t, f) for f, t in runs]


def shape(text: str, font: str, size: float) -> tuple[str, float]:
    """Shape one single-font run with HarfBuzz; return what to draw and its width in points."""
    shaped = shapeStr(text, font, size)
    if isinstance(shaped, ShapedStr):
        return shaped, sum(sd.x_advance for sd in shaped.__shapeData__) * size / 1000
    return shaped, pdfmetrics.stringWidth(text, font, size)


# --------------------------------------------------------------------------- the text flowable


@dataclass
class _Segment:
    glyphs: str
    font: str
    width: float


@dataclass
class _Line:
    text: str
    words: list[tuple[float, list[_Segment]]]  # (x offset, segments)
    width: float


class RichText(Flowable):
    """A block of mixed Bangla/Latin text, wrapped on spaces to the width it is given.

    Every word is split into script runs, each shaped in its own font, so conjuncts and
    vowel signs come out right; every line carries its logical text as /ActualText."""

    def __init__(self, text: Any, *, size: float = 9, bold: bool = False, align: str = "left",
                 color: colors.Color = INK, leading: float | None = None) -> None:
        super().__init__()
        self.text = "" if text is None else str(text)
        self.size = size
        self.bold = bold
        self.align = align
        self.color = color
        self.leading = leading or size * 1.5
        self._lines: list[_Line] = []
        self._laid_for: float | None = None

    def __repr__(self) -> str:
        return f"RichText({self.text!r})"

    def _word(self, word: str) -> tuple[float, list[_Segment]]:
        segments = []
        for run, font in script_runs(word, bold=self.bold):
            glyphs, width = shape(run, font, self.size)
            segments.append(_Segment(glyphs, font, width))
        return sum(s.width for s in segments), segments

    def _layout(self, width: float) -> None:
        space = pdfmetrics.stringWidth(" ", BANGLA if not self.bold else BANGLA_BOLD, self.size)
        lines: list[_Line] = []
        for paragraph in self.text.splitlines() or [""]:
            words: list[tuple[float, list[_Segment]]] = []
            texts: list[str] = []
            x = 0.0
            for word in paragraph.split():
                w, segments = self._word(word)
                if words and x + space + w > width:
                    lines.append(_Line(" ".join(texts), words, x))
                    words, texts, x = [], [], 0.0
                start = x + space if words else 0.0
                words.append((start, segments))
                texts.append(word)
                x = start + w
            lines.append(_Line(" ".join(texts), words, x))
        self._lines = lines
        self._laid_for = width

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:
        if self._laid_for != availWidth:
            self._layout(availWidth)
        self.width = availWidth
        self.height = self.leading * (len(self._lines) - 1) + self.size * 1.55
        return self.width, self.height

    def draw(self) -> None:
        canv = self.canv
        canv.setFillColor(self.color)
        baseline = self.height - self.size * 1.15
        for line in self._lines:
            if line.words:
                if self.align == "right":
                    left = self.width - line.width
                elif self.align == "center":
                    left = (self.width - line.width) / 2
                else:
                    left = 0.0
                canv.addLiteral(f"/Span <</ActualText <FEFF{line.text.encode('utf-16-be').hex().upper()}>>> BDC")
                tx = canv.beginText()
                for start, segments in line.words:
                    x = left + start
                    for seg in segments:
                        tx.setTextOrigin(x, baseline)
                        tx.setFont(seg.font, self.size)
                        tx.textOut(seg.glyphs)
                        x += seg.width
                canv.drawText(tx)
                canv.addLiteral("EMC")
            baseline -= self.leading


# --------------------------------------------------------------------------- formatting


def _quantize(amount: Decimal | int | str | None) -> Decimal:
    return Decimal(amount or 0).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def format_money(amount: Decimal | int | str | None, currency: str = "BDT") -> str:
    """'৳ 1,039.17' for BDT (other currencies use their code), 2 decimals, '-' before the sign."""
    value = _quantize(amount)
    symbol = CURRENCY_SYMBOLS.get(currency, currency)
    return f"{'-' if value < 0 else ''}{symbol} {abs(value):,.2f}"


def format_quantity(quantity: Decimal | int | None) -> str:
    """A quantity without trailing zeros: '1', '0.5667'."""
    value = Decimal(quantity or 0)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_period(period: date) -> str:
    """'December 2026' (English month names, whatever the server locale)."""
    return f"{MONTHS[period.month - 1]} {period.year}"


def format_date(day: date) -> str:
    """'01 Dec 2026'."""
    return f"{day.day:02d} {MONTHS[day.month - 1][:3]} {day.year}"


def _local(moment: datetime, tz: tzinfo) -> datetime:
    return timezone.localtime(moment, tz) if timezone.is_aware(moment) else moment


def _person(user) -> str:
    if user is None:
        return "—"
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return f"{full} ({user.username})" if full else user.username


# --------------------------------------------------------------------------- PDF building blocks


def _label(key: str, **kw: Any) -> RichText:
    return RichText(LABELS[key], size=kw.pop("size", 8), color=kw.pop("color", MUTED), **kw)


def _value(value: Any, **kw: Any) -> RichText:
    return RichText(value, size=kw.pop("size", 9), **kw)


def _pairs(rows: Sequence[tuple[RichText, RichText]], widths: Sequence[float]) -> Table:
    table = Table([list(r) for r in rows], colWidths=list(widths))
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
    ]))
    return table


def _header(tenant, title_key: str, number: str, width: float) -> Table:
    left = [RichText(tenant.name, size=15, bold=True)]
    for extra in (getattr(tenant, "address", ""), getattr(tenant, "phone", ""), getattr(tenant, "email", "")):
        if extra:
            left.append(RichText(extra, size=8.5, color=MUTED))
    right = [RichText(LABELS[title_key], size=14, bold=True, align="right"),
             RichText(number, size=10, align="right", color=MUTED)]
    table = Table([[left, right]], colWidths=[width * 0.55, width * 0.45])
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0),
        ("RIGHTPADDING", (0, 0), (-1, -1), 0),
        ("LINEBELOW", (0, 0), (-1, 0), 1, RULE),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
    ]))
    return table


def _grid(rows: list[list[Any]], widths: Sequence[float]) -> Table:
    table = Table(rows, colWidths=list(widths), repeatRows=1)
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BACKGROUND", (0, 0), (-1, 0), SHADE),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, RULE),
        ("LINEBELOW", (0, 1), (-1, -1), 0.3, RULE),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
    ]))
    return table


def _render(story: list[Flowable], *, title: str, author: str) -> bytes:
    register_fonts()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=14 * mm,
                            bottomMargin=18 * mm, title=title, author=author, subject=title, creator="ISP billing")

    def footer(canv, document) -> None:
        canv.saveState()
        note = RichText(f"{LABELS['footer']}   ·   {canv.getPageNumber()}", size=7, color=MUTED, align="center")
        note.wrapOn(canv, document.width, 20 * mm)
        note.drawOn(canv, document.leftMargin, 8 * mm)
        canv.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- PDFs


def invoice_pdf(invoice) -> bytes:
    """An A4 invoice: the ISP's header, number, period, issue and due dates (tenant's time zone),
    the customer, the lines, subtotal, discount, VAT, total, previous due, paid, balance due and
    status. Balance due is what the customer owes with this bill: previous due + total - paid."""
    register_fonts()
    tenant, customer = invoice.tenant, invoice.customer
    cur = tenant.currency
    width = CONTENT_WIDTH
    issued = _local(invoice.issued_at, tenant.tzinfo).date()

    meta = _pairs([
        (_label("invoice_no"), _value(invoice.number, bold=True)),
        (_label("period"), _value(format_period(invoice.period))),
        (_label("issued"), _value(format_date(issued))),
        (_label("due"), _value(format_date(invoice.due_date), bold=True)),
        (_label("status"), _value(STATUS_LABELS.get(invoice.status, invoice.status), bold=True)),
        (_label("currency"), _value(cur)),
    ], [width * 0.24, width * 0.2])
    bill_to = _pairs([
        (_label("name"), _value(customer.full_name, bold=True)),
        (_label("username"), _value(customer.username)),
        (_label("mobile"), _value(customer.mobile)),
        (_label("address"), _value(customer.address or "—")),
        (_label("zone"), _value(customer.zone.name if customer.zone_id else "—")),
    ], [width * 0.2, width * 0.34])
    top = Table([[[RichText(LABELS["bill_to"], size=10, bold=True), bill_to], meta]],
                colWidths=[width * 0.56, width * 0.44])
    top.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                             ("RIGHTPADDING", (0, 0), (-1, -1), 0)]))

    widths = [width * 0.48, width * 0.12, width * 0.2, width * 0.2]
    rows: list[list[Any]] = [[
        _label("description", bold=True, color=INK), _label("qty", bold=True, color=INK, align="right"),
        _label("unit_price", bold=True, color=INK, align="right"), _label("amount", bold=True, color=INK, align="right"),
    ]]
    for line in invoice.lines.all():
        rows.append([_value(line.description), _value(format_quantity(line.quantity), align="right"),
                     _value(format_money(line.unit_price, cur), align="right"),
                     _value(format_money(line.amount, cur), align="right")])
    lines = _grid(rows, widths)

    vat_label = f"{LABELS['vat']} {format_quantity(invoice.vat_percent)}%"
    balance_due = invoice.previous_due + invoice.total - invoice.paid
    sums = [
        (LABELS["subtotal"], invoice.subtotal, False),
        (LABELS["discount"], -invoice.discount if invoice.discount else Decimal("0"), False),
        (vat_label, invoice.vat, False),
        (LABELS["total"], invoice.total, True),
        (LABELS["previous_due"], invoice.previous_due, False),
        (LABELS["paid"], invoice.paid, False),
        (LABELS["balance_due"], balance_due, True),
    ]
    totals = Table([["", RichText(label, size=9, bold=bold, align="right"),
                     RichText(format_money(amount, cur), size=9.5 if bold else 9, bold=bold, align="right")]
                    for label, amount, bold in sums],
                   colWidths=[width * 0.4, width * 0.4, width * 0.2])
    totals.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ("LINEABOVE", (1, 3), (-1, 3), 0.8, RULE),
        ("LINEABOVE", (1, 6), (-1, 6), 0.8, RULE),
        ("BACKGROUND", (1, 6), (-1, 6), SHADE),
    ]))

    story: list[Flowable] = [_header(tenant, "invoice", invoice.number, width), Spacer(0, 5 * mm), top,
                             Spacer(0, 6 * mm), lines, Spacer(0, 3 * mm), totals]
    return _render(story, title=f"Invoice {invoice.number}", author=tenant.name)


def receipt_pdf(payment) -> bytes:
    """An A4 money receipt: number, date and time (tenant's time zone), customer, amount, method,
    reference, who collected it, and the invoices it settled (anything left is credit)."""
    register_fonts()
    tenant, customer = payment.tenant, payment.customer
    cur = tenant.currency
    width = CONTENT_WIDTH
    received = _local(payment.received_at, tenant.tzinfo)

    info = _pairs([
        (_label("receipt_no"), _value(payment.receipt_number, bold=True)),
        (_label("date"), _value(f"{format_date(received.date())}, {received:%H:%M}")),
        (_label("customer"), _value(f"{customer.full_name} ({customer.username})", bold=True)),
        (_label("mobile"), _value(customer.mobile)),
        (_label("amount_received"), _value(format_money(payment.amount, cur), size=12, bold=True)),
        (_label("method"), _value(METHOD_LABELS.get(payment.method, payment.method))),
        (_label("reference"), _value(payment.reference or "—")),
        (_label("collected_by"), _value(_person(payment.collected_by))),
    ], [width * 0.3, width * 0.7])

    allocations = list(payment.allocations.select_related("invoice").order_by("invoice__period", "invoice_id"))
    story: list[Flowable] = [_header(tenant, "receipt", payment.receipt_number, width), Spacer(0, 5 * mm), info,
                             Spacer(0, 6 * mm), RichText(LABELS["settled"], size=10, bold=True), Spacer(0, 1 * mm)]
    if allocations:
        rows: list[list[Any]] = [[
            _label("invoice_no", bold=True, color=INK), _label("period", bold=True, color=INK),
            _label("applied", bold=True, color=INK, align="right"), _label("status", bold=True, color=INK),
        ]]
        for allocation in allocations:
            inv = allocation.invoice
            rows.append([_value(inv.number), _value(format_period(inv.period)),
                         _value(format_money(allocation.amount, cur), align="right"),
                         _value(STATUS_LABELS.get(inv.status, inv.status))])
        story.append(_grid(rows, [width * 0.3, width * 0.22, width * 0.2, width * 0.28]))
        left = payment.amount - sum((a.amount for a in allocations), Decimal("0"))
        if left > 0:
            story += [Spacer(0, 2 * mm), _pairs([(RichText(LABELS["to_balance"], size=9),
                                                  _value(format_money(left, cur), align="right"))],
                                                 [width * 0.8, width * 0.2])]
    else:
        story.append(_value(LABELS["none_settled"]))
    return _render(story, title=f"Receipt {payment.receipt_number}", author=tenant.name)


# --------------------------------------------------------------------------- spreadsheets

MONEY_FORMAT = "0.00"
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="E4E7EB")


def _sheet_title(title: str) -> str:
    cleaned = "".join(" " if c in "[]:*?/\\" else c for c in str(title)).strip() or "Sheet"
    return cleaned[:31]


def _cell_value(value: Any, tz: tzinfo | None) -> tuple[Any, str | None]:
    """(value openpyxl can store, number format) for one Python value."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return value, None
    if isinstance(value, Decimal):
        return value, MONEY_FORMAT
    if isinstance(value, datetime):
        if timezone.is_aware(value):
            value = timezone.localtime(value, tz) if tz else timezone.localtime(value)
        return value.replace(tzinfo=None), DATETIME_FORMAT
    if isinstance(value, date):
        return value, DATE_FORMAT
    if isinstance(value, int | float):
        return value, None
    return str(value), None


def _display_width(value: Any) -> int:
    if isinstance(value, Decimal):
        return len(f"{value:,.2f}")
    if isinstance(value, datetime):
        return 16
    if isinstance(value, date):
        return 10
    return max((len(part) for part in str(value).splitlines()), default=0)


def _write_table(ws, headers: Sequence[str], rows: Iterable[Sequence[Any]], tz: tzinfo | None = None) -> None:
    widths = [len(str(h)) for h in headers]
    ws.append([str(h) for h in headers])
    for cell in ws[1]:
        cell.font = _HEADER_FONT
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    for r, row in enumerate(rows, start=2):
        for c, raw in enumerate(row, start=1):
            value, number_format = _cell_value(raw, tz)
            cell = ws.cell(row=r, column=c)
            cell.value = value
            if isinstance(value, str):
                cell.data_type = "s"  # '=SUM(...)' in a name stays text, never a formula
            if number_format:
                cell.number_format = number_format
            if c > len(widths):
                widths.append(0)
            if value is not None:
                widths[c - 1] = max(widths[c - 1], _display_width(raw))
    for c, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(c)].width = min(max(w + 2, 8), 60)
    ws.freeze_panes = "A2"
    if headers:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{max(ws.max_row, 1)}"


def _workbook_bytes(wb: Workbook) -> bytes:
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def table_xlsx(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """A one-sheet XLSX of `rows` under `headers` (used by the receivables exports).

    Decimals become numbers with a 0.00 format (written exactly), dates and datetimes real
    dates (aware datetimes in the current Django time zone), None an empty cell."""
    wb = Workbook()
    ws = wb.active
    ws.title = _sheet_title(title)
    wb.properties.title = str(title)
    _write_table(ws, headers, rows)
    return _workbook_bytes(wb)


INVOICE_HEADERS = ("Invoice no.", "Period", "Issued", "Due date", "Username", "Customer", "Mobile", "Zone",
                   "Subtotal", "Discount", "VAT %", "VAT", "Total", "Paid", "Outstanding", "Previous due", "Status")


def invoices_xlsx(invoices_queryset) -> bytes:
    """One row per invoice; dates in each invoice's tenant time zone."""
    qs = invoices_queryset.select_related("tenant", "customer", "customer__zone")

    def rows():
        for inv in qs.iterator(chunk_size=2000):
            customer = inv.customer
            yield (inv.number, inv.period, _local(inv.issued_at, inv.tenant.tzinfo).date(), inv.due_date,
                   customer.username, customer.full_name, customer.mobile,
                   customer.zone.name if customer.zone_id else None, inv.subtotal, inv.discount, inv.vat_percent,
                   inv.vat, inv.total, inv.paid, inv.total - inv.paid, inv.previous_due, inv.get_status_display())

    wb = Workbook()
    ws = wb.active
    ws.title = "Invoices"
    wb.properties.title = "Invoices"
    _write_table(ws, INVOICE_HEADERS, rows())
    for cell in ws["B"][1:]:
        cell.number_format = "mmm yyyy"
    return _workbook_bytes(wb)


LEDGER_HEADERS = ("Date", "Kind", "Memo", "Reference", "Debit", "Credit", "Balance after")


def ledger_statement_xlsx(wallet, entries_queryset) -> bytes:
    """A wallet statement, oldest first: date (tenant's time zone), kind, memo, reference,
    debit, credit and the balance after each entry."""
    qs = entries_queryset.select_related("transaction")
    if not qs.query.is_sliced:
        qs = qs.filter(wallet=wallet).order_by("id")
    tz = wallet.tenant.tzinfo

    def rows():
        for entry in qs.iterator(chunk_size=2000):
            txn = entry.transaction
            yield (entry.created_at, txn.kind, txn.memo, txn.reference,
                   -entry.amount if entry.amount < 0 else None, entry.amount if entry.amount > 0 else None,
                   entry.balance_after)

    wb = Workbook()
    ws = wb.active
    ws.title = "Statement"
    wb.properties.title = f"Statement of {wallet.owner_label} ({wallet.currency})"
    _write_table(ws, LEDGER_HEADERS, rows(), tz=tz)
    return _workbook_bytes(wb)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if timezone.is_aware(value):
            value = timezone.localtime(value)
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date | Decimal | int | float | bool):
        return value.isoformat() if isinstance(value, date) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def table_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """CSV in UTF-8 with a byte-order mark (so Excel shows Bangla), CRLF line ends; text that a
    spreadsheet would run as a formula is prefixed with an apostrophe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_csv_value(h) for h in headers])
    for row in rows:
        writer.writerow([_csv_value(v) for v in row])
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")
