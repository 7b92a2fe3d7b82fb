"""``logarchive audit``: prove from the bucket and the public signing keys alone that the archive
of a stack is whole and unchanged (docs/AUDIT.md says what is proven and what is not).

``model`` (findings and the result), ``bucket`` (the S3 reads: one listing, digests, HEADs),
``shipstate`` (a host shipper's SQLite state, read-only), ``checks`` (the audit itself),
``report`` (the self-contained HTML report). Lambdas never import this package.
"""
