"""Settings from environment variables (and an optional `.env`), validated at start-up."""

import json
import secrets
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from zxcvbn import zxcvbn


class SettingsError(Exception):
    """A setting is missing or has a bad value; the message names it."""


# Production secrets: at least this long, and at least this hard to guess as estimated by
# zxcvbn (log10 of guesses; 24 ≈ 80 bits — a random 32-hex WeChat AppSecret scores ≥ 27).
SECRET_MIN_LENGTH = 32
SECRET_MIN_GUESSES_LOG10 = 24


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # demo: secrets generated on first start and kept under data_dir;
    # production: every secret must be given.
    mode: Literal["demo", "production"] = Field("demo", validation_alias="XIAOQU_MODE")
    data_dir: Path = Field(Path("var"), validation_alias="XIAOQU_DATA_DIR")

    mongodb_uri: str | None = None
    mongodb_db: str = "xiaoqu"
    redis_url: str | None = None
    http_port: int = Field(8000, ge=0, le=65535)
    gate_port: int = Field(7000, ge=0, le=65535)
    gate_heartbeat: float = Field(20.0, gt=0, le=300, description="seconds between heartbeats")
    gate_max_handshakes: int = Field(64, ge=1, le=100_000,
                                     description="bridge handshakes in progress at once, per hub")
    # Background jobs (SLA watcher, outbox worker) run in one instance at a time under Redis
    # leases of this length (models/leases.py): a dead holder is replaced within it.
    lease_seconds: float = Field(10.0, ge=1, le=300)
    # Seconds after a remote open's wait and ttl before the outbox takes its sender for dead
    # (it never recorded the outcome) and asks the bridge what it did.
    gate_outcome_grace: float = Field(30.0, ge=0, le=3600)
    # Seconds an open command may still act after it was issued (the bridge refuses it later).
    gate_command_ttl: float = Field(5.0, gt=0, le=60)
    gate_tls_cert: str | None = None  # PEM chain; without it the hub speaks plain TCP (lab/demo)
    gate_tls_key: str | None = None
    # Production refuses plain TCP to bridges unless this says so (e.g. a TLS-terminating
    # proxy in front of the hub).
    gate_allow_plain: bool = False
    # Seals bridge HMAC keys at rest (models/key_box.py); keep it out of the database.
    gate_secret_key: SecretStr | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    # Behind reverse proxies: how many of them are in front (0: clients connect directly).
    # The client address (login limits are per address) is then the X-Forwarded-For entry
    # the outermost proxy added, counted from the right; whatever is left of it is the
    # client's own say and ignored, and so is X-Real-Ip.
    trusted_proxy_hops: int = Field(0, ge=0, le=8)
    # Retired: it trusted X-Real-Ip, which a client can send itself.
    trust_proxy_headers: bool | None = None

    @field_validator("trust_proxy_headers")
    @classmethod
    def _retired(cls, value: bool | None) -> None:
        if value is not None:
            raise ValueError("replaced by TRUSTED_PROXY_HOPS: the number of proxies in front")
        return value

    # When set, /metrics, /api/openapi.json and /docs need it (bearer token or ?token=).
    ops_token: SecretStr | None = None
    # Every log line's rendering (gate_bridge/logs.py): auto is text on a terminal, JSON
    # otherwise.
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    jwt_secret: SecretStr | None = None
    access_token_seconds: int = Field(900, ge=30, le=86400)
    refresh_token_days: int = Field(30, ge=1, le=365)

    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_appid: str = "wx-demo-appid"
    wechat_secret: SecretStr | None = None
    # The subscribe-message template for ticket progress (from the mini-program's console).
    wechat_ticket_template: str = "ticket-progress"
    wechat_notice_template: str = "community-notice"

    login_max_failures: int = Field(5, ge=1)
    login_lockout_seconds: int = Field(900, ge=1)

    # Passes (docs/passes.md); a community's settings may override the first two.
    pass_code_seconds: int = Field(60, ge=10, le=3600)
    invitation_max_days: int = Field(7, ge=1, le=90)
    worker_pass_max_days: int = Field(90, ge=1, le=366)
    pass_skew_seconds: int = Field(5, ge=0, le=120)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # PyJWT warns below 32 bytes for HMAC keys: too easy to brute-force.
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError(f"must be at least {SECRET_MIN_LENGTH} bytes")
        return value


SECRET_FIELDS = ("jwt_secret", "wechat_secret", "gate_secret_key")
ZXCVBN_MAX_LENGTH = 72  # the library refuses longer input; the prefix is enough to judge
DEMO_APPID = Settings.model_fields["wechat_appid"].default
MAKE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def load_settings(**overrides) -> Settings:
    """Read and validate settings; fill in demo secrets. Raises SettingsError."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"bad settings: {problems}") from None
    missing = [name for name in SECRET_FIELDS if getattr(settings, name) is None]
    if bool(settings.gate_tls_cert) != bool(settings.gate_tls_key):
        raise SettingsError("GATE_TLS_CERT and GATE_TLS_KEY go together")
    if settings.mode == "production":
        _check_production(settings, missing)
    elif missing:
        stored = _demo_secrets(settings.data_dir, missing)
        settings = settings.model_copy(update={n: SecretStr(stored[n]) for n in missing})
    return settings


def _check_production(settings: Settings, missing: list[str]) -> None:
    """Production reaches no demo path: real stores by URL, real WeChat, strong secrets."""
    problems = [f"{name.upper()}: required" for name in missing]
    problems += [f"{name.upper()}: {problem}" for name in SECRET_FIELDS if name not in missing
                 and (problem := weak_secret(getattr(settings, name).get_secret_value()))]
    problems += [f"{name.upper()}: required (no embedded stores in production)"
                 for name in ("mongodb_uri", "redis_url") if not getattr(settings, name)]
    if not settings.wechat_base_url.startswith("https://"):
        problems.append("WECHAT_BASE_URL: must be https:// (the fake WeChat server is for the demo)")
    if settings.wechat_appid == DEMO_APPID:
        problems.append("WECHAT_APPID: required (the mini-program's AppID)")
    if not settings.gate_tls_cert and not settings.gate_allow_plain:
        problems.append("GATE_TLS_CERT and GATE_TLS_KEY: required, bridges speak TLS "
                        "(GATE_ALLOW_PLAIN=true only behind a TLS-terminating proxy)")
    if problems:
        raise SettingsError("production mode: " + "; ".join(problems)
                            + f". Make a secret with: {MAKE_SECRET}")


def weak_secret(value: str) -> str | None:
    """Why a secret is too weak for production, or None."""
    if len(value.encode()) < SECRET_MIN_LENGTH:
        return f"must be at least {SECRET_MIN_LENGTH} bytes"
    if zxcvbn(value[:ZXCVBN_MAX_LENGTH])["guesses_log10"] < SECRET_MIN_GUESSES_LOG10:
        return "too easy to guess (a word, a repeat or a sequence): use a random value"
    return None


def _demo_secrets(data_dir: Path, names: list[str]) -> dict[str, str]:
    """Generate demo secrets once and keep them, so tokens survive a restart."""
    path = data_dir / "secrets.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    if any(n not in stored for n in names):
        stored.update({n: secrets.token_urlsafe(32) for n in names if n not in stored})
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored))
        path.chmod(0o600)
    return stored


def settings_for_tools() -> Settings:
    """Settings for operator tools, which must reach the stores a running server uses;
    exits with status 2 and the reason when they are unusable."""
    try:
        settings = load_settings()
        if not (settings.mongodb_uri and settings.redis_url):
            raise SettingsError("set MONGODB_URI and REDIS_URL to the stores the server uses "
                                "(`make run` prints those of its embedded stores)")
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    return settings
