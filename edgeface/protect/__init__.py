"""Protection at rest on the field unit: one device key, sub-keys derived from it, sealed records and files,
and the crypto-erase of everything personal (``edgeface unit wipe``).

from edgeface.protect.keys import sealer_for
box_sealer = sealer_for(config, "outbox")           # None when protect.encrypt is off
blob = box_sealer.seal(b"...", aad=b"row id")       # AES-256-GCM, a fresh nonce per record
from edgeface.protect.wipe import wipe_unit
report = wipe_unit(config)                          # key first, then the data; report.ok is honest

See docs/protection.md ("What a lost unit gives away") for what it protects against and what not.
"""
