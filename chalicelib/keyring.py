"""Master keys and the key ring that wraps and unwraps per-object data keys.

A raw master key is 32 random bytes, written as base64, and named by the lowercase hex
SHA-256 of its raw bytes: that name is the ``<key_sha256>`` path component of every object
key, as in the reference platform's archives. A KMS key is named by the SHA-256 of its ARN
(or id, as configured), so both kinds fit the same layout.

Several raw keys can be loaded at once: the first encrypts, any decrypts (rotation).
Key bytes never appear in ``repr``, logs or error messages; only key ids do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .awserrors import error_label
from .envelope import CEK_ALG_GCM, WRAP_AES_GCM, WRAP_KMS_CONTEXT, Envelope
from .errors import KeyNotFoundError, LogarchiveError, UnsupportedFormatError

KEY_BYTES = 32
KEYS_ENV = "LOGARCHIVE_KEYS"
log = logging.getLogger(__name__)
KMS_CONTEXT = {"aws:x-amz-cek-alg": CEK_ALG_GCM}


def key_id_of(raw: bytes) -> str:
    """The id of a raw master key: lowercase hex SHA-256 of its bytes."""
    return hashlib.sha256(raw).hexdigest()


def key_id_of_kms(kms_key_id: str) -> str:
    """What stands in the ``<key_sha256>`` path component for KMS-wrapped objects."""
    return hashlib.sha256(kms_key_id.encode()).hexdigest()


@dataclass(frozen=True)
class MasterKey:
    """A raw 256-bit master key. ``repr`` shows only a prefix of its id."""

    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_BYTES:
            raise LogarchiveError(
                f"a master key must be {KEY_BYTES} bytes (256 bits), got {len(self.raw)}"
            )

    @property
    def key_id(self) -> str:
        return key_id_of(self.raw)

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id[:12]}…)"

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str, *, where: str = "key") -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            # Never echo the text: it may be a real key with one typo.
            raise LogarchiveError(f"{where}: not valid base64") from None
        if len(raw) != KEY_BYTES:
            raise LogarchiveError(
                f"{where}: decodes to {len(raw)} bytes; a master key is {KEY_BYTES} bytes"
            )
        return cls(raw)

    def to_base64(self) -> str:
        return base64.b64encode(self.raw).decode()


def parse_keys(text: str, *, source: str) -> list[MasterKey]:
    """Keys from text: one base64 key a line (commas and spaces also separate); ``#`` comments."""
    keys: list[MasterKey] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0]
        for token in line.replace(",", " ").split():
            keys.append(MasterKey.from_base64(token, where=f"{source} line {lineno}"))
    return keys


# A key file holds base64 keys, one a line (45 bytes each), or one PEM key: 64 KiB is ~1,400
# master keys. Anything bigger is not a key file (``/dev/zero`` would never end).
KEY_FILE_MAX_BYTES = 64 * 1024
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def read_secret_file(path: str, *, what: str = "key file", limit: int = KEY_FILE_MAX_BYTES,
                     missing_ok: bool = False) -> bytes | None:
    """The bytes of a file of keys: a regular file only (a FIFO would block the command, a device
    never end), at most ``limit`` bytes; a warning, as ssh gives, when group or others may read it.
    ``missing_ok``: None for a file that does not exist."""
    try:  # O_NONBLOCK: opening a FIFO with no writer returns at once (and is then refused)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise LogarchiveError(f"{what} {path}: No such file or directory") from None
    except OSError as exc:
        raise LogarchiveError(f"{what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a regular file")
            raise LogarchiveError(f"{what} {path}: {kind}, not a file of keys")
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise LogarchiveError(f"{what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise LogarchiveError(f"{what} {path}: larger than {limit // 1024} KiB, not a file of keys")
    if st.st_mode & 0o044:
        who = " and ".join(w for bit, w in ((0o040, "group"), (0o004, "others")) if st.st_mode & bit)
        log.warning("%s %s is readable by %s (mode %04o): whoever reads it can decrypt the archive; "
                    "chmod 600 %s", what, path, who, stat.S_IMODE(st.st_mode), path)
    return data


def read_key_file(path: str) -> list[MasterKey]:
    data = read_secret_file(path, what="key file") or b""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # its message would quote key bytes
        raise LogarchiveError(f"key file {path}: not UTF-8 text (at byte {exc.start})") from None
    keys = parse_keys(text, source=f"key file {path}")
    if not keys:
        raise LogarchiveError(f"key file {path}: holds no key")
    return keys


def keys_from_parameter_store(name: str, *, source: str = "ssm", max_age: int = 300) -> list[MasterKey]:
    """Keys from AWS Secrets Manager (``source='secrets'``) or SSM Parameter Store, cached.

    Powertools Parameters caches the value for ``max_age`` seconds across warm invocations.
    """
    from . import aws

    if source == "secrets":
        value = aws.get_secret(name, max_age=max_age)
    else:
        value = aws.get_parameter(name, decrypt=True, max_age=max_age)
    if isinstance(value, bytes):
        value = value.decode()
    keys = parse_keys(str(value), source=f"{source} parameter {name}")
    if not keys:
        raise LogarchiveError(f"{source} parameter {name}: holds no key")
    return keys


def gather_keys(
    *,
    inline: Sequence[str] = (),
    files: Sequence[str] = (),
    env: bool = True,
) -> list[MasterKey]:
    """Keys from every source given, deduplicated, in order: inline, files, environment."""
    keys: list[MasterKey] = []
    for i, token in enumerate(inline, 1):
        keys.append(MasterKey.from_base64(token, where=f"--decryption-keys #{i}"))
    for path in files:
        keys.extend(read_key_file(path))
    if env and os.environ.get(KEYS_ENV):
        keys.extend(parse_keys(os.environ[KEYS_ENV], source=f"${KEYS_ENV}"))
    seen: set[str] = set()
    unique = []
    for k in keys:
        if k.key_id not in seen:
            seen.add(k.key_id)
            unique.append(k)
    return unique


@dataclass(frozen=True)
class WrappedKey:
    wrap_alg: str
    encrypted_key: bytes
    matdesc: str


class Keyring:
    """Wraps data keys for new objects and unwraps them for reads.

    Encrypts with ``kms_key_id`` when given, else with the first raw key. Decrypts
    ``AES/GCM`` envelopes with any raw key and ``kms+context`` envelopes through KMS.
    """

    def __init__(
        self,
        keys: Iterable[MasterKey] = (),
        *,
        kms_key_id: str | None = None,
        kms_client_factory: Callable[[], Any] | None = None,
        allow_legacy: bool = False,
    ) -> None:
        self._keys = list(keys)
        self._by_id = {k.key_id: k for k in self._keys}
        self.kms_key_id = kms_key_id
        self._kms_client_factory = kms_client_factory
        self._kms_client: Any = None
        self.allow_legacy = allow_legacy

    def __repr__(self) -> str:
        return f"Keyring(keys={[k.key_id[:12] for k in self._keys]}, kms={self.kms_key_id!r})"

    @property
    def key_ids(self) -> list[str]:
        return [k.key_id for k in self._keys]

    def has_key(self, key_id: str) -> bool:
        return key_id in self._by_id

    @property
    def can_encrypt(self) -> bool:
        return bool(self.kms_key_id or self._keys)

    @property
    def encrypting_key_id(self) -> str:
        """The ``<key_sha256>`` path component for objects this ring encrypts."""
        if self.kms_key_id:
            return key_id_of_kms(self.kms_key_id)
        if not self._keys:
            raise LogarchiveError("no encryption key configured")
        return self._keys[0].key_id

    def _kms(self) -> Any:
        if self._kms_client is None:
            if self._kms_client_factory is None:
                from . import aws

                self._kms_client = aws.client("kms")
            else:
                self._kms_client = self._kms_client_factory()
        return self._kms_client

    # -- wrap ---------------------------------------------------------------
    def wrap(self, data_key: bytes) -> tuple[WrappedKey, bytes]:
        """Wrap ``data_key`` (or, with KMS, have KMS make one). Returns (wrapped, data key)."""
        if self.kms_key_id:
            resp = self._kms().generate_data_key(
                KeyId=self.kms_key_id, KeySpec="AES_256", EncryptionContext=KMS_CONTEXT
            )
            wrapped = WrappedKey(
                WRAP_KMS_CONTEXT, resp["CiphertextBlob"], json.dumps(KMS_CONTEXT, separators=(",", ":"))
            )
            return wrapped, resp["Plaintext"]
        if not self._keys:
            raise LogarchiveError("no encryption key configured")
        master = self._keys[0]
        iv = os.urandom(12)
        sealed = AESGCM(master.raw).encrypt(iv, data_key, CEK_ALG_GCM.encode())
        return WrappedKey(WRAP_AES_GCM, iv + sealed, "{}"), data_key

    # -- unwrap -------------------------------------------------------------
    def unwrap(self, env: Envelope, *, name: str, key_id: str | None = None) -> bytes:
        """The data key of ``env``. ``key_id`` is the key id from the object's path."""
        if env.legacy:
            return self._unwrap_legacy(env, name=name, key_id=key_id)
        if env.wrap_alg == WRAP_KMS_CONTEXT:
            return self._unwrap_kms(env, name=name)
        if env.wrap_alg != WRAP_AES_GCM:
            raise UnsupportedFormatError(f"{name}: unsupported key wrap algorithm {env.wrap_alg!r}")
        blob = env.encrypted_key
        if len(blob) != 12 + KEY_BYTES + 16:
            raise KeyNotFoundError(f"{name}: wrapped data key has {len(blob)} bytes, expected 60")
        for master in self._candidates(key_id):
            try:
                key = AESGCM(master.raw).decrypt(blob[:12], blob[12:], env.cek_alg.encode())
            except InvalidTag:
                continue
            if len(key) == KEY_BYTES:
                return key
        raise KeyNotFoundError(self._missing_key_message(name, key_id))

    def _candidates(self, key_id: str | None) -> list[MasterKey]:
        if key_id and key_id in self._by_id:
            hinted = self._by_id[key_id]
            return [hinted] + [k for k in self._keys if k is not hinted]
        return list(self._keys)

    def _missing_key_message(self, name: str, key_id: str | None) -> str:
        have = ", ".join(k.key_id[:12] for k in self._keys) or "none"
        if key_id and key_id in self._by_id:
            # The path names a key we hold, yet it does not unwrap: not a missing key.
            return (
                f"{name}: the key with id {key_id} does not unwrap its data key "
                "(wrong key for this object, or a damaged x-amz-key-v2)"
            )
        if key_id:
            return f"{name}: needs the key with id {key_id}; keys given: {have}"
        return f"{name}: none of the keys given unwraps its data key; keys given: {have}"

    def _unwrap_kms(self, env: Envelope, *, name: str) -> bytes:
        try:
            context = json.loads(env.matdesc or "{}")
        except ValueError:
            raise KeyNotFoundError(f"{name}: x-amz-matdesc is not JSON") from None
        if context.get("aws:x-amz-cek-alg") != env.cek_alg:
            raise KeyNotFoundError(
                f"{name}: KMS encryption context does not name the content algorithm {env.cek_alg}"
            )
        try:
            resp = self._kms().decrypt(CiphertextBlob=env.encrypted_key, EncryptionContext=context)
        except Exception as exc:  # botocore ClientError and connection errors
            code = error_label(exc)
            raise KeyNotFoundError(f"{name}: KMS could not unwrap the data key ({code})") from None
        return resp["Plaintext"]

    def _unwrap_legacy(self, env: Envelope, *, name: str, key_id: str | None) -> bytes:
        """v1 envelopes: data key wrapped with AES/ECB/PKCS5Padding (unauthenticated)."""
        if not self.allow_legacy:
            raise UnsupportedFormatError(
                f"{name}: legacy AES/CBC object (x-amz-key, no authentication tag); "
                "re-run with --allow-legacy-cbc to read it anyway"
            )
        for master in self._candidates(key_id):
            dec = Cipher(algorithms.AES(master.raw), modes.ECB()).decryptor()
            padded = dec.update(env.encrypted_key) + dec.finalize()
            pad = padded[-1] if padded else 0
            if 1 <= pad <= 16 and padded.endswith(bytes([pad]) * pad):
                key = padded[:-pad]
                if len(key) == KEY_BYTES:
                    return key
        raise KeyNotFoundError(self._missing_key_message(name, key_id))
