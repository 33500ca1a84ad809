"""Recharge cards: batches of serial + PIN cards, sold to card distributors, redeemed by customers.

Lifecycle (per card; the batch row carries the state of its cards as a whole)::

    unissued --issue_batch--> issued --sell_batch_to_distributor--> sold --redeem_card--> used
    unissued, issued, sold --validity passes (expire_batch)--> expired
    unissued, issued, sold --void_card / void_batch--> void

Every other transition is refused (``CardRefused`` with a reason code): redeeming an
unsold, used, expired or void card, selling or issuing a batch twice, voiding a used card.
A card past its validity is refused at redemption even before the expiry task has run.

Money (it moves only through ``billing.services.post_transaction``):

* A tenant system wallet ``card_float`` (unbounded, opened with
  ``open_wallet(tenant=..., system_code="card_float")``) holds the liability for cards that
  are sold but not yet redeemed: it is credited when cards are sold and debited when they
  are redeemed, expire or are voided, so its balance always equals the face value of the
  sold cards still outstanding.
* Selling a batch of total face value F to a distributor with commission c: the
  distributor pays F - c to the issuer (the node that generated the batch; for the ISP
  root, the tenant's ``revenue`` system wallet) and the issuer puts F into ``card_float``.
  Net legs: ``{distributor: -(F - c), issuer: -c, card_float: +F}`` with key
  ``card:sell:<batch id>``.
* Redeeming a value card of face V: ``{card_float: -V, customer wallet: +V}`` with key
  ``card:redeem:<card id>``. A package card's face value is the package's customer price
  at the issuer (fixed at generation); it is credited the same way and the package is then
  bought from the customer wallet through ``billing.sales.purchase_package(..., payer=
  "customer", idempotency_key="card:activate:<card id>")``, which pays the commissions
  along the customer's chain, in the same transaction; if that sale is refused the whole
  redemption is refused and the card stays sold.
* When sold cards expire or are voided, their liability returns to the issuer who funded
  it: ``{card_float: -n*V, issuer: +n*V}`` (keys ``card:expire:<batch id>``,
  ``card:void:<card id>``, ``card:void-batch:<batch id>``).

PINs: 16 digits from ``secrets`` (at least 12), stored only as HMAC-SHA256 keyed with a key
derived from ``settings.SECRET_KEY`` (see ``pins.py``), unique per tenant, looked up by
hash. **Rotating SECRET_KEY makes every PIN not yet redeemed unredeemable**: void and
regenerate open batches, or keep the old key. The clear PINs exist only in the batch's
one-time download (a Fernet token from ``core.crypto.encrypt`` in ``CardBatchDownload``,
deleted by the first download, which returns a ZIP of a PDF card sheet, a CSV and an XLSX).

Exactly-once redemption: a conditional ``UPDATE ... SET status='used' WHERE id=%s AND
status='sold'`` (the row lock makes concurrent attempts wait and then match 0 rows) in the
same transaction as the ledger posting with key ``card:redeem:<card id>``; a database
check ties ``status='used'`` to ``used_by``/``used_at``. Wrong PINs are counted in Redis
(django cache) per customer and per source address: 5 within 15 minutes refuse further
attempts (``CardRateLimited``, HTTP 429). Each attempt is counted before the lookup and
given back unless its PIN was wrong, so a burst of simultaneous guesses cannot get more
than 5 PINs checked.
"""
