"""``logarchive status``: one screen that says whether the archive is healthy.

- ``overview`` reads the buckets (the archive bucket or the customer's copy; the staging bucket
  with ``--staging``) and judges: healthy, degraded or failing, with every reason.
"""
