"""What every modality adapter shares: the registry, the discrete parts' official parameter names,
records, text forms as capabilities, and no code outside the adapters branching on a name."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hnet_seq.errors import UserError
from hnet_seq.modalities import Record, get_adapter


def test_registry_builds_each_modality_and_rejects_unknown():
    assert {get_adapter(n).unit_name for n in ("dna", "bytes", "audio")} == {"base", "byte", "sample"}
    with pytest.raises(UserError, match="unknown modality 'rna'"):
        get_adapter("rna")
    with pytest.raises(UserError, match="modality 'dna'"):
        get_adapter("dna", colour="blue")


def test_discrete_parts_use_official_parameter_names():
    for name, table in (("dna", 8), ("bytes", 256)):
        adapter = get_adapter(name)
        model = nn.Module()
        model.embeddings, model.lm_head = adapter.make_embedding(16), adapter.make_head(16)
        assert set(model.state_dict()) == {"embeddings.weight", "lm_head.weight"}
        assert model.embeddings.weight.shape == (table, 16) and model.lm_head.weight.shape == (table, 16)
        logits = model.lm_head(model.embeddings(torch.tensor([0, 1, 2, 3])))
        nll = adapter.loss(logits, torch.tensor([1, 2, 3, 4]))
        assert nll.shape == (4,) and (nll > 0).all()


def test_record_dataclass():
    r = Record("x", np.zeros(3, np.uint8))
    assert len(r) == 3 and r.meta == {}


def test_text_forms_are_adapter_capabilities():
    """Typed sequences and prompts go through the adapter; modalities without a text form refuse."""
    from hnet_seq.errors import UserError
    from hnet_seq.modalities import get_adapter

    dna, text, audio = get_adapter("dna"), get_adapter("bytes"), get_adapter("audio")
    assert dna.text_record("AC GT\nn", "s").data.tolist() == [0, 1, 2, 3, 4]
    assert dna.prompt_tokens("ACG").tolist() == [0, 1, 2] and dna.text_of(np.array([3, 2, 4])) == "TGN"
    assert text.prompt_tokens("hé").tolist() == [254, 104, 195, 169]  # BOS + UTF-8, no EOS
    assert text.text_of(text.prompt_tokens("hé")) == "hé" and text.eos_token == 255 and dna.eos_token is None
    assert (dna.double_stranded, dna.genomic, text.double_stranded, text.genomic) == (True, True, False, False)
    with pytest.raises(UserError, match="--sequence: audio input must come from files"):
        audio.text_record("abc", where="--sequence")
    with pytest.raises(UserError, match="at least one base"):
        dna.prompt_tokens(" \n")


def test_no_code_outside_the_adapters_branches_on_a_modality_name():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"""\.name\s*[!=]=\s*["'](dna|bytes|audio)["']""")
    hits = [f"{p.relative_to(root)}:{i}" for folder in ("hnet_seq", "cli") for p in sorted((root / folder).rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
