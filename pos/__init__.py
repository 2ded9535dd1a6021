"""The external POS, as a stand-in for the local stack: it settles the accepted in-store
orders of ``pos-orders`` and drops a batch per store system into S3 under ``pos/landing/``
every 15 minutes, with the faults the contract warns about (``pos.outbox``)."""
