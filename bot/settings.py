"""Settings from environment variables, validated once at start with clear messages.

Defaults for anything the engine does come from `engine.params.StyleParams`; this module
only adds what belongs to the service (token, paths, executor, limits).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from engine.job import DEFAULT_JOB_TIMEOUT_S, DEFAULT_REDIS_URL
from engine.params import MAX_SIZE, MIN_SIZE, StyleParams

DEFAULTS = StyleParams()
DEFAULT_MAX_SIDE = 1024
"""The largest size offered unless STYLEBOT_MAX_SIDE says otherwise: a sharp picture on a phone."""
OFFERED_SIZES = (256, 384, 512, 768, 1024, 1536, 2048)
OFFICIAL_API_URL = "https://api.telegram.org"
# Bot API tokens look like "123456789:AA...": a numeric bot id, a colon, 30+ url-safe chars.
TOKEN_PATTERN = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{30,100}$")
# Webhook mode: what Telegram accepts for setWebhook's secret_token and the URL's port.
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
WEBHOOK_PORTS = (443, 80, 88, 8443)
# The URL's path is also the path the local webhook server answers on: plain characters only.
WEBHOOK_PATH_PATTERN = re.compile(r"^[A-Za-z0-9._~/-]*$")
LISTEN_PATTERN = re.compile(r"^[A-Za-z0-9.:_-]+$")


class SettingsError(Exception):
    """A setting is missing or malformed. The message is one line and never contains the token."""


@dataclass(frozen=True)
class Settings:
    token: str = field(repr=False)
    api_url: str = OFFICIAL_API_URL
    data_dir: Path = Path("data")
    weights: str = "imagenet"
    default_size: int = DEFAULTS.size
    """The size of a first painting (until the user picks another with /size)."""
    max_side: int = DEFAULT_MAX_SIDE
    """The largest size offered: by /size, and by "Full resolution" (the photo's own size,
    capped here)."""
    sizes: tuple[int, ...] = (256, 384, 512, 768, 1024)
    executor: str = "local"
    workers: int = 1
    redis_url: str = DEFAULT_REDIS_URL
    admins: frozenset[int] = frozenset()
    log_level: str = "INFO"
    max_queue: int = 20
    max_jobs_per_user: int = 3
    max_presets_per_user: int = 50
    job_timeout: float = DEFAULT_JOB_TIMEOUT_S
    rate_limit_per_minute: int = 30
    celery_capacity: int = 2
    """Jobs the bot keeps in flight on Celery at once (the workers decide the real parallelism)."""
    webhook_url: str = ""
    """Public HTTPS URL Telegram posts updates to; empty: long polling."""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: str = field(default="", repr=False)
    """Telegram sends it in X-Telegram-Bot-Api-Secret-Token; never logged, like the token."""

    @property
    def base_url(self) -> str:
        """python-telegram-bot's `base_url`: the token is appended to it."""
        return f"{self.api_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.api_url}/file/bot"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "stylebot.sqlite3"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def webhook_path(self) -> str:
        """The path the webhook server answers on: the URL's own, without its slashes
        (``https://bot.example.com/telegram`` → ``telegram``; no path → ``""``, the root)."""
        return urlsplit(self.webhook_url).path.strip("/")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < low:
        raise SettingsError(f"{name} must be at least {low:g}, not {value:g}")
    return value


def _sizes(default_size: int, max_side: int) -> tuple[int, ...]:
    """The sizes /size offers: a few common ones up to the server's maximum, with the default
    and the maximum themselves."""
    return tuple(sorted({s for s in OFFERED_SIZES if s < max_side} | {default_size, max_side}))


def load_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """STYLEBOT_DATA_DIR alone, for tools that need no token (e.g. `python -m bot.presets`)."""
    env = os.environ if env is None else env
    return Path(env.get("STYLEBOT_DATA_DIR", "").strip() or "data")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting. Raises `SettingsError` with a one-line message."""
    env = os.environ if env is None else env
    token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        raise SettingsError(
            "TELEGRAM_BOT_TOKEN is not set: get a token from @BotFather and put it in .env "
            "or the environment"
        )
    if not TOKEN_PATTERN.match(token):
        raise SettingsError(
            "TELEGRAM_BOT_TOKEN is malformed: it should look like 123456789:ABCdef... "
            "(digits, a colon, then 30+ letters, digits, - or _)"
        )

    api_url = env.get("TELEGRAM_API_URL", "").strip().rstrip("/") or OFFICIAL_API_URL
    if not re.match(r"^https?://[^\s/]+", api_url):
        raise SettingsError(
            f"TELEGRAM_API_URL must start with http:// or https://, not {api_url!r}"
        )

    weights = env.get("STYLEBOT_WEIGHTS", "").strip() or Settings.weights
    if weights not in ("imagenet", "random") and not Path(weights).is_file():
        raise SettingsError(
            f"STYLEBOT_WEIGHTS must be imagenet, random or an existing weights file; "
            f"{weights!r} does not exist"
        )

    executor = env.get("STYLEBOT_EXECUTOR", "").strip().lower() or Settings.executor
    if executor not in ("local", "celery"):
        raise SettingsError(f"STYLEBOT_EXECUTOR must be local or celery, not {executor!r}")

    admins: set[int] = set()
    for part in env.get("STYLEBOT_ADMINS", "").replace(" ", "").split(","):
        if not part:
            continue
        if not (part.lstrip("-").isascii() and part.lstrip("-").isdigit()):
            raise SettingsError(
                f"STYLEBOT_ADMINS must be comma-separated Telegram user ids, not {part!r}"
            )
        admins.add(int(part))

    log_level = (env.get("STYLEBOT_LOG_LEVEL", "").strip() or Settings.log_level).upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(
            f"STYLEBOT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}"
        )

    max_side = _int(env, "STYLEBOT_MAX_SIDE", Settings.max_side, MIN_SIZE, MAX_SIZE)
    default_size = _int(env, "STYLEBOT_DEFAULT_SIZE", Settings.default_size, MIN_SIZE, MAX_SIZE)
    if default_size > max_side:
        if "STYLEBOT_DEFAULT_SIZE" in env and env["STYLEBOT_DEFAULT_SIZE"].strip():
            raise SettingsError(
                f"STYLEBOT_DEFAULT_SIZE ({default_size}) must not be larger than "
                f"STYLEBOT_MAX_SIDE ({max_side})"
            )
        default_size = max_side  # only the maximum was lowered: the default follows it
    webhook_url, webhook_secret = _webhook(env)
    webhook_listen = env.get("STYLEBOT_WEBHOOK_LISTEN", "").strip() or Settings.webhook_listen
    if not LISTEN_PATTERN.match(webhook_listen):
        raise SettingsError(
            f"STYLEBOT_WEBHOOK_LISTEN must be an IP address or a host name, not {webhook_listen!r}"
        )
    return Settings(
        token=token,
        api_url=api_url,
        data_dir=load_data_dir(env),
        weights=weights,
        default_size=default_size,
        max_side=max_side,
        sizes=_sizes(default_size, max_side),
        executor=executor,
        # Each default is the `Settings` field's own (class attributes of the dataclass).
        workers=_int(env, "STYLEBOT_WORKERS", Settings.workers, 1, 64),
        redis_url=env.get("STYLEBOT_REDIS_URL", "").strip() or Settings.redis_url,
        admins=frozenset(admins),
        log_level=log_level,
        max_queue=_int(env, "STYLEBOT_MAX_QUEUE", Settings.max_queue, 1, 10_000),
        max_jobs_per_user=_int(
            env, "STYLEBOT_MAX_JOBS_PER_USER", Settings.max_jobs_per_user, 1, 100
        ),
        max_presets_per_user=_int(
            env, "STYLEBOT_MAX_PRESETS_PER_USER", Settings.max_presets_per_user, 1, 10_000
        ),
        job_timeout=_float(env, "STYLEBOT_JOB_TIMEOUT", Settings.job_timeout, 1.0),
        rate_limit_per_minute=_int(
            env, "STYLEBOT_RATE_LIMIT", Settings.rate_limit_per_minute, 1, 100_000
        ),
        celery_capacity=_int(env, "STYLEBOT_CELERY_CAPACITY", Settings.celery_capacity, 1, 1000),
        webhook_url=webhook_url,
        webhook_listen=webhook_listen,
        webhook_port=_int(env, "STYLEBOT_WEBHOOK_PORT", Settings.webhook_port, 1, 65535),
        webhook_secret=webhook_secret,
    )


def _webhook(env: Mapping[str, str]) -> tuple[str, str]:
    """STYLEBOT_WEBHOOK_URL and STYLEBOT_WEBHOOK_SECRET, checked as Telegram's setWebhook would.
    Messages never quote the secret."""
    url = env.get("STYLEBOT_WEBHOOK_URL", "").strip() or Settings.webhook_url
    secret = env.get("STYLEBOT_WEBHOOK_SECRET", "").strip() or Settings.webhook_secret
    if secret and not WEBHOOK_SECRET_PATTERN.match(secret):
        raise SettingsError(
            "STYLEBOT_WEBHOOK_SECRET must be 1-256 characters A-Z, a-z, 0-9, _ or - "
            f"(Telegram's rule); the one set has {len(secret)} characters"
        )
    if not url:
        return url, secret
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SettingsError(f"STYLEBOT_WEBHOOK_URL is not a valid URL: {url!r}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise SettingsError(
            f"STYLEBOT_WEBHOOK_URL must be an https:// URL (Telegram posts only over HTTPS), "
            f"not {url!r}"
        )
    if port is not None and port not in WEBHOOK_PORTS:
        raise SettingsError(
            f"STYLEBOT_WEBHOOK_URL must use port 443, 80, 88 or 8443 (Telegram posts to no "
            f"other), not {port}"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SettingsError(  # the URL is not quoted: a user part may hold a password
            "STYLEBOT_WEBHOOK_URL must be https://host[:port][/path], without a user, a "
            "?query or a #fragment"
        )
    if not WEBHOOK_PATH_PATTERN.match(parts.path):
        raise SettingsError(
            f"STYLEBOT_WEBHOOK_URL's path may hold only letters, digits, /, ., _, ~ and -, "
            f"not {parts.path!r}"
        )
    if not secret:
        raise SettingsError(
            "STYLEBOT_WEBHOOK_SECRET is not set: webhook mode needs a secret token "
            "(1-256 characters A-Z, a-z, 0-9, _ or -; e.g. `openssl rand -hex 32`)"
        )
    return url, secret
