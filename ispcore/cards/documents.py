"""The generation output of a card batch: a printable PDF card sheet, a CSV and an XLSX,
bundled in one ZIP. Built only from the one-time download (services.download_batch); the
clear PINs never touch the disk here.

Bangla: ReportLab shapes Bengali (conjuncts, vowel-sign reordering) only with `uharfbuzz`
installed and `shaping=1` on the paragraph style. The Bengali fonts on Debian have no Latin
letters, so mixed text is split into runs, Bengali runs in the Bengali font and the rest in
a Latin font. The fonts are found at run time (``find_fonts``); a missing one is a clear
``CardFontMissing`` naming the package to install or the setting to point at a file.
"""
from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

from django.conf import settings
from django.utils import timezone

BENGALI_FONT_NAMES = ("NotoSansBengali-Regular.ttf", "NotoSerifBengali-Regular.ttf", "Lohit-Bengali.ttf",
                      "NotoSansBengaliUI-Regular.ttf")
LATIN_FONT_NAMES = ("NotoSans-Regular.ttf", "DejaVuSans.ttf", "LiberationSans-Regular.ttf")
LATIN_BOLD_FONT_NAMES = ("NotoSans-Bold.ttf", "DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf")
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"))

BN, LATIN, LATIN_BOLD = "CardBengali", "CardLatin", "CardLatinBold"
CARD_LABEL = "রিচার্জ কার্ড"  # "recharge card", printed on every card


class CardFontMissing(RuntimeError):
    """A font the card sheet needs is not installed."""


@dataclass(frozen=True)
class Fonts:
    bengali: str
    latin: str
    latin_bold: str


def _find(names: tuple[str, ...], setting: str) -> str | None:
    explicit = getattr(settings, setting, None) or os.environ.get(setting)
    if explicit:
        if not Path(explicit).is_file():
            raise CardFontMissing(f"{setting}={explicit!r} is not a font file")
        return explicit
    for base in FONT_DIRS:
        root = Path(base)
        if not root.is_dir():
            continue
        for name in names:
            for hit in root.rglob(name):
                return str(hit)
    return None


@lru_cache(maxsize=1)
def find_fonts() -> Fonts:
    """Locate the Bengali and Latin fonts; raise CardFontMissing with the fix if one is absent."""
    bengali = _find(BENGALI_FONT_NAMES, "CARDS_BENGALI_FONT")
    if bengali is None:
        raise CardFontMissing(
            "No Bangla font found for the card sheet: install the Debian package 'fonts-noto-core' "
            "(NotoSansBengali-Regular.ttf) or set CARDS_BENGALI_FONT to a .ttf file with Bengali glyphs."
        )
    latin = _find(LATIN_FONT_NAMES, "CARDS_LATIN_FONT")
    if latin is None:
        raise CardFontMissing(
            "No Latin font found for the card sheet: install 'fonts-noto-core' or 'fonts-dejavu-core', "
            "or set CARDS_LATIN_FONT to a .ttf file."
        )
    bold = _find(LATIN_BOLD_FONT_NAMES, "CARDS_LATIN_BOLD_FONT") or latin
    return Fonts(bengali=bengali, latin=latin, latin_bold=bold)


@lru_cache(maxsize=1)
def _register_fonts() -> Fonts:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    fonts = find_fonts()
    pdfmetrics.registerFont(TTFont(BN, fonts.bengali))
    pdfmetrics.registerFont(TTFont(LATIN, fonts.latin))
    pdfmetrics.registerFont(TTFont(LATIN_BOLD, fonts.latin_bold))
    return fonts


def _is_bengali(ch: str) -> bool:
    # The Bengali block, plus the joiners and dandas used inside Bengali words.
    return "\u0980" <= ch <= "\u09ff" or ch in "\u200c\u200d\u0964\u0965"


def mixed_markup(text: str, latin_font: str = LATIN) -> str:
    """Paragraph markup putting Bengali runs in the Bengali font and the rest in `latin_font`."""
    out: list[str] = []
    run, run_bn = "", None
    for ch in text:
        bn = _is_bengali(ch) or (ch == " " and run_bn is True)
        if run and bn != run_bn:
            out.append(f'<font face="{BN if run_bn else latin_font}">{escape(run)}</font>')
            run = ""
        run += ch
        run_bn = bn
    if run:
        out.append(f'<font face="{BN if run_bn else latin_font}">{escape(run)}</font>')
    return "".join(out)


def _money_text(batch) -> str:
    return f"৳ {batch.face_value:,}"


def _valid_text(batch) -> str:
    local = timezone.localtime(batch.valid_until, batch.tenant.tzinfo)
    return local.strftime("%d %b %Y")


def build_pdf(batch, rows: list[tuple[str, str]]) -> bytes:
    """A4 sheets of 3 x 8 cards with the ISP's name (Bangla shaped), the value or package,
    the serial, the PIN in groups of four and the end of validity; cut marks are the card
    borders. The per-batch texts are laid out once and drawn on every card."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfgen import canvas as pdfcanvas
    from reportlab.platypus import Paragraph

    from .pins import format_pin

    _register_fonts()
    buf = io.BytesIO()
    page_w, page_h = A4
    cols, rows_per_page, margin = 3, 8, 18
    card_w = (page_w - 2 * margin) / cols
    card_h = (page_h - 2 * margin) / rows_per_page
    pad = 7
    inner_w = card_w - 2 * pad

    title_style = ParagraphStyle("card-title", fontName=LATIN_BOLD, fontSize=10, leading=13, shaping=1)
    body_style = ParagraphStyle("card-body", fontName=LATIN, fontSize=8, leading=11, shaping=1)
    what = batch.package.name if batch.kind == "package" else "Recharge"
    title = Paragraph(mixed_markup(batch.tenant.name, LATIN_BOLD), title_style)
    label = Paragraph(mixed_markup(f"{CARD_LABEL} · {what} · {_money_text(batch)}"), body_style)
    _, title_h = title.wrap(inner_w, card_h)
    _, label_h = label.wrap(inner_w, card_h)
    valid = f"Valid until {_valid_text(batch)}"

    c = pdfcanvas.Canvas(buf, pagesize=A4, pageCompression=1)
    c.setTitle(f"Recharge cards, batch {batch.pk}")
    c.setAuthor(batch.tenant.name)
    # Everything but the serial and PIN is the same on every card: draw it once as a form
    # XObject and place it per card (a 100,000-card sheet builds in seconds, not minutes).
    c.beginForm("card", lowerx=0, lowery=0, upperx=card_w, uppery=card_h)
    c.setLineWidth(0.4)
    c.setDash(2, 2)
    c.rect(0, 0, card_w, card_h)
    c.setDash()
    y = card_h - pad - title_h
    title.drawOn(c, pad, y)
    y -= label_h
    label.drawOn(c, pad, y)
    c.setFont(LATIN, 7)
    c.drawString(pad, y - 40, valid)
    c.endForm()
    pin_y, serial_y = y - 17, y - 30
    per_page = cols * rows_per_page
    for i, (serial, pin) in enumerate(rows):
        slot = i % per_page
        if i and slot == 0:
            c.showPage()
        col, row = slot % cols, slot // cols
        x = margin + col * card_w
        y0 = page_h - margin - (row + 1) * card_h
        c.saveState()
        c.translate(x, y0)
        c.doForm("card")
        c.restoreState()
        c.setFont(LATIN_BOLD, 12.5)
        c.drawString(x + pad, y0 + pin_y, format_pin(pin))
        c.setFont(LATIN, 7)
        c.drawString(x + pad, y0 + serial_y, f"Serial {serial}")
    c.save()
    return buf.getvalue()


def _row_values(batch, serial: str, pin: str) -> list:
    package = batch.package.name if batch.kind == "package" else ""
    return [serial, pin, str(batch.face_value), package, timezone.localtime(batch.valid_until, batch.tenant.tzinfo)
            .isoformat()]


HEADER = ["serial", "pin", "value", "package", "valid_until"]


def build_csv(batch, rows: list[tuple[str, str]]) -> bytes:
    """UTF-8 CSV (with BOM, so spreadsheet programs read the package names right)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for serial, pin in rows:
        writer.writerow(_row_values(batch, serial, pin))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def build_xlsx(batch, rows: list[tuple[str, str]]) -> bytes:
    """One sheet; serials and PINs are text cells so leading zeros survive."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(f"Batch {batch.pk}")
    ws.append(HEADER)
    for serial, pin in rows:
        ws.append(_row_values(batch, serial, pin))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def build_zip(batch, rows: list[tuple[str, str]]) -> bytes:
    """cards-<id>.pdf, cards-<id>.csv and cards-<id>.xlsx in one ZIP."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"cards-{batch.pk}.pdf", build_pdf(batch, rows))
        zf.writestr(f"cards-{batch.pk}.csv", build_csv(batch, rows))
        zf.writestr(f"cards-{batch.pk}.xlsx", build_xlsx(batch, rows))
    return buf.getvalue()
