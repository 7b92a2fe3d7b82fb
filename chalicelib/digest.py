"""Signed, chained digests: the format (docs/AUDIT.md), and build, parse, sign and verify.

A digest lists the archive objects that finished since the previous digest of the same stack,
and the "explained" events of that time (segments quarantined, abandoned by the shipper, sources
cut back), so an audit can tell a loss from a known cause. Its body is canonical JSON (sorted
keys, compact separators, UTF-8, no trailing newline): the same document always has the same
bytes, so its SHA-256 is well defined. The signature is not in the body (a body cannot hash
itself); it travels in the object's metadata (``logarchive-digest-signature``, hex) and in the
*next* digest (``previous_digest_signature``), as CloudTrail's digests do.

What is signed is a short signing string, as CloudTrail signs its digests::

    <digest_end_time>\\n<digest key>\\n<hex SHA-256 of the body>\\n<previous signature hex or "null">

The key is that in the archive bucket, without the bucket's name, so a byte-identical copy in
the customer's bucket verifies too. Two algorithms:

* ``Ed25519``: pure Ed25519 over the signing string (a local key file, or the private key from
  Secrets Manager/SSM).
* ``ECDSA_SHA_256``: ECDSA P-256 over SHA-256 of the signing string, DER signature: what AWS KMS
  returns for ``Sign(MessageType=RAW, SigningAlgorithm=ECDSA_SHA_256)`` of an ECC_NIST_P256 key,
  so no private key leaves KMS. (KMS ``DIGEST`` mode is not used: the local AWS hashes twice.)

``signing_key_id`` is the hex SHA-256 of the public key's DER SubjectPublicKeyInfo, for both
algorithms, so an auditor matches a digest to a public key file without any service.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .dockerlog import format_utc
from .errors import LogarchiveError

FORMAT_VERSION = 2  # what build() writes
READ_VERSIONS = (1, 2)  # what parse() accepts
ED25519 = "Ed25519"
ECDSA_SHA_256 = "ECDSA_SHA_256"
ALGORITHMS = (ED25519, ECDSA_SHA_256)
# Reserved prefix of the archive bucket: no stack name can start with "_" (layout.STACK_RE).
RESERVED_PREFIX = "_logarchive/"
DIGESTS_PREFIX = RESERVED_PREFIX + "digests/"
SIGNATURE_META = "logarchive-digest-signature"
ALGORITHM_META = "logarchive-digest-signature-algorithm"
SIGNING_KEY_META = "logarchive-digest-signing-key-id"
# Kinds of explained events: a gap the audit must not call a loss.
EVENT_QUARANTINED = "quarantined"  # a staged segment moved aside with a reason (archiver)
EVENT_ABANDONED = "abandoned"  # a planned segment whose bytes Docker deleted first (shipper)
EVENT_CUT_BACK = "cut-back"  # a source whose bytes were cut back before staging (shipper)
EVENT_TYPES = (EVENT_QUARANTINED, EVENT_ABANDONED, EVENT_CUT_BACK)
SOURCE_DOCKER = "docker"  # a Docker json-file log
SOURCE_CRI = "cri"  # a Kubernetes (CRI) log under /var/log/pods
SOURCE_FORMATS = (SOURCE_DOCKER, SOURCE_CRI)
K8S_FIELDS = ("namespace", "pod_name", "pod_uid", "container_name", "restart_count", "container_id")
# The envelope fields a reader needs to decrypt (docs/FORMAT.md, "The envelope in the digest").
# ``x-amz-key`` is the legacy (v1) wrapped key: absent from every object the archiver writes.
ENVELOPE_DIGEST_FIELDS = (
    "x-amz-cek-alg", "x-amz-iv", "x-amz-key", "x-amz-key-v2", "x-amz-matdesc", "x-amz-tag-len",
    "x-amz-unencrypted-content-length", "x-amz-wrap-alg",
)
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DIGEST_NAME = re.compile(r"^(?P<seq>\d{10})-(?P<end>\d{8}T\d{6}Z)\.json$")


class DigestError(LogarchiveError):
    """A digest cannot be parsed, or its signature does not verify."""


def fmt_time(t: datetime) -> str:
    """RFC 3339 UTC with microseconds (as the archive metadata writes times)."""
    return format_utc(t)


def parse_time(text: str) -> datetime:
    if not _TIME_RE.match(text):
        raise ValueError(f"time {text[:40]!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, ``,``/``:`` separators, UTF-8 (non-ASCII kept as is), no trailing newline."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# -- where digests live -----------------------------------------------------------------------

def stack_digests_prefix(stack: str) -> str:
    return f"{DIGESTS_PREFIX}{stack}/"


def day_prefix(stack: str, day: datetime) -> str:
    """``_logarchive/digests/<stack>/YYYY/MM/DD/``: the digests that end on ``day`` (UTC)."""
    return f"{stack_digests_prefix(stack)}{day.astimezone(UTC):%Y/%m/%d}/"


def digest_key(stack: str, sequence: int, end: datetime) -> str:
    """``_logarchive/digests/<stack>/YYYY/MM/DD/<sequence:010d>-<YYYYMMDDTHHMMSSZ>.json``.

    Dated by the digest's end time; the sequence number (1, 2, 3… per stack, no gaps) first in
    the name, so a day's listing is in chain order."""
    return f"{day_prefix(stack, end)}{sequence:010d}-{end.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"


def parse_digest_key(key: str) -> tuple[str, int, datetime] | None:
    """(stack, sequence, end time to the second) of a digest key, or None."""
    if not key.startswith(DIGESTS_PREFIX):
        return None
    parts = key[len(DIGESTS_PREFIX):].split("/")
    if len(parts) != 5:
        return None
    m = _DIGEST_NAME.match(parts[4])
    if not m:
        return None
    end = datetime.strptime(m["end"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if f"{end:%Y/%m/%d}" != "/".join(parts[1:4]):
        return None
    return parts[0], int(m["seq"]), end


# -- the document -----------------------------------------------------------------------------

class _Versioned:
    """An archive entry or explained event: ``V2_FIELDS`` are written from format version 2."""

    V2_FIELDS: ClassVar[tuple[str, ...]] = ()
    DEFAULTS: ClassVar[Mapping[str, Any]] = {}  # of a version-1 field absent from a record

    def to_dict(self, version: int = FORMAT_VERSION) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)  # type: ignore[arg-type]
                if version >= 2 or f.name not in self.V2_FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], version: int = 1) -> Any:
        """``version`` 2 requires the version-2 fields; 1 (or a record) leaves them default."""
        missing = [n for n in cls.V2_FIELDS if n not in d]
        if version >= 2 and missing:
            raise KeyError(f"{cls.__name__} lacks {', '.join(missing)}")
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        kwargs = {n: d.get(n, cls.DEFAULTS.get(n)) for n in names if n not in cls.V2_FIELDS}
        kwargs.update({n: d[n] for n in cls.V2_FIELDS if n in d})
        return cls(**kwargs)


@dataclass(frozen=True)
class ArchiveEntry(_Versioned):
    """One archive object as the archiver kept it. Times: RFC 3339 UTC with microseconds."""

    key: str  # object key in the archive bucket (and in every copy)
    stored_sha256: str  # hex SHA-256 of the stored object's bytes, as S3 kept them
    stored_size: int  # the stored object's bytes
    s3_checksum_sha256: str | None  # S3's ChecksumSHA256 (base64; "-N" for a multipart upload)
    s3_part_size: int | None  # the part size of that upload (None: a single PUT)
    raw_sha256: str  # hex SHA-256 of the raw log bytes
    raw_bytes: int
    lines: int
    key_id: str  # the master key's id (encryption)
    container_id: str  # the staged key's container component (Docker id, or <pod_uid>_<name>_<restart>)
    host: str
    source: str  # the staged key
    segment: int | None
    byte_start: int | None  # [start, end) in the container's log file, from the staged metadata
    byte_end: int | None
    first_time: str
    last_time: str
    # version 2
    envelope_sha256: str | None = None  # hex SHA-256 of the canonical envelope (None: version 1)
    source_format: str = SOURCE_DOCKER  # "docker" or "cri"
    k8s: Mapping[str, Any] | None = None  # a CRI container's identity (K8S_FIELDS); None for Docker

    V2_FIELDS: ClassVar[tuple[str, ...]] = ("envelope_sha256", "source_format", "k8s")


@dataclass(frozen=True)
class ExplainedEvent(_Versioned):
    """A known cause of a gap: the audit shows it as explained, not as a failure."""

    type: str  # one of EVENT_TYPES
    container_id: str
    host: str
    source: str  # the staged key (quarantined) or the host's file (abandoned, cut back)
    segment: int | None
    byte_start: int | None
    byte_end: int | None
    reason: str
    at: str  # when it was recorded, RFC 3339 UTC with microseconds
    location: str = ""  # where the bytes are now (the quarantine key), if anywhere
    # version 2
    source_format: str = SOURCE_DOCKER
    k8s: Mapping[str, Any] | None = None

    V2_FIELDS: ClassVar[tuple[str, ...]] = ("source_format", "k8s")
    DEFAULTS: ClassVar[Mapping[str, Any]] = {"location": ""}


@dataclass(frozen=True)
class HostHeartbeat:
    """The latest heartbeat a shipper host wrote since the previous digest (version 2)."""

    host: str
    time: str  # the pass time, RFC 3339 UTC with microseconds
    shipper_version: str
    containers_seen: int
    bytes_shipped: int
    bytes_waiting: int
    oldest_waiting_age_seconds: float | None
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HostHeartbeat:
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class HostRetirement:
    """A host retired by an operator (``hosts retire``), sealed into this digest (version 2)."""

    host: str
    at: str  # RFC 3339 UTC with microseconds
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HostRetirement:
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})


def _check_v2_identity(source_format: Any, k8s: Any, what: str) -> None:
    if source_format not in SOURCE_FORMATS:
        raise ValueError(f"{what}: source_format {source_format!r} is not one of {', '.join(SOURCE_FORMATS)}")
    if source_format == SOURCE_DOCKER and k8s is not None:
        raise ValueError(f"{what}: a docker source has no k8s identity")
    if source_format == SOURCE_CRI:
        if not isinstance(k8s, Mapping) or sorted(k8s) != sorted(K8S_FIELDS):
            raise ValueError(f"{what}: a cri source needs k8s with {', '.join(K8S_FIELDS)}")
        if not isinstance(k8s["restart_count"], int):
            raise ValueError(f"{what}: k8s restart_count is not an integer")


@dataclass(frozen=True)
class Digest:
    """One digest document (the body, without its signature)."""

    stack: str
    sequence: int  # 1 for a stack's first digest, then +1 each
    start_time: str  # the previous digest's end time (or the first archive's finish)
    end_time: str  # when it was sealed; the signing string's time
    previous_digest_key: str | None
    previous_digest_sha256: str | None  # hex SHA-256 of the previous body
    previous_digest_signature: str | None  # hex; binds the chain
    signature_algorithm: str
    signing_key_id: str
    archives: tuple[ArchiveEntry, ...] = ()
    events: tuple[ExplainedEvent, ...] = ()
    version: int = FORMAT_VERSION
    hosts: tuple[HostHeartbeat, ...] = ()  # version 2
    retired_hosts: tuple[HostRetirement, ...] = ()  # version 2

    @property
    def key(self) -> str:
        return digest_key(self.stack, self.sequence, parse_time(self.end_time))

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "version": self.version,
            "stack": self.stack,
            "sequence": self.sequence,
            "digest_start_time": self.start_time,
            "digest_end_time": self.end_time,
            "previous_digest_key": self.previous_digest_key,
            "previous_digest_sha256": self.previous_digest_sha256,
            "previous_digest_signature": self.previous_digest_signature,
            "signature_algorithm": self.signature_algorithm,
            "signing_key_id": self.signing_key_id,
            "archives": [a.to_dict(self.version) for a in self.archives],
            "events": [e.to_dict(self.version) for e in self.events],
        }
        if self.version >= 2:
            doc["hosts"] = [h.to_dict() for h in self.hosts]
            doc["retired_hosts"] = [r.to_dict() for r in self.retired_hosts]
        return doc

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


def build(
    *,
    stack: str,
    end: datetime,
    signing_key_id: str,
    signature_algorithm: str,
    archives: Iterable[ArchiveEntry],
    events: Iterable[ExplainedEvent] = (),
    previous: SignedDigest | None = None,
    start: datetime | None = None,
    hosts: Iterable[HostHeartbeat] = (),
    retired_hosts: Iterable[HostRetirement] = (),
) -> Digest:
    """The next digest after ``previous`` (None: the stack's first), in format version 2.
    Archives sorted by key, events by (container, segment, source), hosts and retirements by
    host, so the same content gives the same bytes."""
    if signature_algorithm not in ALGORITHMS:
        raise DigestError(f"unknown signature algorithm {signature_algorithm!r}")
    if previous is not None and previous.digest.stack != stack:
        raise DigestError(f"previous digest {previous.key} is of stack {previous.digest.stack!r}")
    start_text = previous.digest.end_time if previous is not None else fmt_time(start or end)
    return Digest(
        stack=stack,
        sequence=previous.digest.sequence + 1 if previous is not None else 1,
        start_time=start_text,
        end_time=fmt_time(end),
        previous_digest_key=previous.key if previous is not None else None,
        previous_digest_sha256=previous.sha256 if previous is not None else None,
        previous_digest_signature=previous.signature.hex() if previous is not None else None,
        signature_algorithm=signature_algorithm,
        signing_key_id=signing_key_id,
        archives=tuple(sorted(archives, key=lambda a: a.key)),
        events=tuple(sorted(events, key=lambda e: (e.container_id, e.segment or 0, e.source, e.type))),
        hosts=tuple(sorted(hosts, key=lambda h: h.host)),
        retired_hosts=tuple(sorted(retired_hosts, key=lambda r: r.host)),
    )


def parse(body: bytes, *, name: str = "digest") -> Digest:
    """The document of a digest body; one-line ``DigestError`` naming ``name`` otherwise.

    The body must be exactly canonical (re-serialising gives the same bytes): an edit that keeps
    the JSON valid but changes spacing or order is an edit too."""
    try:
        d = json.loads(body.decode("utf-8"))
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        version = d.get("version")
        if version not in READ_VERSIONS or isinstance(version, bool):
            raise ValueError(f"version {version!r} is not one of {', '.join(map(str, READ_VERSIONS))}")
        digest = Digest(
            stack=str(d["stack"]),
            sequence=int(d["sequence"]),
            start_time=d["digest_start_time"],
            end_time=d["digest_end_time"],
            previous_digest_key=d["previous_digest_key"],
            previous_digest_sha256=d["previous_digest_sha256"],
            previous_digest_signature=d["previous_digest_signature"],
            signature_algorithm=d["signature_algorithm"],
            signing_key_id=d["signing_key_id"],
            archives=tuple(ArchiveEntry.from_dict(a, version) for a in d["archives"]),
            events=tuple(ExplainedEvent.from_dict(e, version) for e in d["events"]),
            version=version,
            hosts=tuple(HostHeartbeat.from_dict(h) for h in d["hosts"]) if version >= 2 else (),
            retired_hosts=(tuple(HostRetirement.from_dict(r) for r in d["retired_hosts"])
                           if version >= 2 else ()),
        )
        parse_time(digest.start_time)
        parse_time(digest.end_time)
        if version >= 2:
            for i, a in enumerate(digest.archives):
                _check_v2_identity(a.source_format, a.k8s, f"archive {i}")
                if a.envelope_sha256 is not None and not is_sha256_hex(a.envelope_sha256):
                    raise ValueError(f"archive {i}: envelope_sha256 is not hex SHA-256")
            for i, e in enumerate(digest.events):
                _check_v2_identity(e.source_format, e.k8s, f"event {i}")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise DigestError(f"{name}: not a digest ({type(exc).__name__}: {str(exc)[:120]})") from None
    if digest.to_bytes() != body:
        raise DigestError(f"{name}: body is not in canonical form (edited?)")
    return digest


# -- signing ----------------------------------------------------------------------------------

def signing_string(*, end_time: str, key: str, body_sha256: str, previous_signature: str | None) -> bytes:
    """What is signed: ``end\\nkey\\nsha256\\nprevious`` (``null`` for the first digest), UTF-8."""
    return "\n".join((end_time, key, body_sha256, previous_signature or "null")).encode("utf-8")


def public_key_id(public_key: Any) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_public_key(pem_or_der: bytes, *, name: str = "public key") -> Any:
    try:
        if pem_or_der.lstrip().startswith(b"-----"):
            key = serialization.load_pem_public_key(pem_or_der)
        else:
            key = serialization.load_der_public_key(pem_or_der)
    except ValueError:
        raise DigestError(f"{name}: not a PEM or DER public key") from None
    if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        raise DigestError(f"{name}: neither Ed25519 nor an EC key")
    return key


def algorithm_of(public_key: Any) -> str:
    return ED25519 if isinstance(public_key, ed25519.Ed25519PublicKey) else ECDSA_SHA_256


class Signer:
    """Signs signing strings. ``Ed25519Signer`` here; ``KmsSigner`` for an AWS KMS key."""

    algorithm: str
    key_id: str
    public_key: Any  # what verifies its signatures

    def sign(self, message: bytes) -> bytes:
        raise NotImplementedError


class Ed25519Signer(Signer):
    algorithm = ED25519

    def __init__(self, private_key: ed25519.Ed25519PrivateKey):
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = public_key_id(self.public_key)

    def __repr__(self) -> str:
        return f"Ed25519Signer({self.key_id[:16]}…)"  # never the key

    @classmethod
    def from_pem(cls, pem: bytes, *, name: str = "signing key") -> Ed25519Signer:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise DigestError(f"{name}: not an unencrypted PEM private key") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise DigestError(f"{name}: not an Ed25519 private key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str) -> Ed25519Signer:
        from .keyring import read_secret_file  # a regular file, size capped, warned if others read it

        try:
            pem = read_secret_file(path, what="signing key file") or b""
        except LogarchiveError as exc:
            raise DigestError(str(exc)) from None
        return cls.from_pem(pem, name=f"signing key file {path}")

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class KmsSigner(Signer):
    """An AWS KMS asymmetric key (ECC_NIST_P256): ``Sign`` with ``MessageType=RAW``; KMS hashes
    with SHA-256 once. RAW messages are capped at 4 KiB by KMS: the signing string is ~250 bytes."""

    algorithm = ECDSA_SHA_256

    def __init__(self, kms: Any, key_id: str):
        self.kms = kms
        self.kms_key_id = key_id
        der = kms.get_public_key(KeyId=key_id)["PublicKey"]
        self.public_key = load_public_key(der, name=f"KMS key {key_id}")
        self.key_id = public_key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        resp = self.kms.sign(KeyId=self.kms_key_id, Message=message, MessageType="RAW",
                             SigningAlgorithm=ECDSA_SHA_256)
        return resp["Signature"]


@dataclass(frozen=True)
class SignedDigest:
    """A digest's body and signature: what is stored (body as the object, signature in metadata)."""

    body: bytes
    signature: bytes
    digest: Digest = field(compare=False)

    @property
    def key(self) -> str:
        return self.digest.key

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def signing_string(self) -> bytes:
        return signing_string(end_time=self.digest.end_time, key=self.key, body_sha256=self.sha256,
                              previous_signature=self.digest.previous_digest_signature)

    def metadata(self) -> dict[str, str]:
        """The S3 user metadata of the digest object."""
        return {
            SIGNATURE_META: self.signature.hex(),
            ALGORITHM_META: self.digest.signature_algorithm,
            SIGNING_KEY_META: self.digest.signing_key_id,
        }


def sign(digest: Digest, signer: Signer) -> SignedDigest:
    if (digest.signature_algorithm, digest.signing_key_id) != (signer.algorithm, signer.key_id):
        raise DigestError(f"digest {digest.key} names key {digest.signing_key_id[:16]}… "
                          f"({digest.signature_algorithm}), not the signer's")
    body = digest.to_bytes()
    unsigned = SignedDigest(body=body, signature=b"", digest=digest)
    return SignedDigest(body=body, signature=signer.sign(unsigned.signing_string), digest=digest)


def from_object(body: bytes, metadata: Mapping[str, str], *, name: str) -> SignedDigest:
    """A stored digest object (body + S3 metadata) → ``SignedDigest``; not yet verified."""
    digest = parse(body, name=name)
    text = {k.lower().removeprefix("x-amz-meta-"): v for k, v in metadata.items()}.get(SIGNATURE_META, "")
    try:
        signature = bytes.fromhex(text)
    except ValueError:
        signature = b""
    if not signature:
        raise DigestError(f"{name}: no {SIGNATURE_META} metadata")
    return SignedDigest(body=body, signature=signature, digest=digest)


def verify(signed: SignedDigest, public_keys: Sequence[Any], *, name: str | None = None) -> Any:
    """Checks the signature with the public key whose id the digest names; returns that key.

    Raises ``DigestError`` (one line naming the digest): no key with that id, wrong algorithm,
    or a bad signature."""
    name = name or signed.key
    d = signed.digest
    by_id = {public_key_id(k): k for k in public_keys}
    key = by_id.get(d.signing_key_id)
    if key is None:
        raise DigestError(f"{name}: signed by key {d.signing_key_id[:16]}…, "
                          "which no public key given matches")
    if algorithm_of(key) != d.signature_algorithm:
        raise DigestError(f"{name}: names {d.signature_algorithm}, but key {d.signing_key_id[:16]}… is "
                          f"{algorithm_of(key)}")
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signed.signature, signed.signing_string)
        else:
            key.verify(signed.signature, signed.signing_string, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise DigestError(f"{name}: bad signature") from None
    return key


def follows(signed: SignedDigest, previous: SignedDigest) -> str | None:
    """Why ``signed`` is not the direct successor of ``previous`` in the chain (None: it is)."""
    d, p = signed.digest, previous.digest
    if d.stack != p.stack:
        return f"stack {d.stack!r} follows stack {p.stack!r}"
    if d.sequence != p.sequence + 1:
        return f"sequence {d.sequence} follows {p.sequence}"
    if d.previous_digest_key != previous.key:
        return f"names previous digest {d.previous_digest_key}, not {previous.key}"
    if d.previous_digest_sha256 != previous.sha256:
        return f"previous digest {previous.key} has changed (SHA-256 differs)"
    if d.previous_digest_signature != previous.signature.hex():
        return f"previous digest {previous.key}'s signature differs"
    if d.start_time != p.end_time:
        return f"starts {d.start_time}, previous ended {p.end_time}"
    return None


def same_s3_checksum(a: str | None, b: str | None) -> bool:
    """S3 writes a composite (multipart) checksum as ``<base64>-<parts>``; the local AWS leaves
    out the suffix. The base64 value decides."""
    return bool(a) and bool(b) and (a or "").split("-")[0] == (b or "").split("-")[0]


def is_sha256_hex(text: str | None) -> bool:
    return bool(text) and bool(_HEX64.match(text or ""))


# -- the envelope in the digest (version 2) --------------------------------------------------

def envelope_canonical(fields: Mapping[str, str]) -> bytes:
    """The canonical envelope form: for each of ``ENVELOPE_DIGEST_FIELDS`` present (names
    lowercased, ``x-amz-meta-`` dropped), in that (byte) order, ``<name>:<value>\\n``, UTF-8.
    Values are taken byte for byte as stored (``x-amz-matdesc`` is not re-serialised); an absent
    field stays absent. A value holding a line break cannot be written in this form."""
    lowered = {k.lower().removeprefix("x-amz-meta-"): v for k, v in fields.items()}
    out = []
    for name in ENVELOPE_DIGEST_FIELDS:
        if name in lowered:
            value = str(lowered[name])
            if "\n" in value or "\r" in value:
                raise DigestError(f"envelope field {name} holds a line break")
            out.append(f"{name}:{value}\n")
    return "".join(out).encode("utf-8")


def envelope_sha256(fields: Mapping[str, str]) -> str:
    """Hex SHA-256 of ``envelope_canonical(fields)``: an archive entry's ``envelope_sha256``."""
    return hashlib.sha256(envelope_canonical(fields)).hexdigest()
