"""The one-time download: a ZIP with a PDF card sheet (Bangla shaped, rendered and read back
with poppler), a CSV and an XLSX holding the PINs that redeem; a second download is refused."""
from __future__ import annotations

import csv
import io
import shutil
import subprocess
import zipfile
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from PIL import Image

from ispcore.accounts import services as accounts
from ispcore.cards import services as cards
from ispcore.cards.documents import mixed_markup
from ispcore.cards.models import CardBatchDownload, RechargeCard
from ispcore.core.models import AuditEvent

BANGLA_NAME = "আমার নেট ISP"

needs_poppler = pytest.mark.skipif(not shutil.which("pdftoppm") or not shutil.which("pdftotext"),
                                   reason="poppler-utils (pdftoppm, pdftotext) not installed")


@pytest.fixture
def batch(world):
    accounts.update_tenant(world["tenant:A"], actor=world["u:super"], name=BANGLA_NAME)
    return cards.generate_batch(actor=world["u:r1"], issuer=world["node:r1"], count=30, face_value=Decimal("100"),
                                validity_days=90)


def test_mixed_markup_puts_bangla_runs_in_the_bengali_font():
    markup = mixed_markup("আমার নেট ISP & Co")
    assert markup == '<font face="CardBengali">আমার নেট </font><font face="CardLatin">ISP &amp; Co</font>'


def test_download_once(world, batch):
    files = cards.download_batch(batch, actor=world["u:r1"])
    assert files.filename == f"cards-batch-{batch.pk}.zip"
    zf = zipfile.ZipFile(io.BytesIO(files.content))
    assert sorted(zf.namelist()) == sorted([f"cards-{batch.pk}.pdf", f"cards-{batch.pk}.csv", f"cards-{batch.pk}.xlsx"])
    rows = list(csv.reader(io.StringIO(zf.read(f"cards-{batch.pk}.csv").decode("utf-8-sig"))))
    assert rows[0] == ["serial", "pin", "value", "package", "valid_until"]
    assert len(rows) == 31 and all(len(r[1]) == 16 for r in rows[1:])
    sheet = load_workbook(io.BytesIO(zf.read(f"cards-{batch.pk}.xlsx")), read_only=True).active
    xrows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert [r[:2] for r in xrows[1:]] == [r[:2] for r in rows[1:]]  # text cells: leading zeros kept

    assert not CardBatchDownload.objects.filter(batch=batch).exists()
    batch.refresh_from_db()
    assert batch.downloaded_at is not None and batch.downloaded_by_id == world["u:r1"].pk
    with pytest.raises(cards.CardRefused) as e:
        cards.download_batch(batch, actor=world["u:r1"])
    assert e.value.reason == "downloaded"
    assert AuditEvent.objects.filter(action="card_batch.download", object_id=str(batch.pk)).count() == 1

    # the PINs in the file are the ones that redeem
    cards.sell_batch_to_distributor(batch, actor=world["u:r1"], distributor=world["node:d1"])
    serial, pin = rows[5][0], rows[5][1]
    cards.redeem_card(customer=world["cust:r1"], pin=pin, actor=None)
    assert RechargeCard.objects.get(serial=serial).status == "used"


def test_download_is_refused_to_another_branch_and_changes_nothing(world, batch):
    with pytest.raises(cards.CardRefused) as e:
        cards.download_batch(batch, actor=world["u:r2"])
    assert e.value.reason == "forbidden"
    assert CardBatchDownload.objects.filter(batch=batch).exists()


@needs_poppler
def test_pdf_card_sheet_renders_bangla(world, batch, tmp_path):
    files = cards.download_batch(batch, actor=world["u:r1"])
    pdf = zipfile.ZipFile(io.BytesIO(files.content)).read(f"cards-{batch.pk}.pdf")
    path = tmp_path / "cards.pdf"
    path.write_bytes(pdf)

    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True,
                          text=True).stdout
    assert "আমার" in text and "ISP" in text and "Serial" in text
    assert text.count("Valid until") == 30 and text.count("\f") >= 2  # 24 cards a page: two pages
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True).stdout
    assert "Bengali" in fonts

    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
                   check=True)
    image = Image.open(next(tmp_path.glob("page*.png"))).convert("L")
    dark = sum(image.histogram()[:128])
    assert dark / (image.width * image.height) > 0.01  # not a blank page
