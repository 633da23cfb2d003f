"""The bytes adapter: invalid UTF-8 round trips, every UDHR file in ../shared/data with its language
tag, JSONL text and language fields."""
from __future__ import annotations

import json

import pytest

from hnet_seq.errors import UserError
from hnet_seq.modalities import get_adapter


def test_bytes_round_trip_including_invalid_utf8(tmp_path):
    raw = "héllo wörld ✓ 漢字".encode() + b"\xff\xfe\xc3\x28\x80 \xfe\xff end"
    (tmp_path / "x.txt").write_bytes(raw)
    ad = get_adapter("bytes")
    rec = next(ad.read_records([tmp_path / "x.txt"]))
    tokens = ad.encode(rec)
    assert tokens[0] == 254 and len(tokens) == len(raw) + 1  # official ByteTokenizer: BOS first
    assert ad.decode(tokens) == raw
    eos = get_adapter("bytes", add_eos=True)
    assert eos.encode(rec)[-1] == 255 and eos.decode(eos.encode(rec)) == raw


def test_every_udhr_file_with_its_language_tag(shared_data):
    folder = shared_data / "text" / "udhr2"
    files = sorted(folder.glob("*.txt"))
    recs = list(get_adapter("bytes").read_records([folder]))
    assert len(recs) == len(files) == 388
    assert [r.meta["lang"] for r in recs] == [f.stem for f in files]
    assert [len(r) for r in recs] == [f.stat().st_size for f in files]
    assert sum(map(len, recs)) == sum(len(f.read_bytes()) for f in files)
    by_lang = {r.meta["lang"]: r for r in recs}
    assert get_adapter("bytes").decode(get_adapter("bytes").encode(by_lang["eng"])).startswith(b"Universal Declaration")


def test_jsonl_text_and_language_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"content": "bonjour", "language": "fra"}) + "\n\n"
                    + json.dumps({"content": "hello"}) + "\n")
    recs = list(get_adapter("bytes", text_field="content", lang_field="language").read_records([path]))
    assert [(r.data.tobytes(), r.meta["lang"]) for r in recs] == [(b"bonjour", "fra"), (b"hello", None)]
    with pytest.raises(UserError, match="c.jsonl:1: no string field 'text'"):
        list(get_adapter("bytes").read_records([path]))
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(UserError, match="bad.jsonl:2: invalid JSON"):
        list(get_adapter("bytes").read_records([tmp_path / "bad.jsonl"]))
