"""Signed checkpoints: the chain head (seq, row_hash) signed with an Ed25519 key.

A checkpoint proves the chain up to its seq existed as it is now when it was signed, so a
log rewritten from some row onwards (every later hash recomputed) no longer matches a
checkpoint and cannot be re-signed without the private key. The verifier holds only public
keys; a checkpoint by a key it does not trust counts as no checkpoint.

Without a configured key (`AUDIT_CHECKPOINT_KEY_FILE`) the store generates a **DEV-ONLY**
key beside the database (`<db folder>/keys/audit-checkpoint-dev.pem`, public half in
`.pub`). In production the private key belongs to the sidecar's secret store and the public
key to the auditors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger("lcr.audit")

DOMAIN = "lcr-audit-checkpoint/v1"
DEV_KEY_NAME = "audit-checkpoint-dev.pem"


class CheckpointKeyError(Exception):
    """A checkpoint key could not be loaded."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def message(seq: int, row_hash: str, time: str, kid: str) -> bytes:
    """What is signed: the chain head, when, and by which key, under a fixed domain tag."""
    body = {"domain": DOMAIN, "seq": seq, "row_hash": row_hash, "time": time, "key_id": kid}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    kid: str
    path: Path | None = None

    @classmethod
    def from_key(cls, private: Ed25519PrivateKey, path: Path | None = None) -> Signer:
        return cls(private, key_id(private.public_key()), path)

    def sign(self, seq: int, row_hash: str, time: str) -> str:
        return base64.b64encode(self.private.sign(message(seq, row_hash, time, self.kid))).decode()

    def checkpoint(self, seq: int, row_hash: str, time: str) -> dict[str, Any]:
        """The checkpoint row signing chain head (seq, row_hash) at `time` (UTC ISO 8601):
        {seq, row_hash, signature, key_id, time}, as both stores insert it."""
        return {
            "seq": seq,
            "row_hash": row_hash,
            "signature": self.sign(seq, row_hash, time),
            "key_id": self.kid,
            "time": time,
        }

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()


def dev_key_path(db_path: str | os.PathLike[str]) -> Path:
    return Path(db_path).resolve().parent / "keys" / DEV_KEY_NAME


def load_signer(key_file: str | os.PathLike[str] | None, db_path: str | os.PathLike[str]) -> Signer:
    """The configured key, or the DEV-ONLY key beside the database (generated on first use)."""
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise CheckpointKeyError(
                f"checkpoint key {path} does not exist; set AUDIT_CHECKPOINT_KEY_FILE to an Ed25519 PEM private key"
            )
        return Signer.from_key(_load_private(path), path)
    path = dev_key_path(db_path)
    if not path.exists():
        _generate(path)
    return Signer.from_key(_load_private(path), path)


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CheckpointKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointKeyError(f"{path} is not an Ed25519 key")
    return key


def _generate(path: Path) -> None:
    """Write a new key atomically; when several processes race, the first one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # fails if another process got there first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    pub = (
        _load_private(path)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pub_path = path.with_suffix(".pub")
    pub_tmp = pub_path.with_name(f".{pub_path.name}.{os.getpid()}.tmp")
    pub_tmp.write_bytes(pub)
    pub_tmp.replace(pub_path)
    log.warning("generated a DEV-ONLY audit checkpoint key at %s; set AUDIT_CHECKPOINT_KEY_FILE in production", path)


def load_public_keys(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Ed25519PublicKey]:
    """Trusted verification keys by key id, from PEM files (public or private keys)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for p in paths:
        data = Path(p).read_bytes()
        public: object
        try:
            public = serialization.load_pem_public_key(data)
        except ValueError:
            try:
                public = serialization.load_pem_private_key(data, password=None).public_key()
            except (ValueError, TypeError) as exc:
                raise CheckpointKeyError(f"{p} is neither a PEM public nor private key: {exc}") from None
        if not isinstance(public, Ed25519PublicKey):
            raise CheckpointKeyError(f"{p} is not an Ed25519 key")
        keys[key_id(public)] = public
    return keys


def signature_valid(public: Ed25519PublicKey, seq: int, row_hash: str, time: str, kid: str, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), message(seq, row_hash, time, kid))
    except (InvalidSignature, ValueError):
        return False
    return True
