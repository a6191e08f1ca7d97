"""Rasa's REST channel with input validation (runs inside the Rasa server, Rasa venv).

Rasa's own ``RestInput`` answers 500 to a JSON body that is not an object and lets any client
pick the input channel. This subclass keeps its URL (``/webhooks/rest/webhook``) and reply
format, and adds: 400 with a JSON error for malformed bodies; control characters stripped;
empty and over-long messages answered politely without reaching NLU; the input channel limited
to known names (so ``channel:`` response variations work for the gateway); identifiers masked
in logs.

While a person at the desk owns a conversation, the bot is paused: Rasa records the message but
says nothing. The message then goes to the desk (the service app's ``/api/v1/desk/inbound``) and
its replies are the answer. A command (``/restart`` …) sent while paused is not given to Rasa,
which would restart the conversation under the agent: the desk gets it as text.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Text

from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from rasa.core.processor import MessageProcessor
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import InvalidConfigException

from actions.service_client import ServiceClient, ServiceConfig, ServiceError, ServiceUnavailable
from channels import rasa_speedups
from taxlib.privacy import install_log_masking
from taxlib.text import strip_control


def keep_paused_sessions() -> None:
    """A conversation a person owns does not expire into a new session (idempotent).

    Rasa starts a new session when the last user message is older than ``session_expiration_time``,
    and a new session unpauses the conversation: a user who waited an hour in the desk's queue would
    get the bot back while an agent is about to answer. The desk resumes the conversation itself.
    """
    original = MessageProcessor._has_session_expired
    if getattr(original, "keeps_paused_sessions", False):
        return

    def _has_session_expired(self: MessageProcessor, tracker: DialogueStateTracker) -> bool:
        return not tracker.is_paused() and original(self, tracker)

    _has_session_expired.keeps_paused_sessions = True  # type: ignore[attr-defined]
    MessageProcessor._has_session_expired = _has_session_expired  # type: ignore[method-assign]


# This module is what the Rasa server imports from credentials.yml: process-wide set-up goes here.
install_log_masking()
rasa_speedups.install()
rasa_speedups.sqlite_write_ahead_log()
keep_paused_sessions()
logger = logging.getLogger(__name__)

KNOWN_CHANNELS = ("rest", "webchat", "wechat", "phone")
MAX_SENDER_CHARS = 128


class BadRequest(ValueError):
    pass


def parse_body(raw: bytes) -> Dict[str, Any]:
    """The request body as a JSON object, or BadRequest with a reason."""
    import json

    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest("body is not valid UTF-8") from exc
    except ValueError as exc:
        raise BadRequest("body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def validate_message(body: Dict[str, Any]) -> Dict[str, Any]:
    sender = body.get("sender")
    if isinstance(sender, int) and not isinstance(sender, bool):
        sender = str(sender)
    if not isinstance(sender, str) or not sender.strip() or len(sender) > MAX_SENDER_CHARS:
        raise BadRequest(f"'sender' must be a non-empty string of at most {MAX_SENDER_CHARS} characters")
    message = body.get("message", "")
    if message is None:
        message = ""
    if not isinstance(message, str):
        raise BadRequest("'message' must be a string")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadRequest("'metadata' must be a JSON object")
    channel = body.get("input_channel") or "rest"
    if channel not in KNOWN_CHANNELS:
        raise BadRequest(f"'input_channel' must be one of {', '.join(KNOWN_CHANNELS)}")
    return {"sender": sender.strip(), "message": strip_control(message).strip(), "metadata": metadata, "channel": channel}


class ChannelCollector(CollectingOutputChannel):
    """Collects replies like Rasa's REST collector, but answers to the name of the channel the
    message came in on, so responses pick their ``channel:`` variation (phone, wechat …)."""

    def __init__(self, channel: Text) -> None:
        super().__init__()
        self._channel = channel

    def name(self) -> Text:  # type: ignore[override]  # a classmethod upstream
        return self._channel


class TaxRestInput(RestInput):
    """``rest`` channel: same URL and reply format as Rasa's, with validated input."""

    def __init__(self, max_message_chars: int = 2000, desk: Optional[ServiceClient] = None) -> None:
        self.max_message_chars = max_message_chars
        self._desk = desk

    @classmethod
    def name(cls) -> Text:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "TaxRestInput":
        credentials = credentials or {}
        raw = os.environ.get("TAXBOT_MAX_MESSAGE_CHARS") or credentials.get("max_message_chars", 2000)
        try:
            limit = int(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidConfigException(f"max_message_chars must be an integer, got {raw!r}") from exc
        if limit < 10:
            raise InvalidConfigException("max_message_chars must be at least 10")
        return cls(max_message_chars=limit)

    def desk(self) -> ServiceClient:
        """The service client for the desk (TAXBOT_SERVICE_URL / TAXBOT_SERVICE_TOKEN), built on first use."""
        if self._desk is None:
            self._desk = ServiceClient(ServiceConfig.from_env())
        return self._desk

    async def to_desk(
        self, request: Request, sender: Text, channel: Text, text: Text, metadata: Optional[Dict[str, Any]]
    ) -> List[Dict[str, Any]]:
        """A message of a conversation the desk owns, given to the desk; its replies in the REST reply format."""
        try:
            answer = await self.desk().desk_inbound(sender, channel, text, metadata)
        except (ServiceError, ServiceUnavailable) as exc:
            logger.warning("rest.desk_failed sender=%s error=%s", sender, exc)
            return await _say(request, "utter_service_unavailable", sender, channel)
        logger.info("rest.desk_forwarded sender=%s routed=%s", sender, answer.get("routed"))
        return [
            {"recipient_id": sender, "text": reply["text"]}
            for reply in answer.get("replies") or []
            if isinstance(reply, dict) and isinstance(reply.get("text"), str) and reply["text"]
        ]

    def blueprint(self, on_new_message):  # type: ignore[no-untyped-def]
        blueprint = Blueprint(f"custom_webhook_{type(self).__name__}", __name__)

        @blueprint.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @blueprint.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            try:
                fields = validate_message(parse_body(request.body or b""))
            except BadRequest as exc:
                return response.json({"error": "bad_request", "message": str(exc)}, status=400)
            sender, text, channel = fields["sender"], fields["message"], fields["channel"]
            if not text:
                return response.json(await _say(request, "utter_empty_message", sender, channel))
            if len(text) > self.max_message_chars:
                return response.json(
                    await _say(request, "utter_message_too_long", sender, channel, max_chars=self.max_message_chars)
                )
            metadata = fields["metadata"]
            collector = ChannelCollector(channel)
            try:
                if text.startswith("/") and await _is_paused(request, sender):
                    # "/restart", "/session_start" … would take the conversation from the agent: text for the desk.
                    return response.json(await self.to_desk(request, sender, channel, text, metadata))
                await on_new_message(UserMessage(text, collector, sender, input_channel=channel, metadata=metadata))
                if not collector.messages and await _is_paused(request, sender):
                    # Rasa recorded the message and said nothing: a person owns this conversation.
                    return response.json(await self.to_desk(request, sender, channel, text, metadata))
            except Exception:  # as in Rasa's own handler: log it, and the user still gets a reply
                logger.exception("rest.message_failed sender=%s", sender)
                if not collector.messages:
                    return response.json(await _say(request, "utter_service_unavailable", sender, channel))
            return response.json(collector.messages)

        @blueprint.listener("after_server_stop")
        async def close_desk_client(app, loop) -> None:  # type: ignore[no-untyped-def]
            if self._desk is not None:
                await self._desk.close()

        return blueprint


async def _is_paused(request: Request, sender: Text) -> bool:
    tracker = await request.app.ctx.agent.tracker_store.retrieve(sender)
    return tracker is not None and tracker.is_paused()


async def _say(request: Request, template: Text, sender: Text, channel: Text, **kwargs: Any) -> List[Dict[str, Any]]:
    """A domain response rendered for ``channel``, as the REST channel's reply list."""
    agent = request.app.ctx.agent
    tracker = DialogueStateTracker(sender, agent.domain.slots)
    message = await agent.nlg.generate(template, tracker, channel, **kwargs)
    return [{"recipient_id": sender, "text": (message or {}).get("text", "")}]
