"""The offline download library of ``logarchive logs-from-archive``: bucket + keys, no service needed."""
