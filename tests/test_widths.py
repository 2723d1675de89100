"""Adapters between models of different widths: drafter Hd → verifier Hv (issue 24).

At Hd == Hv nothing may change; at Hd ≠ Hv every level maps Hd to Hv and trains."""

import pytest
import torch

from adapters.checkpoint import adapter_payload, load_adapter, save_adapter, widths
from adapters.registry import build_adapter, count_parameters
from common.text import widths_text

LEVELS = ["L1", "L2", "L3", "L4", "L5", "B1", "L5F"]
HD, HV = 24, 40
OVERRIDES = {"num_heads": 4, "ffn_dim": 32, "bottleneck_dim": 8, "max_seq_len": 16}


def streams(seed=0, batch_size=3, seq=6, hd=HD, hv=HV):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([seq, 3, 1])[:batch_size]
    mask = torch.arange(seq)[None, :] < lens[:, None]
    return torch.randn(batch_size, seq, hd, generator=g), torch.randn(batch_size, seq, hv, generator=g), mask


@pytest.mark.parametrize("key", LEVELS)
def test_every_level_maps_the_drafter_width_to_the_verifier_width_and_trains(registry, key):
    torch.manual_seed(0)
    model = build_adapter(registry.level(key), HV, OVERRIDES, drafter_dim=HD)
    egpt, vl, mask = streams()
    pred = model(egpt, vl, mask)
    assert pred.shape == vl.shape
    pred[mask].pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    proj = getattr(model, "input_proj", None)
    if key == "B1":  # reads the verifier: no projection, exactly L5 at Hv
        assert proj is None
        assert count_parameters(registry.level(key), HV, OVERRIDES, drafter_dim=HD) == \
            count_parameters(registry.level(key), HV, OVERRIDES)
    else:
        assert proj.weight.shape == (HV, HD) and proj.weight.grad.abs().sum() > 0
        extra = count_parameters(registry.level(key), HV, OVERRIDES, drafter_dim=HD) - \
            count_parameters(registry.level(key), HV, OVERRIDES)
        assert extra == HD * HV


@pytest.mark.parametrize("key", LEVELS)
def test_equal_widths_change_nothing(registry, key):
    """Same modules, parameter names, initial values and arguments with drafter_dim == hidden_dim."""
    torch.manual_seed(1)
    plain = build_adapter(registry.level(key), HV, OVERRIDES)
    torch.manual_seed(1)
    explicit = build_adapter(registry.level(key), HV, OVERRIDES, drafter_dim=HV)
    assert repr(plain) == repr(explicit)
    assert plain.init_kwargs == explicit.init_kwargs and "drafter_dim" not in explicit.init_kwargs
    a, b = plain.state_dict(), explicit.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_the_projection_starts_as_an_isometry_of_the_drafter_states(registry):
    model = build_adapter(registry.level("L1"), HV, OVERRIDES, drafter_dim=HD)
    w = model.input_proj.weight
    assert torch.allclose(w.T @ w, torch.eye(HD), atol=1e-5)  # Hd < Hv: lengths kept


def test_l5f_gates_the_projected_drafter_stream(registry):
    torch.manual_seed(0)
    model = build_adapter(registry.level("L5F"), HV, OVERRIDES, drafter_dim=HD).eval()
    egpt, vl, mask = streams()
    seen = {}
    model.gate.register_forward_hook(lambda m, args, out: seen.update(gate_in=args[0]))
    model(egpt, vl, mask)
    assert seen["gate_in"].shape[-1] == 2 * HV


def test_counts_at_4096_with_a_2048_drafter(registry):
    counts = {key: count_parameters(registry.level(key), 4096, drafter_dim=2048) for key in LEVELS}
    assert counts["L1"] == 2_113_537 + 2048 * 4096
    assert counts["B1"] == 102_819_841
    assert counts["L5F"] == 169_936_897 + 2048 * 4096


def test_checkpoints_record_both_widths_and_rebuild(tmp_path, registry):
    torch.manual_seed(0)
    model = build_adapter(registry.level("L5"), HV, OVERRIDES, drafter_dim=HD).eval()
    save_adapter(model, tmp_path / "m.pt")
    loaded, payload = load_adapter(tmp_path / "m.pt")
    assert widths(payload) == (HD, HV) and (payload["drafter_dim"], payload["hidden_dim"]) == (HD, HV)
    egpt, vl, mask = streams()
    assert torch.equal(loaded(egpt, vl, mask), model(egpt, vl, mask))
    same = adapter_payload(build_adapter(registry.level("L5"), HV, OVERRIDES))
    assert widths(same) == (HV, HV) and "drafter_dim" not in same["init_kwargs"]


def test_widths_text():
    assert widths_text(4096, 4096) == "4096"
    assert widths_text(2048, 4096) == "2048→4096"
    assert widths_text(None, 4096) == "4096"
    assert widths_text(2048, None) == "?"
