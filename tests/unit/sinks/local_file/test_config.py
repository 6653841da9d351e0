"""``sinks.local_file``: the encoding block and the text output exclude each other."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from log_capturer.sinks.local_file.config import LocalFileSinkConfig


def test_encoding_with_text_output_names_both_keys_and_the_fix() -> None:
    with pytest.raises(ValidationError) as err:
        LocalFileSinkConfig.model_validate({"output_format": "text", "encoding": {"codec": "raw"}})
    text = str(err.value)
    assert "sinks.local_file.encoding and sinks.local_file.output_format: text" in text
    assert "keep one" in text and "raw_message_only" in text


def test_the_default_is_the_json_envelope_and_text_keeps_working() -> None:
    assert LocalFileSinkConfig().encoding.envelope
    assert LocalFileSinkConfig.model_validate({"output_format": "text"}).output_format == "text"
    cfg = LocalFileSinkConfig.model_validate({"encoding": {"codec": "logfmt", "only_fields": ["labels.app"]}})
    assert cfg.encoding.selected == ("labels",)


def test_a_bad_encoding_is_refused_with_its_key() -> None:
    with pytest.raises(ValidationError) as err:
        LocalFileSinkConfig.model_validate({"encoding": {"codec": "raw", "only_fields": ["message"]}})
    assert "encoding.only_fields does not apply to codec: raw" in str(err.value)
