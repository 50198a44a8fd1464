"""Key material of the local GitHub: libsodium boxes for secrets, RSA keys for JWTs.

Secrets are encrypted the GitHub way (a libsodium sealed box to a Curve25519 public key), so
the fake holds the real private key and can read back what a client wrote.
"""

import base64
import itertools
import json
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

# GitHub's key ids are long decimal strings, e.g. "568250167242549743".
_key_ids = itertools.count(568250167242549743)


class SealedBoxKey:
    """One secrets public key, as served by .../secrets/public-key."""

    def __init__(self) -> None:
        self.key_id = str(next(_key_ids))
        self._private = PrivateKey.generate()

    @property
    def public_b64(self) -> str:
        return base64.b64encode(bytes(self._private.public_key)).decode()

    def decrypt(self, encrypted_b64: str) -> str | None:
        """The plaintext of a sealed box, or None when it was not sealed to this key."""
        try:
            return SealedBox(self._private).decrypt(base64.b64decode(encrypted_b64)).decode()
        except (CryptoError, ValueError):
            return None


def new_rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(pem: str) -> str:
    """The public half of a PEM key, whether the PEM holds the private or the public key."""
    data = pem.encode()
    if b"PRIVATE KEY" in data:
        public = serialization.load_pem_private_key(data, password=None).public_key()
    else:
        public = serialization.load_pem_public_key(data)
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def new_app_private_key_pem() -> str:
    """A fresh GitHub App private key, as GitHub would let you download it."""
    return private_key_pem(new_rsa_private_key())


def random_token(prefix: str) -> str:
    """A token in GitHub's format: a type prefix (gho_, ghs_, ghp_) and 36 characters."""
    return prefix + secrets.token_urlsafe(27)[:36].replace("-", "a").replace("_", "b")


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def stateless_installation_token(*, app_id: int, installation_id: int, expires_at) -> str:
    """An installation token in the format GitHub mints since April 2026: ghs_<APPID>_<JWT>,
    about 520 characters (base64url, with `-`, `_` and two dots), not the old 40. Only its
    shape is GitHub's: the fake knows its tokens by value, so the signature is random."""
    header = _base64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _base64url(
        json.dumps(
            {
                "iss": app_id,
                "installation_id": installation_id,
                "exp": int(expires_at.timestamp()),
                "jti": secrets.token_hex(16),
            }
        ).encode()
    )
    signature = _base64url(secrets.token_bytes(256))  # an RS256 signature's length
    return f"ghs_{app_id}_{header}.{payload}.{signature}"
