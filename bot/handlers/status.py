"""Job lifecycle as the user sees it: ONE status message per job, edited in place at most every
`interval` seconds (the final state is always shown), a preview photo once, then the result.

`StatusBoard.on_event` is the JobManager's `on_event`. State lives in memory per job; after a
restart the status message id is read back from the job's `JobMeta.status_msg`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiolimiter import AsyncLimiter
from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, TelegramError

from bot import keyboards, texts
from bot.i18n import current_language, use_language
from bot.jobevents import JobEvent
from bot.storage import Job
from bot.telegram_io import replying_to, safe_edit_text, with_retries
from engine.job import EventKind, Result

if TYPE_CHECKING:  # only for annotations: bot.services refers to this module too
    from bot.services import AnyApplication, Services

log = logging.getLogger(__name__)
T = TypeVar("T")

# how far along a job is: a status never goes back to an earlier phase
QUEUED, STARTED, RUNNING, FINAL = range(4)
NOTIFY_MAX_RATE = 30.0
"""Messages a second the board sends or edits at most (Telegram's limit for bulk notifications);
replies to users are not paced by it."""


@dataclass
class _Status:
    job_id: str
    chat_id: int
    message_id: int | None = None
    phase: int = QUEUED
    text: str = ""
    markup: InlineKeyboardMarkup | None = None
    shown_text: str | None = None
    last_edit: float = 0.0
    flush: asyncio.Task[Any] | None = None
    preview_sent: bool = False
    position: int | None = None
    reply_to: int | None = None
    """The owner's photo: the status, the preview and the painting reply to it."""
    language: str = field(default_factory=current_language)
    """What the owner is spoken to in (the job's `JobMeta.language`)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class StatusBoard:
    def __init__(self, interval: float = 3.0, poll_interval: float = 3.0) -> None:
        self.interval = interval
        self.poll_interval = poll_interval
        self._app: AnyApplication | None = None
        self._services: Services | None = None
        self._jobs: dict[str, _Status] = {}
        self._poller: asyncio.Task[Any] | None = None
        self._pace = AsyncLimiter(NOTIFY_MAX_RATE, 1.0)

    # -- wiring -----------------------------------------------------------------------------
    def attach(self, app: AnyApplication, services: Services) -> None:
        self._app = app
        self._services = services
        self._poller = asyncio.get_running_loop().create_task(
            self._poll_positions(), name="stylebot-status-poller"
        )

    async def close(self) -> None:
        tasks = [t for t in [self._poller, *(s.flush for s in self._jobs.values())] if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._poller = None

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("status board not attached")
        return self._services

    @property
    def bot(self) -> Bot:
        if self._app is None:
            raise RuntimeError("status board not attached")
        bot: Bot = self._app.bot
        return bot

    def tracked(self) -> list[str]:
        return list(self._jobs)

    # -- entry points -----------------------------------------------------------------------
    async def job_submitted(
        self, job_id: str, chat_id: int, position: int, reply_to: int | None = None
    ) -> None:
        """Called right after `submit`: shows "queued" unless the job is already further."""
        st = self._status(job_id, chat_id, None)
        st.reply_to = reply_to
        await self._show(st, QUEUED, texts.queued(position), keyboards.cancel_keyboard(job_id))
        st.position = position

    async def on_event(self, event: JobEvent) -> None:
        """The JobManager's callback. Never raises (a failing Telegram call is logged)."""
        try:
            with use_language(event.job.meta.language):  # outside any update: the owner's
                await self._on_event(event)
        except Exception:
            log.exception("status update for job %s failed", event.job.id)

    async def _on_event(self, event: JobEvent) -> None:
        job = event.job
        kind = event.kind
        st = self._status(job.id, job.chat_id, job.meta.status_msg)
        st.reply_to = job.meta.reply_to
        cancel = keyboards.cancel_keyboard(job.id)
        if kind is EventKind.QUEUED:
            position = event.position if event.position is not None else 1
            st.position = position
            await self._show(st, QUEUED, texts.queued(position), cancel)
        elif kind is EventKind.PREVIEW and event.preview is not None:
            # a first look while the job still waits: the status keeps its queue position
            await self._send_preview(st, job, event.preview)
        elif kind is EventKind.STARTED:
            await self._show(st, STARTED, texts.STARTING, cancel)
        elif kind is EventKind.PROGRESS and event.progress is not None:
            progress = event.progress
            await self._show(st, RUNNING, texts.progress(progress.fraction, progress.eta), cancel)
            if progress.preview:
                await self._send_preview(st, job, progress.preview)
        elif kind is EventKind.DONE:
            await self._finish(st, job, event.result)
        elif kind is EventKind.FAILED:
            await self._show(st, FINAL, texts.job_failed(event.code, event.detail), None)
            self._forget(job.id)
        elif kind is EventKind.CANCELLED:
            await self._show(st, FINAL, texts.CANCELLED, None)
            self._forget(job.id)

    # -- internals --------------------------------------------------------------------------
    def _status(self, job_id: str, chat_id: int, message_id: int | None) -> _Status:
        st = self._jobs.get(job_id)
        if st is None:
            st = self._jobs[job_id] = _Status(job_id=job_id, chat_id=chat_id)
            st.message_id = message_id
        return st

    def _forget(self, job_id: str) -> None:
        st = self._jobs.pop(job_id, None)
        if st is not None and st.flush is not None:
            st.flush.cancel()

    async def _show(
        self, st: _Status, phase: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        async with st.lock:
            if phase < st.phase or (st.phase == FINAL and st.shown_text is not None):
                return
            st.phase = phase
            st.text = text
            st.markup = markup
            if st.message_id is None:
                await self._send_status(st)
                return
            wait = st.last_edit + self.interval - time.monotonic()
            if phase == FINAL or wait <= 0:
                if st.flush is not None:
                    st.flush.cancel()
                    st.flush = None
                await self._edit(st)
            elif st.flush is None:
                st.flush = asyncio.get_running_loop().create_task(self._flush_later(st, wait))

    async def _flush_later(self, st: _Status, wait: float) -> None:
        await asyncio.sleep(wait)
        async with st.lock:
            st.flush = None
            if st.shown_text != st.text:
                await self._edit(st)

    async def _paced(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        async with self._pace:
            return await with_retries(call, what=what)

    async def _send_status(self, st: _Status) -> None:
        try:
            message = await self._paced(
                lambda: self.bot.send_message(
                    chat_id=st.chat_id,
                    text=st.text,
                    reply_markup=st.markup,
                    reply_parameters=replying_to(st.reply_to),
                ),
                what="status",
            )
        except (BadRequest, Forbidden) as exc:
            log.info("cannot send status of job %s: %s", st.job_id, exc)
            return
        st.message_id = message.message_id
        st.shown_text = st.text
        st.last_edit = time.monotonic()
        with contextlib.suppress(Exception):
            await self.services.storage.update_job_meta(st.job_id, status_msg=message.message_id)

    async def _edit(self, st: _Status) -> None:
        assert st.message_id is not None
        st.last_edit = time.monotonic()
        async with self._pace:
            edited = await safe_edit_text(self.bot, st.chat_id, st.message_id, st.text, st.markup)
        if edited:
            st.shown_text = st.text

    async def _send_preview(self, st: _Status, job: Job, preview: bytes) -> None:
        """The job's one preview: the first that comes (a waiting job's first look, or its own
        quick pass), none for a full-resolution repaint (the user already has the picture)."""
        if st.preview_sent or job.meta.full_res:
            return
        st.preview_sent = True
        try:
            await self._paced(
                lambda: self.bot.send_photo(
                    chat_id=st.chat_id,
                    photo=preview,
                    caption=texts.PREVIEW_CAPTION,
                    reply_parameters=replying_to(st.reply_to),
                ),
                what="preview",
            )
        except TelegramError as exc:
            log.info("preview of job %s not sent: %s", st.job_id, exc)

    async def _finish(self, st: _Status, job: Job, result: Result | None) -> None:
        meta = job.meta
        seconds = 0.0
        if result is not None and result.timings:
            seconds = float(result.timings.get("total", 0.0))
        if not seconds and job.started_at:
            seconds = max(0.0, (job.finished_at or time.time()) - job.started_at)
        await self._show(st, FINAL, texts.done(seconds), None)
        self._forget(job.id)
        if result is None:
            return
        if meta.pair is not None:
            await asyncio.to_thread(
                self.services.pairs.save_result, meta.pair, job.id, result.image
            )
        if meta.full_res:
            await self._send_file(job, result)
            return
        caption = texts.result_caption(
            style=meta.style_name,
            strength=meta.strength,
            colors=meta.colors,
            seconds=seconds,
            width=result.width,
            height=result.height,
            brush=meta.brush,
        )
        markup = keyboards.result_keyboard(
            job.id,
            strength=meta.strength,
            colors=meta.colors,
            # a picture the user sent, or a mix, is not a saved style yet
            can_save=meta.preset_id is None or meta.mix_preset_id is not None,
            brush=meta.brush,
        )
        await self._deliver(
            job,
            ChatAction.UPLOAD_PHOTO,
            lambda: self.bot.send_photo(
                chat_id=job.chat_id,
                photo=result.image,
                caption=caption,
                reply_markup=markup,
                reply_parameters=replying_to(meta.reply_to),
            ),
        )

    async def _send_file(self, job: Job, result: Result) -> None:
        """A full-resolution painting: a file, so that Telegram keeps every pixel (a photo
        message is recompressed to at most 1280 px or 2560 px)."""
        extension = "png" if result.mime_type == "image/png" else "jpg"
        await self._deliver(
            job,
            ChatAction.UPLOAD_DOCUMENT,
            lambda: self.bot.send_document(
                chat_id=job.chat_id,
                document=result.image,
                filename=f"stylebot-{job.id[:8]}-{result.width}x{result.height}.{extension}",
                caption=texts.full_res_caption(result.width, result.height),
                reply_parameters=replying_to(job.meta.reply_to),
            ),
        )

    async def _deliver(self, job: Job, action: str, send: Callable[[], Awaitable[Message]]) -> None:
        """Send a job's painting (`send`), after a chat action hint, and remember its message."""
        with contextlib.suppress(TelegramError):  # only a hint: the upload goes on without it
            await self.bot.send_chat_action(job.chat_id, action)
        try:
            message = await self._paced(send, what="result")
        except (BadRequest, Forbidden) as exc:
            log.warning("result of job %s not delivered: %s", job.id, exc)
            return
        with contextlib.suppress(Exception):
            await self.services.storage.update_job_meta(job.id, result_msg=message.message_id)

    async def _poll_positions(self) -> None:
        """Queue positions change without events when others finish: refresh them."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                jobs = self.services.jobs
            except RuntimeError:
                continue
            for job_id, st in list(self._jobs.items()):
                if st.phase != QUEUED or st.message_id is None:
                    continue
                try:
                    position = jobs.position(job_id)
                except Exception:
                    continue
                if position is None or position <= 0 or position == st.position:
                    continue
                st.position = position
                with use_language(st.language):
                    await self._show(
                        st, QUEUED, texts.queued(position), keyboards.cancel_keyboard(job_id)
                    )
