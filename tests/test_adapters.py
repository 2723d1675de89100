"""The zoo: parameter counts, forward/backward, masking, inputs consumed, checkpoints."""

import pickle
from pathlib import Path

import pytest
import torch

from adapters.checkpoint import load_adapter, safe_load, save_adapter
from common.errors import CheckpointError
from adapters.losses import batch_objective, next_token_mse, token_alignment
from engine.bench.baseline import padded_level_loss
from adapters.padding import Padding
from adapters.registry import build_adapter, count_parameters, load_registry

PARAMETER_COUNTS = {
    "L1": 2_113_537, "L2": 6_324_227, "L3": 25_188_355, "L4": 100_714_497,
    "L5": 102_819_841, "B1": 102_819_841, "L5F": 169_936_897,
}
H = 64


def small(registry, key):
    torch.manual_seed(0)
    overrides = {"num_heads": 4, "ffn_dim": 128, "bottleneck_dim": 16, "max_seq_len": 32}
    return build_adapter(registry.level(key), H, overrides)


def batch(seed=0, batch_size=3, seq=7):
    g = torch.Generator().manual_seed(seed)
    egpt = torch.randn(batch_size, seq, H, generator=g)
    vl = torch.randn(batch_size, seq, H, generator=g)
    lens = torch.tensor([seq, 4, 1])[:batch_size]
    mask = torch.arange(seq)[None, :] < lens[:, None]
    return egpt, vl, mask


@pytest.mark.parametrize("key", PARAMETER_COUNTS)
def test_parameter_count_at_4096_matches_spec(registry, key):
    count = count_parameters(registry.level(key), 4096)
    assert abs(count - PARAMETER_COUNTS[key]) / PARAMETER_COUNTS[key] <= 0.005
    assert count == PARAMETER_COUNTS[key]


def test_counting_allocates_nothing(registry):
    model = build_adapter(registry.level("L5F"), 4096, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())


@pytest.mark.parametrize("key", list(PARAMETER_COUNTS) + ["L4-2L"])
def test_forward_backward_every_level(tmp_path, key):
    config = tmp_path / "adapters.toml"
    config.write_text(Path("adapters.toml").read_text() if Path("adapters.toml").exists() else
                      (Path(__file__).parent.parent / "adapters.toml").read_text())
    config.write_text(config.read_text() + '\n[levels.L4-2L]\nclass = "AttentionAdapter"\nnum_layers = 2\nnum_heads = 4\n')
    reg = load_registry(config)
    model = small(reg, key)
    egpt, vl, mask = batch()
    pred = model(egpt, vl, mask)
    assert pred.shape == vl.shape
    loss = padded_level_loss(model.predicts_next, pred, vl, mask)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if key == "L4-2L":
        assert len(model.layers) == 2


@pytest.mark.parametrize("key", PARAMETER_COUNTS)
def test_padding_changes_neither_loss_nor_gradients(registry, key):
    model = small(registry, key).eval()
    egpt, vl, mask = batch()

    def loss_and_grads(egpt, vl):
        model.zero_grad()
        loss = padded_level_loss(model.predicts_next, model(egpt, vl, mask), vl, mask)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    base_loss, base_grads = loss_and_grads(egpt, vl)
    noisy = ~mask[..., None]
    egpt2 = torch.where(noisy, torch.randn_like(egpt) * 100, egpt)
    vl2 = torch.where(noisy, torch.randn_like(vl) * 100, vl)
    loss2, grads2 = loss_and_grads(egpt2, vl2)
    torch.testing.assert_close(loss2, base_loss)
    for g1, g2 in zip(base_grads, grads2):
        torch.testing.assert_close(g1, g2)


def test_losses_ignore_nan_at_padding():
    _, vl, mask = batch()
    pred = vl.clone() + 0.1
    pred[~mask] = float("nan")
    assert torch.isfinite(padded_level_loss(False, pred, vl, mask))
    assert torch.isfinite(padded_level_loss(True, pred, vl, mask))


def test_alignment_loss_value():
    pred = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]])
    target = torch.tensor([[[0.0, 1.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, False]])
    # MSE over the valid token = (1 + 1) / 2 = 1; cosine = 0 -> 1 + 0.5 * 1
    assert padded_level_loss(False, pred, target, mask).item() == pytest.approx(1.5)


def test_token_alignment_matches_autograd_of_the_library_losses():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(6, 16, dtype=torch.double, generator=g)
    pred = (target + torch.randn(6, 16, dtype=torch.double, generator=g)).requires_grad_()
    loss, cosine = token_alignment(pred, target)
    cos_ref = torch.nn.functional.cosine_similarity(pred, target, dim=-1)
    loss_ref = torch.nn.functional.mse_loss(pred, target) + 0.5 * (1 - cos_ref.mean())
    torch.testing.assert_close(cosine, cos_ref)
    torch.testing.assert_close(torch.autograd.grad(loss, pred)[0], torch.autograd.grad(loss_ref, pred)[0])
    both = (pred.detach()[:3].requires_grad_(), target[:3].clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda p, t: token_alignment(p, t), both)


def test_token_alignment_stays_fp32_under_bf16_autocast():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(64, 32, generator=g)
    pred = target + 0.4 * torch.randn(64, 32, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer scores batches inside autocast
        _, cosine = token_alignment(pred, target)
    torch.testing.assert_close(cosine, torch.nn.functional.cosine_similarity(pred, target, dim=-1))


def test_b1_reads_only_verifier_states(registry):
    model = small(registry, "B1").eval()
    egpt, vl, mask = batch()
    out = model(egpt, vl, mask)
    torch.testing.assert_close(model(torch.randn_like(egpt), vl, mask), out)
    torch.testing.assert_close(model(None, vl, mask), out)
    assert model.consumes == "verifier"


def test_l5_reads_only_drafter_states(registry):
    model = small(registry, "L5").eval()
    egpt, vl, mask = batch()
    torch.testing.assert_close(model(egpt, torch.randn_like(vl), mask), model(egpt, vl, mask))


def test_l5f_gate_gets_gradient_from_both_inputs(registry):
    model = small(registry, "L5F")
    egpt, vl, mask = batch()
    egpt.requires_grad_(True)
    vl_in = vl.clone().requires_grad_(True)
    loss = padded_level_loss(True, model(egpt, vl_in, mask), vl, mask)
    loss.backward()
    assert model.gate.weight.grad is not None
    half = H
    assert model.gate.weight.grad[:, :half].abs().sum() > 0
    assert model.gate.weight.grad[:, half:].abs().sum() > 0
    assert egpt.grad.abs().sum() > 0 and vl_in.grad.abs().sum() > 0


@pytest.mark.parametrize("key", PARAMETER_COUNTS)
def test_checkpoint_round_trip(tmp_path, registry, key):
    model = small(registry, key).eval()
    path = tmp_path / f"{key}.pt"
    save_adapter(model, path, epoch=3)
    loaded, payload = load_adapter(path)
    egpt, vl, mask = batch()
    torch.testing.assert_close(loaded(egpt, vl, mask), model(egpt, vl, mask), rtol=0, atol=0)
    assert payload["epoch"] == 3 and payload["level"] == key
    assert not list(tmp_path.glob(".*.tmp"))


def test_user_defined_level_checkpoint_rebuilds_without_toml(tmp_path):
    config = tmp_path / "adapters.toml"
    config.write_text('[levels.Mine]\nclass = "AttentionAdapter"\nnum_layers = 3\nnum_heads = 2\nffn_dim = 32\n')
    model = build_adapter(load_registry(config).level("Mine"), H)
    save_adapter(model, tmp_path / "m.pt")
    config.unlink()
    loaded, _ = load_adapter(tmp_path / "m.pt")
    assert len(loaded.layers) == 3 and loaded.level_key == "Mine"


class Sneaky:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"egpt_hidden": torch.zeros(1), "payload": Sneaky()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        safe_load(path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_adapter(path)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(pickle.dumps([1, 2]) + b"junk")
    with pytest.raises(CheckpointError):
        safe_load(path)


@pytest.mark.parametrize("key", ["L1", "L2", "L3"])
def test_per_token_levels_give_the_same_valid_outputs_on_the_padded_batch(registry, key):
    model = small(registry, key).eval()
    egpt, vl, mask = batch()
    tokens = model(egpt, vl, mask)
    full = model.adapt(egpt, Padding(mask))  # every padded position computed, as the seed does
    torch.testing.assert_close(tokens[mask], full[mask])
    assert (tokens[~mask] == 0).all()


@pytest.mark.parametrize("key", PARAMETER_COUNTS)
def test_packed_tokens_give_the_padded_output_at_valid_positions(registry, key):
    model = small(registry, key).eval()
    egpt, vl, mask = batch()
    torch.testing.assert_close(model(egpt[mask], vl[mask], mask, packed=True), model(egpt, vl, mask)[mask])


@pytest.mark.parametrize("key", PARAMETER_COUNTS)
def test_batch_objective_equals_the_padded_level_loss(registry, key):
    model = small(registry, key).eval()
    egpt, vl, mask = batch()
    pred = model(egpt, vl, mask)
    objective = batch_objective(model, model.predicts_next, egpt[mask], vl[mask], mask)
    torch.testing.assert_close(objective.loss, padded_level_loss(model.predicts_next, pred, vl, mask))
    torch.testing.assert_close(objective.cosine, torch.nn.functional.cosine_similarity(pred, vl, dim=-1)[mask])


def test_next_token_mse_pairs_each_token_with_its_successor():
    mask = torch.tensor([[True, True, True], [True, False, False], [True, True, False]])
    pred, target = torch.randn(3, 3, 5), torch.randn(3, 3, 5)
    expected = torch.cat([(pred[0, :2] - target[0, 1:]).pow(2).flatten(), (pred[2, :1] - target[2, 1:2]).pow(2).flatten()]).mean()
    torch.testing.assert_close(next_token_mse(pred[mask], target[mask], mask), expected)
    lonely = torch.tensor([[True, False]])
    assert next_token_mse(torch.ones(1, 5, requires_grad=True), torch.ones(1, 5), lonely).item() == 0.0


def test_padding_round_trip():
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
    padded = torch.arange(9.0).view(3, 3, 1)
    padding = Padding(mask)
    assert padding.gather(padded).flatten().tolist() == [0.0, 1.0, 6.0, 8.0]
    assert padding.positions.tolist() == [0, 1, 0, 2]
    assert padding.scatter(padding.gather(padded)).flatten().tolist() == [0.0, 1.0, 0, 0, 0, 0, 6.0, 0, 8.0]


# -- initialisation and dropout as the reference's -------------------------------------------

def reference_sized(registry, key, hidden=256):
    torch.manual_seed(0)
    return build_adapter(registry.level(key), hidden)


def dropouts(model):
    return sum(isinstance(m, torch.nn.Dropout) for m in model.modules())


@pytest.mark.parametrize("key, count", [("L1", 1), ("L2", 3), ("L3", 6), ("L4", 2), ("L5", 2), ("B1", 2), ("L5F", 2)])
def test_dropout_modules_sit_where_the_reference_has_them(registry, key, count):
    model = reference_sized(registry, key)
    assert dropouts(model) == count
    if key in ("L4", "L5", "B1", "L5F"):  # plus dropout on the attention probabilities, and none after attention
        layer = model.layers[0]
        assert layer.dropout == 0.1 and not hasattr(layer, "resid_dropout")
        assert [type(m).__name__ for m in layer.ffn] == ["Linear", "GELU", "Dropout", "Linear", "Dropout"]
    if key == "L3":  # dropout after the up-projection too
        block = model.blocks[0]
        assert isinstance(block.out_dropout, torch.nn.Dropout) and isinstance(block.dropout, torch.nn.Dropout)


@pytest.mark.parametrize("key", ["L1", "L2", "L3"])
def test_bottleneck_initialisation(registry, key):
    hidden = 256
    model = reference_sized(registry, key, hidden)
    gain = 2 ** 0.5 if key == "L3" else 1.0  # L3: PyTorch's default leaky-ReLU gain, L1/L2: linear
    for block in model.blocks:
        assert block.alpha.item() == pytest.approx(0.1)
        assert block.up.weight.abs().sum() == 0
        assert block.down.weight.std().item() == pytest.approx(gain / hidden ** 0.5, rel=0.03)
        assert block.down.bias is None and block.up.bias is None
    assert len(model.blocks) == (1 if key == "L1" else 3)


@pytest.mark.parametrize("key", ["L4", "L5", "B1", "L5F"])
def test_attention_level_initialisation(registry, key):
    hidden = 256
    model = reference_sized(registry, key, hidden)
    assert model.alpha.item() == pytest.approx(0.1)
    torch.testing.assert_close(model.proj.weight.detach(), torch.eye(hidden))
    assert model.proj.bias.abs().sum() == 0
    layer = model.layers[0]  # as nn.MultiheadAttention initialises its projections
    xavier_std = (6 / (hidden + 3 * hidden)) ** 0.5 / 3 ** 0.5
    assert layer.qkv.weight.std().item() == pytest.approx(xavier_std, rel=0.03)
    assert layer.qkv.bias.abs().sum() == 0 and layer.out.bias.abs().sum() == 0
    if key != "L4":
        positions = model.positions.detach()
        assert positions.std().item() == pytest.approx(0.02, rel=0.03) and positions.abs().max() <= 2.0
    if key == "L5F":
        fuse_std = (6 / (2 * hidden + hidden)) ** 0.5 / 3 ** 0.5
        assert model.fuse.weight.std().item() == pytest.approx(fuse_std, rel=0.03)
        assert model.fuse.bias.abs().sum() == 0


def test_l1_stacks_num_layers_blocks_and_l2_l3_num_blocks(registry):
    from adapters.registry import build_kwargs

    assert len(build_adapter(registry.level("L1"), 64, {"num_layers": 2}).blocks) == 2
    assert len(build_adapter(registry.level("L3"), 64, {"num_blocks": 2}).blocks) == 2
    # as in the reference, L1 takes no num_blocks and L2/L3 no num_layers: they are reported, not used
    assert build_kwargs(registry.level("L1"), {"num_blocks": 5})[1] == ["num_blocks"]
    assert build_kwargs(registry.level("L2"), {"num_layers": 5})[1] == ["num_layers"]


def test_a_version_1_l1_checkpoint_still_loads(tmp_path, registry):
    model = small(registry, "L1").eval()
    save_adapter(model, tmp_path / "v2.pt")
    payload = torch.load(tmp_path / "v2.pt", weights_only=True)
    payload["version"] = 1
    payload["init_kwargs"]["num_blocks"] = payload["init_kwargs"].pop("num_layers")
    torch.save(payload, tmp_path / "v1.pt")
    loaded, _ = load_adapter(tmp_path / "v1.pt")
    egpt, vl, mask = batch()
    torch.testing.assert_close(loaded(egpt, vl, mask), model(egpt, vl, mask))


# -- the reference's checkpoints ---------------------------------------------------------------

@pytest.mark.parametrize("key", ["L1", "L2", "L3", "L4", "L5", "B1", "L5F"])
def test_a_reference_checkpoint_loads_and_computes_what_the_reference_does(tmp_path, key):
    import json

    import reference_models

    reference_models.install_module()
    ref, payload = reference_models.build(key, H)
    run = tmp_path / f"{key}_20260206_183919"
    run.mkdir()
    torch.save(payload, run / "best_model.pt")
    if key == "B1":  # only the run's config says the EAGLE level read the verifier's states
        (run / "config.json").write_text(json.dumps({"task": "train_B1_VLMOnly_EAGLE", "vlm_only": True}))
    model, loaded = load_adapter(run / "best_model.pt")
    assert loaded["format"] == "reference" and loaded["level"] == key and loaded["epoch"] == 7
    assert loaded["metrics"]["accept_90"] == 0.25
    egpt, vl, _ = batch()
    mask = torch.ones(egpt.shape[:2], dtype=torch.bool)  # the reference's own evaluation passes no mask
    with torch.no_grad():
        expected = {"L5F": lambda: ref(egpt, vl), "B1": lambda: ref(vl)}.get(key, lambda: ref(egpt))()
        torch.testing.assert_close(model(egpt, vl, mask), expected, rtol=1e-4, atol=1e-5)


def test_a_reference_checkpoint_with_a_padding_mask_matches_the_reference(tmp_path):
    import reference_models

    ref, payload = reference_models.build("L4", H)
    torch.save(payload, tmp_path / "best_model.pt")
    model, _ = load_adapter(tmp_path / "best_model.pt")
    egpt, vl, mask = batch()
    with torch.no_grad():
        torch.testing.assert_close(model(egpt, vl, mask)[mask], ref(egpt, mask)[mask], rtol=1e-4, atol=1e-5)


def test_a_reference_checkpoint_with_foreign_parameters_is_refused(tmp_path):
    import reference_models

    _, payload = reference_models.build("L4", H)
    payload["model_state_dict"]["token_embed.weight"] = torch.zeros(3, H)
    torch.save(payload, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="'token_embed.weight' is not one of a AttentionAdapter's"):
        load_adapter(tmp_path / "x.pt")


def test_a_malformed_checkpoint_is_one_clear_error(tmp_path, registry):
    model = small(registry, "L4")
    save_adapter(model, tmp_path / "ok.pt")
    payload = torch.load(tmp_path / "ok.pt", weights_only=True)
    for name, change in [("missing", lambda p: p.pop("init_kwargs")),
                         ("kwargs", lambda p: p["init_kwargs"].update(colour=3)),
                         ("empty", lambda p: p.update(state_dict={}))]:
        broken = dict(payload, init_kwargs=dict(payload["init_kwargs"]))
        change(broken)
        torch.save(broken, tmp_path / f"{name}.pt")
        with pytest.raises(CheckpointError) as info:
            load_adapter(tmp_path / f"{name}.pt")
        assert "\n" not in str(info.value)
