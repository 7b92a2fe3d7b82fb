"""``logarchive digest adopt``: give a chain already in the bucket its state in the table.

For a stage upgraded from the release that kept the chain head in the archive bucket, or whose
idempotency table was re-created: the sealer refuses to start a second chain over digests it
has no state for (docs/AUDIT.md, section 5). Adopting verifies the stack's whole chain first —
every digest signed by a given public key, sequence 1 to N with no gap, each naming its
predecessor — and only then writes ``digest-chain#<stack>`` for the newest digest, conditionally
(never over an existing state).
"""

from __future__ import annotations

from typing import Any

from ..archiver.digest_table import ChainState, DigestTable
from ..awserrors import is_conditional_check_failed
from ..errors import LogarchiveError
from . import model
from .checks import Options, verify_chain

CHAIN_FINDINGS = (model.DIGEST_MISSING, model.DIGEST_EDITED, model.BROKEN_CHAIN, model.BAD_SIGNATURE)


def adopt(s3: Any, *, bucket: str, stack: str, public_keys: list[Any], table: DigestTable,
          workers: int = 16) -> ChainState:
    held = table.state()
    if held is not None:
        raise LogarchiveError(f"table {table.table} already holds the chain of {stack}: sequence "
                              f"{held.sequence}, {held.key}")
    opts = Options(bucket=bucket, stack=stack, public_keys=public_keys, workers=workers)
    verified, res = verify_chain(opts, s3)
    broken = [f for f in res.findings if f.kind in CHAIN_FINDINGS]
    if broken:
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        raise LogarchiveError(f"not adopted: {broken[0].line()}{more}")
    if not verified:
        raise LogarchiveError(f"not adopted: no digest of stack {stack} in s3://{bucket}")
    newest = verified[-1]
    state = ChainState(newest.digest.sequence, newest.key, newest.sha256)
    try:
        table.commit(None, state)
    except Exception as exc:
        if is_conditional_check_failed(exc):
            raise LogarchiveError(f"table {table.table}: another run wrote the chain state of {stack} "
                                  "meanwhile") from None
        raise
    return state
