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


# -- data, training, evaluation and the command line at two widths ----------------------------

def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture(scope="module")
def two_width_data(tmp_path_factory):
    from support import make_synth

    root = tmp_path_factory.mktemp("widths")
    make_synth(root / "narrow", hidden_dim=HV, drafter_dim=HD, samples=48, val_samples=16, max_seq=8,
               chunk_size=16, lm_head=True)
    make_synth(root / "equal", hidden_dim=HV, samples=48, val_samples=16, max_seq=8, chunk_size=16)
    return root


def test_datasets_record_both_widths_through_inspect_pack_and_every_chunk(two_width_data, tmp_path):
    import json

    from engine.data.dataset import load_chunk, open_dataset
    from engine.data.inspect import inspect_dataset
    from engine.data.pack import pack
    from support import run_cli

    train = two_width_data / "narrow" / "train"
    index = json.loads((train / "index.json").read_text())
    assert (index["drafter_dim"], index["hidden_dim"]) == (HD, HV)
    info = inspect_dataset(train, deep=True)
    assert (info["drafter_dim"], info["hidden_dim"]) == (HD, HV)
    assert "hidden 24→40" in run_cli("data", "inspect", train, check=True).stdout
    pack(train, tmp_path / "packed", "fp32")
    for path in (train, tmp_path / "packed"):
        dataset = open_dataset(path)
        assert dataset.widths == (HD, HV)
        for ref in dataset.chunks:
            chunk = load_chunk(ref, dataset.widths)
            assert chunk.egpt.shape[-1] == HD and chunk.vl.shape[-1] == HV
    equal = open_dataset(two_width_data / "equal" / "train")
    assert equal.widths == (HV, HV)


def test_training_reads_the_widths_from_the_data_and_refuses_weights_of_other_widths(two_width_data, tmp_path, capsys):
    import json

    from engine.cli import main
    from engine.rundir.summary import summarize

    narrow, equal, runs = two_width_data / "narrow", two_width_data / "equal", tmp_path / "runs"
    assert main(["train", "--level", "L1", "--train_data", str(narrow / "train"), "--val_data", str(narrow / "val"),
                 "--num_epochs", "1", "--batch_size", "16", "--lm_head", str(narrow / "lm_head.pt"),
                 "--output_dir", str(runs), "--device", "cpu"]) == 0
    (run,) = runs.glob("L1/*")
    adapter = json.loads((run / "config.json").read_text())["adapter"]
    assert (adapter["drafter_dim"], adapter["hidden_dim"]) == (HD, HV)
    assert adapter["params"] == count_parameters(registry_level("L1"), HV, drafter_dim=HD)
    row = summarize(run)
    assert (row.drafter_dim, row.hidden_dim) == (HD, HV) and row.as_dict()["drafter_dim"] == HD
    _, payload = load_adapter(run / "best_model.pt")
    assert widths(payload) == (HD, HV)
    capsys.readouterr()
    assert main(["checkpoint", str(run)]) == 0
    assert "widths: drafter 24 → verifier 40" in capsys.readouterr().out

    before = _listing(runs)
    refusals = [
        (["train", "--level", "L1", "--train_data", str(equal / "train"), "--val_data", str(equal / "val"),
          "--init_from", str(run), "--output_dir", str(runs), "--device", "cpu"],
         "its weights map hidden size 24→40 but the data's is 40"),
        (["train", "--level", "L1", "--train_data", str(narrow / "train"), "--val_data", str(equal / "val"),
          "--output_dir", str(runs), "--device", "cpu"],
         "train hidden size 24→40 and val hidden size 40 differ"),
        (["eval", str(run), "--data", str(equal / "val")], "but the checkpoint maps 24→40"),
    ]
    for argv, needle in refusals:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert _listing(runs) == before  # nothing written


def registry_level(key):
    from adapters.registry import load_registry

    return load_registry().level(key)


def test_levels_counts_at_a_drafter_width(capsys):
    import json

    from engine.cli import main

    assert main(["levels", "--hidden_dim", "4096", "--drafter_dim", "2048", "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["L1"]["params"] == 2_113_537 + 2048 * 4096 and rows["L1"]["drafter_dim"] == 2048
    assert rows["B1"]["params"] == 102_819_841  # B1 reads the verifier alone
    assert main(["levels", "--json"]) == 0
    same = {row["key"]: row["params"] for row in json.loads(capsys.readouterr().out)}
    assert same["L1"] == 2_113_537 and same["L5F"] == 169_936_897
    assert main(["levels", "--drafter_dim", "0"]) == 2
    assert "--drafter_dim must be between 1" in capsys.readouterr().err


# -- two real models of different widths and tokenizers ----------------------------------------

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("transformers", reason="pip install -e '.[extract]'")
    from hf_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("models"))


def _prompts(path, count=40):
    import json

    from hf_models import CORPUS

    path.write_text("\n".join(json.dumps({"text": f"{t} {i}"}) for i, t in enumerate(CORPUS[:count])) + "\n")
    return path


@pytest.mark.slow
def test_llama_32_to_gpt2_48_extract_train_every_level_and_evaluate_with_the_verifiers_head(tiny_models, tmp_path,
                                                                                          capsys):
    import json

    from engine.cli import main
    from engine.data.dataset import open_dataset

    data, runs = tmp_path / "data", tmp_path / "runs"
    assert main(["extract", "--drafter", str(tiny_models["llama"]), "--verifier", str(tiny_models["wide"]),
                 "--prompts", str(_prompts(tmp_path / "p.jsonl")), "--device", "cpu", str(data)]) == 0
    assert open_dataset(data / "train").widths == (32, 48) and open_dataset(data / "val").widths == (32, 48)
    for key in LEVELS:
        assert main(["train", "--level", key, "--train_data", str(data / "train"), "--val_data", str(data / "val"),
                     "--num_epochs", "1", "--batch_size", "8", "--num_heads", "4", "--ffn_dim", "32",
                     "--lm_head", str(data / "lm_head.pt"), "--output_dir", str(runs), "--device", "cpu"]) == 0, key
        (run,) = runs.glob(f"{key}/*")
        assert widths(load_adapter(run / "best_model.pt")[1]) == (32, 48)
        capsys.readouterr()
        assert main(["eval", str(run), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert 0.0 <= result["token_top1_match"] <= 1.0 and result["tokens"] > 0


@pytest.mark.slow
def test_a_narrow_drafter_speculates_for_a_wide_verifier_losslessly(tiny_models, tmp_path):
    import json

    from engine.cli import main

    drafter, verifier = str(tiny_models["llama"]), str(tiny_models["llama_wide"])
    prompts, data, runs = _prompts(tmp_path / "p.jsonl"), tmp_path / "data", tmp_path / "runs"
    assert main(["extract", "--drafter", drafter, "--verifier", verifier, "--prompts", str(prompts),
                 "--device", "cpu", str(data)]) == 0
    assert main(["train", "--level", "L1", "--train_data", str(data / "train"), "--val_data", str(data / "val"),
                 "--num_epochs", "2", "--batch_size", "8", "--bottleneck_dim", "16", "--output_dir", str(runs),
                 "--device", "cpu"]) == 0
    (run,) = runs.glob("L1/*")
    assert main(["speculate", str(run), "--samples", "3", "--max_new_tokens", "8", "--gamma", "2",
                 "--warmup", "0", "--device", "cpu"]) == 0  # the models and prompts extract recorded
    result = json.loads((run / "speculate.json").read_text())
    row = result["per_gamma"]["2"]
    assert row["greedy_parity"] is True and 1 <= row["tau"] <= 3 and row["tokens_generated"] == 3 * 8
    assert main(["speculate", str(run), "--drafter", verifier, "--verifier", verifier, "--samples", "1",
                 "--device", "cpu"]) == 2  # a 48-wide drafter for an adapter that reads 32
