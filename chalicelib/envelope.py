"""The S3 Encryption Client v2 envelope: object metadata or an instruction file.

Field names and values are the ones every AWS SDK's S3 Encryption Client v2 writes, so any
of them can read our objects and we can read theirs. See docs/FORMAT.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import EnvelopeError, UnsupportedFormatError

CEK_ALG_GCM = "AES/GCM/NoPadding"
CEK_ALG_CBC = "AES/CBC/PKCS5Padding"
WRAP_AES_GCM = "AES/GCM"
WRAP_KMS_CONTEXT = "kms+context"
TAG_LEN_BITS = 128
TAG_BYTES = TAG_LEN_BITS // 8
IV_BYTES = 12

KEY_V2 = "x-amz-key-v2"
KEY_V1 = "x-amz-key"
IV = "x-amz-iv"
CEK_ALG = "x-amz-cek-alg"
WRAP_ALG = "x-amz-wrap-alg"
MATDESC = "x-amz-matdesc"
TAG_LEN = "x-amz-tag-len"
UNENCRYPTED_LENGTH = "x-amz-unencrypted-content-length"
INSTRUCTION_FILE_MARKER = "x-amz-crypto-instr-file"
INSTRUCTION_SUFFIX = ".instruction"
ENVELOPE_FIELDS = (KEY_V2, KEY_V1, IV, CEK_ALG, WRAP_ALG, MATDESC, TAG_LEN, UNENCRYPTED_LENGTH)


def _b64(value: str, field: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{name}: {field} is not valid base64") from None


@dataclass(frozen=True)
class Envelope:
    """One object's encryption parameters. ``encrypted_key`` is the *wrapped* data key."""

    wrap_alg: str
    encrypted_key: bytes
    iv: bytes
    cek_alg: str = CEK_ALG_GCM
    tag_len_bits: int = TAG_LEN_BITS
    matdesc: str = "{}"
    unencrypted_length: int | None = None
    legacy: bool = False

    def to_fields(self) -> dict[str, str]:
        """The envelope as S3EC v2 writes it (metadata keys without ``x-amz-meta-``)."""
        fields = {
            KEY_V1 if self.legacy else KEY_V2: base64.b64encode(self.encrypted_key).decode(),
            IV: base64.b64encode(self.iv).decode(),
            MATDESC: self.matdesc,
        }
        if not self.legacy:
            fields[CEK_ALG] = self.cek_alg
            fields[WRAP_ALG] = self.wrap_alg
            fields[TAG_LEN] = str(self.tag_len_bits)
        if self.unencrypted_length is not None:
            fields[UNENCRYPTED_LENGTH] = str(self.unencrypted_length)
        return fields

    def to_instruction(self) -> str:
        """JSON of the same fields: the instruction file the SDKs read.

        Without ``x-amz-unencrypted-content-length``: that is object metadata, not part of
        the S3EC instruction-file schema, and AWS's clients reject instruction files that
        hold it (amazon-s3-encryption-client-python 4.0: "invalid keys"). Readers get the
        length as the body's length less the tag.
        """
        fields = self.to_fields()
        fields.pop(UNENCRYPTED_LENGTH, None)
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str], *, name: str) -> Envelope:
        """Parse and validate; ``name`` (the object or file) prefixes every error."""
        fields = {k.lower(): v for k, v in fields.items()}
        if KEY_V2 in fields:
            legacy = False
            wrapped = _b64(fields[KEY_V2], KEY_V2, name)
        elif KEY_V1 in fields:
            legacy = True
            wrapped = _b64(fields[KEY_V1], KEY_V1, name)
        else:
            raise EnvelopeError(f"{name}: no encryption envelope ({KEY_V2} missing)")
        if IV not in fields:
            raise EnvelopeError(f"{name}: envelope lacks {IV}")
        iv = _b64(fields[IV], IV, name)
        cek_alg = fields.get(CEK_ALG, CEK_ALG_CBC if legacy else "")
        if not cek_alg:
            raise EnvelopeError(f"{name}: envelope lacks {CEK_ALG}")
        if legacy:
            if cek_alg != CEK_ALG_CBC or len(iv) != 16:
                raise EnvelopeError(f"{name}: malformed legacy envelope")
            wrap_alg = fields.get(WRAP_ALG, "AES")
            tag_bits = 0
        else:
            if cek_alg != CEK_ALG_GCM:
                raise UnsupportedFormatError(f"{name}: unsupported content algorithm {cek_alg!r}")
            if len(iv) != IV_BYTES:
                raise EnvelopeError(f"{name}: {IV} must be {IV_BYTES} bytes, is {len(iv)}")
            wrap_alg = fields.get(WRAP_ALG, "")
            if not wrap_alg:
                raise EnvelopeError(f"{name}: envelope lacks {WRAP_ALG}")
            try:
                tag_bits = int(fields.get(TAG_LEN, str(TAG_LEN_BITS)))
            except ValueError:
                raise EnvelopeError(f"{name}: {TAG_LEN} is not a number") from None
            if tag_bits != TAG_LEN_BITS:
                raise UnsupportedFormatError(f"{name}: tag length {tag_bits} bits; only 128 is read")
        length = fields.get(UNENCRYPTED_LENGTH)
        try:
            unencrypted = int(length) if length not in (None, "") else None
        except ValueError:
            raise EnvelopeError(f"{name}: {UNENCRYPTED_LENGTH} is not a number") from None
        return cls(
            wrap_alg=wrap_alg,
            encrypted_key=wrapped,
            iv=iv,
            cek_alg=cek_alg,
            tag_len_bits=tag_bits,
            matdesc=fields.get(MATDESC, "{}"),
            unencrypted_length=unencrypted,
            legacy=legacy,
        )

    @classmethod
    def from_instruction(cls, text: str | bytes, *, name: str) -> Envelope:
        return cls.from_fields(instruction_fields(text, name=name), name=name)


def instruction_fields(text: str | bytes, *, name: str) -> dict[str, str]:
    """The fields of an instruction file (names lowercased), before validation: readers
    merge a field of the object's metadata into them."""
    try:
        data = json.loads(text)
    except ValueError:
        raise EnvelopeError(f"{name}: instruction file is not JSON") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise EnvelopeError(f"{name}: instruction file is not a JSON object of strings")
    return {k.lower(): v for k, v in data.items()}


def reader_fields(metadata: Mapping[str, str], instruction: str | bytes | None = None, *,
                  name: str) -> dict[str, str]:
    """The envelope fields a reader uses (names lowercased): the object's metadata, or the
    instruction file's fields (``instruction``: its text) when the envelope is kept there, with
    ``x-amz-unencrypted-content-length`` from the metadata when the file lacks it (the SDKs keep
    it in the object's metadata)."""
    lowered = {k.lower(): v for k, v in metadata.items()}
    if instruction is None:
        return lowered
    fields = instruction_fields(instruction, name=name)
    if UNENCRYPTED_LENGTH not in fields and UNENCRYPTED_LENGTH in lowered:
        fields[UNENCRYPTED_LENGTH] = lowered[UNENCRYPTED_LENGTH]
    return fields


def in_metadata(metadata: Mapping[str, str]) -> bool:
    """Is the envelope in the object's own metadata (else: in ``<key>.instruction``)?"""
    return has_envelope(metadata) and not uses_instruction_file(metadata)


def has_envelope(metadata: Mapping[str, str]) -> bool:
    keys = {k.lower() for k in metadata}
    return KEY_V2 in keys or KEY_V1 in keys


def uses_instruction_file(metadata: Mapping[str, str]) -> bool:
    return INSTRUCTION_FILE_MARKER in {k.lower() for k in metadata}
