"""The RADIUS dictionary shipped with the project, and 64-bit counter helpers.

The dictionary files live in ``radius/dictionaries/`` (FreeRADIUS format,
read by pyrad): RFC 2865, 2866, 2869, 3162, 4818, 5176 and 6911 attributes,
Microsoft (vendor 311) and MikroTik (vendor 14988) vendor attributes.

pyrad 2.6 specifics worth knowing when using the dictionary:

* ``string`` attributes decode to :class:`str` when the octets are valid
  UTF-8 and to :class:`bytes` otherwise (e.g. a User-Name in another
  encoding); callers must accept both.
* Attributes with ``VALUE`` names decode to the name (``'Start'``,
  ``'Session-Context-Not-Found'``); unnamed values decode to :class:`int`.
* ``User-Password`` is declared ``octets`` and decodes to the still hidden
  bytes; decrypt them with :func:`radius.crypto.pap_decrypt`.
* ``ipv6prefix`` values are ``'address/length'`` strings; pyrad always
  encodes the full 16 prefix octets (attribute length 20), which RFC 3162
  allows, and decodes shortened prefixes too.
* RADIUS counters are 32 bits; byte counts above 4 GiB are split into a
  low word and a "gigawords" high word (Acct-Input-Octets +
  Acct-Input-Gigawords, Mikrotik-Recv-Limit + Mikrotik-Recv-Limit-Gigawords):
  use :func:`counter64` and :func:`split_counter64`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pyrad.dictionary import Dictionary

__all__ = [
    "DICTIONARY_DIR",
    "DICTIONARY_FILE",
    "counter64",
    "load_dictionary",
    "split_counter64",
]

#: Folder holding the shipped dictionary files.
DICTIONARY_DIR: Path = Path(__file__).resolve().parent / "dictionaries"
#: Entry point that ``$INCLUDE``s the other files.
DICTIONARY_FILE: Path = DICTIONARY_DIR / "dictionary"

_WORD = 1 << 32


@functools.cache
def load_dictionary() -> Dictionary:
    """Return the project's RADIUS dictionary, parsed once per process.

    The same :class:`pyrad.dictionary.Dictionary` object is returned on every
    call; treat it as read-only (it is shared by every packet).
    """
    return Dictionary(str(DICTIONARY_FILE))


def counter64(low: int | None, gigawords: int | None) -> int:
    """Combine a 32-bit counter and its gigawords attribute into one integer.

    ``counter64(pkt['Acct-Input-Octets'][0], pkt['Acct-Input-Gigawords'][0])``
    gives the bytes received from the user. A missing attribute counts as 0.

    :raises ValueError: if a part is negative or does not fit in 32 bits.
    """
    low = low or 0
    gigawords = gigawords or 0
    if not 0 <= low < _WORD or not 0 <= gigawords < _WORD:
        raise ValueError("counter parts must be unsigned 32-bit integers")
    return gigawords * _WORD + low


def split_counter64(value: int) -> tuple[int, int]:
    """Split a byte count into ``(low 32 bits, gigawords)``.

    For example a 10 GiB quota becomes ``Mikrotik-Total-Limit`` = low and
    ``Mikrotik-Total-Limit-Gigawords`` = gigawords.

    :raises ValueError: if the value is negative or needs more than 64 bits.
    """
    if not 0 <= value < _WORD * _WORD:
        raise ValueError("value must be an unsigned 64-bit integer")
    return value % _WORD, value // _WORD
