"""Local-only tooling: the embedded AWS, the local stack, ``make demo``, a fake Docker root.

Imported by ``logarchive local``, the tests and the benchmarks; never by a Lambda or the shipper."""
