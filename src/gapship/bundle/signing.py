"""Who built a bundle: an RSA-3072 key pair, and a signature of the bundle's header and payload.

The signature is PKCS#1 v1.5 over SHA-256, so that the installer checks it with the `openssl`
of RHEL 7-era targets (1.0.2): ``openssl dgst -sha256 -verify KEY.pub -signature SIG``.
Keys are PEM: the private key PKCS#8, the public key SubjectPublicKeyInfo ("PUBLIC KEY").
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from gapship.errors import BundleError

KEY_BITS = 3072
SIGNATURE_BYTES = KEY_BITS // 8
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


def generate_key_pair(stem: Path) -> tuple[Path, Path]:
    """Write STEM.key (private, mode 0600) and STEM.pub; refuse to overwrite either."""
    private, public = stem.with_name(stem.name + PRIVATE_SUFFIX), \
        stem.with_name(stem.name + PUBLIC_SUFFIX)
    for path in (private, public):
        if path.exists():
            raise BundleError(f"{path} already exists; it is left as it is.",
                              "Choose another name, or move the old key pair away first.")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    stem.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA-3072 private key in ``path`` (PEM, unencrypted), or a BundleError saying why not."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise BundleError(f"cannot read the signing key {path}: {exc.strerror}.",
                          "Make one with `gapship keygen NAME`.") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BundleError(f"{path} is not an unencrypted PEM private key ({exc}).",
                          "Give the NAME.key that `gapship keygen NAME` wrote.") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != KEY_BITS:
        raise BundleError(f"{path} is not an RSA-{KEY_BITS} key, which the installer expects.",
                          "Make one with `gapship keygen NAME`.")
    return key


def sign_sha256(key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    """The signature of data whose SHA-256 is ``digest`` (SIGNATURE_BYTES long)."""
    return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
