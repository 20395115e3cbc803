"""What OpenAI-compatible servers say about the model behind a name, without any I/O.

Read from (shapes taken from the servers' own sources):

llama.cpp ``llama-server``
    ``GET /v1/models``: each entry's ``meta`` holds ``n_params``, ``size`` (the tensors'
    bytes, ``llama_model_size``: a little under the file's size), ``n_ctx_train``,
    ``n_embd``, ``n_vocab``, ``vocab_type``; recent builds add ``n_ctx`` (per slot) and
    ``ftype`` (``llama_ftype_name``: ``"Q4_1"``, ``"Q2_K - Medium"``, ...).
    ``GET /props``: ``model_path``, ``default_generation_settings.n_ctx``, ``total_slots``,
    ``build_info``; recent builds add ``model_ftype`` and ``model_alias``.
vLLM
    ``GET /v1/models``: ``root`` (the model's path or hub id), ``parent`` (the base model of
    a LoRA adapter), ``max_model_len``; ``GET /version``: ``{"version": ...}``.

Any other server: nothing is known and every fact stays ``None``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_tokrate.backends.base import ModelInfo
from pytest_tokrate.backends.openai_wire import count, dig

LLAMACPP = "llama.cpp"
VLLM = "vllm"

#: A quantization type inside a file name: ``-Q4_K_M.``, ``.q2_k.``, ``-IQ4_XS.``, ``.F16.``
#: (GGUF), ``-AWQ``, ``-GPTQ-Int4``, ``-FP8`` (the weights vLLM serves).
_QUANT_TOKEN = re.compile(
    r"(?:^|[-_.])("
    r"IQ\d_(?:XXS|XS|NL|S|M)|TQ\d_0|Q\d_K(?:_(?:XL|S|M|L))?|Q\d_[01]|MXFP4|BF16|FP?16|FP?32"
    r"|FP8|AWQ|GPTQ"
    r")(?=[-_.]|$)",
    re.IGNORECASE,
)
#: Multi-file GGUFs end in ``-00001-of-00003``; that part says nothing about the weights.
_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")
_SIZE_WORDS = {"small": "S", "medium": "M", "large": "L"}


@dataclass(frozen=True)
class ServerFacts:
    """The model facts one server reported; ``None`` where it said nothing."""

    server: str | None = None  # LLAMACPP, VLLM or None
    digest: str | None = None
    size_bytes: int | None = None
    quantization: str | None = None
    quantization_source: str | None = None
    parameter_count: int | None = None
    context_length: int | None = None
    loaded_context_length: int | None = None
    embedding_length: int | None = None
    server_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def listed_model(listing: Any, model: str) -> dict[str, Any] | None:
    """The ``/v1/models`` entry that serves ``model``: its ``id`` or one of its
    ``aliases``; else the one entry of a single-model llama.cpp server, which answers
    whatever name a request gives."""
    data = listing.get("data") if isinstance(listing, Mapping) else None
    entries = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
    for entry in entries:
        aliases = entry.get("aliases")
        names = [entry.get("id"), *(aliases if isinstance(aliases, list) else ())]
        if model in names:
            return entry
    if len(entries) == 1 and isinstance(entries[0].get("meta"), dict):
        return entries[0]
    return None


def server_kind(entry: Mapping[str, Any] | None) -> str | None:
    """Which server listed the entry, from what only that server puts there."""
    if not entry:
        return None
    if isinstance(entry.get("meta"), dict) or entry.get("owned_by") == "llamacpp":
        return LLAMACPP
    if entry.get("owned_by") == VLLM or "max_model_len" in entry:
        return VLLM
    return None


def quantization_from_ftype(name: object) -> str | None:
    """llama.cpp's file type name in the names ``ollama show`` uses: ``"Q2_K - Medium"``
    -> ``Q2_K``, ``"Q4_K - Medium"`` -> ``Q4_K_M``, ``"IQ4_XS - 4.25 bpw"`` -> ``IQ4_XS``,
    ``"all F32"`` -> ``F32``; ``None`` for an unknown or missing type."""
    if not isinstance(name, str):
        return None
    text = name.strip().removeprefix("(guessed)").strip()
    head, _, tail = text.partition(" - ")
    head = head.strip()
    if not head or head.startswith("unknown"):
        return None
    if head == "all F32":
        return "F32"
    if head == "IQ3_S mix":
        return "IQ3_M"  # llama.cpp's name for LLAMA_FTYPE_MOSTLY_IQ3_M
    size = _SIZE_WORDS.get(tail.strip().lower())
    # Q2_K is llama.cpp's "Q2_K - Medium"; its small sibling is Q2_K_S.
    if size and re.fullmatch(r"Q\d_K", head) and (head, size) != ("Q2_K", "M"):
        return f"{head}_{size}"
    return head.replace(" ", "_").upper()


def quantization_from_filename(path: object) -> str | None:
    """The quantization a GGUF file's name states (``...Q4_1.gguf``, ``-q2_K``, ``-F16``,
    ``BF16``, ``IQ4_XS``): the last such part of the name; ``None`` when none does."""
    name = file_label(path)
    if name is None:
        return None
    stem = _SPLIT_SUFFIX.sub("", re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE))
    found = _QUANT_TOKEN.findall(stem)
    if not found:
        return None
    quant = str(found[-1]).upper()
    return {"FP16": "F16", "FP32": "F32"}.get(quant, quant)


def file_label(path: object, hub_ids: bool = False) -> str | None:
    """What names a model file wherever it lies: the last part of its path. With
    ``hub_ids``, a name that is not a filesystem path (``org/name`` on a model hub) is kept
    whole, since the organisation is part of the name."""
    if not isinstance(path, str) or not path.strip() or path.strip() == "none":
        return None  # a llama.cpp router's placeholder /props says model_path "none"
    text = path.strip()
    if hub_ids and not text.startswith(("/", "~", ".")) and "\\" not in text:
        return text
    return re.split(r"[\\/]", text.rstrip("/\\"))[-1] or None


def identity(server: str, facts: Mapping[str, Any]) -> str | None:
    """A short stable identity of the served model file, standing in for a digest.

    Neither llama.cpp nor vLLM reports a hash of the weights, so this is sha256 over what
    the server says about the file (its name without the directory, size, parameter and
    vocabulary counts, training context, embedding width), cut to 16 hex digits and marked
    ``<server>-facts:`` so nobody takes it for the file's sha256. Another file behind the
    same name changes it; the same file moved to another directory does not.
    """
    known = {key: value for key, value in facts.items() if value is not None}
    if not ({"file", "root"} & known.keys()):
        # Unnamed, one fine-tune's file reads like another's: say nothing rather than
        # give a value that would differ from the one given once the name is known.
        return None
    text = json.dumps(known, sort_keys=True, separators=(",", ":"))
    return f"{server}-facts:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def llamacpp_facts(entry: Mapping[str, Any], props: Mapping[str, Any] | None) -> ServerFacts:
    """The facts of a llama.cpp server from its ``/v1/models`` entry and ``/props``."""
    raw_meta = entry.get("meta")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    props = props or {}
    path = props.get("model_path")
    # A server started without --alias lists the model under its file name.
    label = file_label(path) or _gguf_name(entry.get("id"))
    quant, source = _llamacpp_quantization(meta, props, label)
    loaded = count(meta.get("n_ctx")) or count(dig(props, "default_generation_settings", "n_ctx"))
    counts = {key: count(meta.get(key)) for key in _LLAMACPP_COUNTS}
    build = props.get("build_info")
    return ServerFacts(
        server=LLAMACPP,
        digest=identity(LLAMACPP, {"file": label, **counts}),
        size_bytes=counts["size"],
        quantization=quant,
        quantization_source=source,
        parameter_count=counts["n_params"],
        context_length=counts["n_ctx_train"],
        loaded_context_length=loaded or None,  # a router's placeholder props say n_ctx 0
        embedding_length=counts["n_embd"],
        server_version=str(build) if isinstance(build, str) and build else None,
        extra=_present(
            model_file=label,
            vocab_size=counts["n_vocab"],
            total_slots=count(props.get("total_slots")),
        ),
    )


#: The counts of llama.cpp's ``meta`` that, with the file's name, identify the weights.
_LLAMACPP_COUNTS = ("size", "n_params", "n_vocab", "n_ctx_train", "n_embd")


def _llamacpp_quantization(
    meta: Mapping[str, Any], props: Mapping[str, Any], label: str | None
) -> tuple[str | None, str | None]:
    """The quantization and where it was read: the server's own file type name (recent
    builds), else the file's name (which older builds leave as the only clue)."""
    for where, value in (("meta.ftype", meta.get("ftype")), ("props", props.get("model_ftype"))):
        quant = quantization_from_ftype(value)
        if quant is not None:
            return quant, f"server ({where})"
    quant = quantization_from_filename(label)
    return quant, "file name" if quant is not None else None


def vllm_facts(entry: Mapping[str, Any], version: Mapping[str, Any] | None) -> ServerFacts:
    """The facts of a vLLM server from its ``/v1/models`` entry and ``/version``.

    vLLM gives no training context, only the context it serves (``max_model_len``: the
    model's own unless the server was started with ``--max-model-len``), so that is the
    context length too.
    """
    root = entry.get("root") if isinstance(entry.get("root"), str) else None
    parent = entry.get("parent") if isinstance(entry.get("parent"), str) else None
    label = file_label(root, hub_ids=True)
    quant = quantization_from_filename(label)
    max_len = count(entry.get("max_model_len"))
    number = (version or {}).get("version")
    return ServerFacts(
        server=VLLM,
        digest=identity(VLLM, {"root": label, "parent": file_label(parent, hub_ids=True)}),
        quantization=quant,
        quantization_source="file name" if quant else None,
        context_length=max_len,
        loaded_context_length=max_len,
        server_version=f"vllm {number}" if isinstance(number, str) and number else None,
        extra=_present(model_file=label, parent=file_label(parent, hub_ids=True)),
    )


def server_facts(entry: Mapping[str, Any] | None, answers: Mapping[str, Any | None]) -> ServerFacts:
    """The facts from the model's listing entry and the answers to the extra request its
    server kind calls for (``answers["props"]``, ``answers["version"]``, parsed JSON)."""
    kind = server_kind(entry)
    if entry is None or kind is None:
        return ServerFacts()
    if kind == LLAMACPP:
        return llamacpp_facts(entry, _mapping(answers.get("props")))
    return vllm_facts(entry, _mapping(answers.get("version")))


def model_info(
    name: str,
    backend: str,
    facts: ServerFacts,
    fingerprint: str | None,
    extra: Mapping[str, Any],
    redact: Callable[[str], str],
) -> ModelInfo:
    """The backend's :class:`ModelInfo`: the server's facts, the ``system_fingerprint`` of
    its streams where it reported no version, and ``extra`` extended with how the facts
    were found. ``redact`` takes secrets out of every text the server supplied."""
    version = facts.server_version or fingerprint
    shown = None if version is None else redact(version)
    more = {
        "server": facts.server,
        "quantization_source": facts.quantization_source,
        "loaded_context_length": facts.loaded_context_length,
        **facts.extra,
    }
    return ModelInfo(
        name=name,
        backend=backend,
        parameter_count=facts.parameter_count,
        quantization=facts.quantization,
        context_length=facts.context_length,
        embedding_length=facts.embedding_length,
        format="gguf" if facts.server == LLAMACPP else None,
        digest=facts.digest,
        size_bytes=facts.size_bytes,
        server_version=shown,
        engine_version=shown,
        extra={
            **extra,
            **{k: redact(v) if isinstance(v, str) else v for k, v in more.items()},
        },
    )


#: The extra request (path at the server's root) each server kind answers with facts.
FACTS_PATHS = {LLAMACPP: ("props", "/props"), VLLM: ("version", "/version")}


def _gguf_name(value: object) -> str | None:
    return value if isinstance(value, str) and value.lower().endswith(".gguf") else None


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


__all__ = [
    "FACTS_PATHS",
    "LLAMACPP",
    "VLLM",
    "ServerFacts",
    "file_label",
    "identity",
    "listed_model",
    "llamacpp_facts",
    "model_info",
    "quantization_from_filename",
    "quantization_from_ftype",
    "server_facts",
    "server_kind",
    "vllm_facts",
]
