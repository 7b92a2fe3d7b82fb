"""The host shipper: stage every closed Docker container log in S3, each byte exactly once.

Modules, one job each:

- ``config``      options from the command line, ``LOGARCHIVE_SHIP_*`` and a TOML file
- ``scan``        read Docker's data root from files (no daemon): containers and log files
- ``identity``    recognise a log file by its content (head bytes), whatever its name
- ``eligibility`` decide which byte range of a file is closed and may ship now
- ``state``       SQLite (WAL) record of planned and shipped segments, bound to host and stack
- ``history``     what S3 holds of the host's past: the start check, ``--rebuild-state``
- ``segment``     read a segment's bytes twice (metadata, then upload) from one open file
- ``upload``      conditional, checksummed, multipart-capable upload to the staging bucket
- ``loop``        one pass over the data root, and the daemon loop
- ``cli``         the command-line front (description, arguments, run) of both commands
- ``report``      the summary of a pass: shipped, waiting, skipped, problems
- ``__main__``    ``logarchive-ship``: the command alone, with only the shipper's imports

The operator's guide is docs/SHIPPER.md.
"""
