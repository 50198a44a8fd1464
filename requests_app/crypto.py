"""Secret values at rest: the Fernet keys live in core.crypto, where the GitHub integration
(which must not import requests_app) encrypts its shared installation tokens with them too."""

from core.crypto import decrypt_value, encrypt_value

__all__ = ["decrypt_value", "encrypt_value"]
