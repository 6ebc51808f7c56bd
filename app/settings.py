"""Where Clinidoc keeps its data and how it serves, read from CLINIDOC_* environment variables."""

import os
import secrets
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLINIDOC_")

    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("clinidoc")))
    db_path: Path = Field(default_factory=lambda values: values["data_dir"] / "clinidoc.sqlite3")
    model: str | None = None  # a GGUF file or HF directory; None is the bundled SmolLM2-135M-Instruct
    device: str = "cpu"  # or "cuda"
    # How the projections are stored. none: the checkpoint's precision, with lossless prompt-lookup drafting (2-4x
    # faster answers that quote the record). bf16: half the bytes a CPU reads per token (arithmetic stays fp32), no
    # drafting. fp8: a quarter of the bytes, for fitting large models; slower on a CPU. int8 / int4: a quarter /
    # an eighth of the bytes through CPU weight-only kernels, the fastest CPU decoding, drafting kept (int4 suits
    # GGUF Q4 checkpoints such as the bundled one; see docs/benchmarks.md for their logit error).
    # auto: int4 for a GGUF Q4 checkpoint (the bundled one) on a CPU, else none.
    quantize: Literal["auto", "none", "bf16", "fp8", "int8", "int4"] = "auto"
    context: int | None = None  # a context window beyond the model's own is reached with YaRN
    # KV of earlier requests kept so follow-ups skip re-reading the record; unset, a share of the memory the model
    # leaves free (engine/memory.py).
    prefix_cache_mb: int | None = Field(None, ge=0)
    # What drafts tokens for lossless speculative decoding: prompt-lookup copies from the record (no extra model),
    # mtp runs the checkpoint's own MTP layer, eagle3 runs draft_model (an EAGLE3 head trained for the model, as
    # SpecForge/SGLang publish them, e.g. AQ-MedAI/Ling-Flash-2.0-eagle3), model runs draft_model (a small model
    # with the same tokenizer).
    drafter: Literal["prompt-lookup", "mtp", "eagle3", "model", "none"] = "prompt-lookup"
    draft_model: str | None = None
    # Answers generated together, one batched step for all: clinicians on one machine do not wait for each other.
    max_batch: int = Field(4, ge=1)
    # fp8 holds the KV cache in about half the memory (a long record on a small GPU), at some cost in accuracy.
    kv_cache: Literal["full", "fp8"] = "full"
    # Where answers are generated. local: the embedded engine, on this machine. remote: a vLLM or SGLang server
    # that already serves a model, for more clinicians or larger models than one machine holds; the record then
    # travels to that server, so it belongs on the same protected network (or behind TLS, with https://).
    backend: Literal["local", "remote"] = "local"
    remote_url: str | None = None  # the server's OpenAI-compatible API, such as http://gpu-node:8000/v1
    remote_model: str | None = None  # the served model's id; None takes the first the server lists
    # For a server started with --api-key; sent as a Bearer token. Secret, so printed settings do not show it.
    remote_api_key: SecretStr | None = None
    # A local copy of the served model's tokenizer (its directory, or the GGUF file a llama.cpp server loaded), to
    # count what the server cannot: a chat's tokens, on SGLang and llama-cpp-python, whose tokenizers take text only.
    remote_tokenizer: str | None = None
    # A long record's prefill on a busy server can take minutes; this bounds each wait, not the whole answer.
    remote_timeout_s: float = Field(300, gt=0)
    # While nothing comes from the model for this long, the chat says how long it has been waiting, and says it
    # again each time this passes.
    waiting_notice_s: float = Field(5, gt=0)
    host: str = "127.0.0.1"  # loopback unless an operator deliberately exposes it behind TLS
    port: int = 7860
    max_new_tokens: int = Field(384, ge=1)
    # The model's part of a structured summary (its lists from free text, the narrative); long enough for the
    # draft's item limits in most records, and a draft cut short keeps every item it finished.
    summary_tokens: int = Field(1024, ge=1)
    max_upload_mb: int = Field(50, ge=1)
    # The largest record a session takes, counted before it is stored: a record far past any context window is
    # answered only through retrieval, and holding it costs memory on every follow-up.
    max_record_tokens: int = Field(1_000_000, ge=1)
    # Uploads read at once, each on a core of its own; others wait their turn, answers and other requests do not.
    concurrent_reads: int = Field(1, ge=1)
    # The command line's user: sessions `clinidoc ask` stores belong to this account, which has no password.
    user: str = "local"

    # --- Security --------------------------------------------------------------------------------------------
    # With a key the database is SQLCipher-encrypted. The key comes from the environment or, better, from a file
    # that only the service's user can read.
    db_key: SecretStr | None = None
    db_key_file: Path | None = None
    idle_logoff_minutes: float = Field(15, gt=0)  # a signed-in browser left idle this long is signed out
    signin_attempts: int = Field(5, ge=1)  # failed sign-ins in a row that lock an account ...
    lockout_minutes: float = Field(15, gt=0)  # ... for this long
    # Directory sign-in: the server (ldap://host:389 or ldaps://host:636) and the DN a user binds as.
    ldap_url: str | None = None
    ldap_user_dn: str = "uid={name},ou=people,dc=example,dc=org"
    ldap_start_tls: bool = False
    # Serving beyond this machine needs TLS: a certificate and its key, or the word that a TLS proxy is in front.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    behind_tls_proxy: bool = False
    retention_days: int | None = Field(None, ge=1)  # sessions untouched this long are deleted, at start and daily

    @property
    def uploads_dir(self) -> Path:
        """Gradio's cache of uploads and downloads: patient files, so under the data dir, never the system temp."""
        return self.data_dir / "uploads"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    def database_key(self) -> str | None:
        """The database key, from CLINIDOC_DB_KEY or from a key file that no other user can read."""
        if self.db_key is not None:
            return self.db_key.get_secret_value()
        if self.db_key_file is None:
            return None
        _check_private(self.db_key_file)
        key = self.db_key_file.read_text(encoding="utf-8").strip()
        if not key:
            raise SettingsError(f"{self.db_key_file} is empty; it should hold the database key.")
        return key

    def audit_key(self) -> bytes:
        """The secret that seals the audit log, in a file beside the database that only this user reads; made on
        first use."""
        path = self.data_dir / "audit.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
        _check_private(path)
        return bytes.fromhex(path.read_text().strip())


class SettingsError(ValueError):
    """A setting that cannot be used as it is, with what to do."""


def _check_private(path: Path) -> None:
    try:
        status = path.stat()
    except OSError as error:
        raise SettingsError(f"{path} cannot be read: {error.strerror}.") from None
    if status.st_mode & 0o077 or status.st_uid != os.getuid():
        raise SettingsError(f"{path} must belong to this service's user and be readable by no one else: "
                            f"chmod 600 {path}")
