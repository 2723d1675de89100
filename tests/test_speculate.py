"""`adapter-engine speculate` against real tiny causal LMs built here (tests/hf_models.py): the
draft–verify loop is lossless (greedy token for token, sampling in distribution), a perfect
drafter reaches τ = γ+1, a bad one τ ≈ 1, and the whole path from two checkpoints to
speculate.json works. Nothing is downloaded."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support import ROOT, run_cli, wait_for

transformers = pytest.importorskip("transformers", reason="pip install -e '.[extract]'")
pytest.importorskip("tokenizers")

from adapters.base import Adapter  # noqa: E402
from adapters.checkpoint import load_adapter  # noqa: E402
from adapters.zoo import adapter_class  # noqa: E402
from common.errors import UserInputError  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.extract.models import early_exit, load_model  # noqa: E402
from engine.rundir.speculation import parse_speculation, primary, progress_text, read_progress  # noqa: E402
from engine.speculate.loop import (AdapterDrafter, CachedLM, Clock, Sampler, accept_sampled, baseline_decode,  # noqa: E402
                                   speculative_decode)
from engine.speculate.options import SpeculateOptions, parse_gammas  # noqa: E402
from engine.speculate.run import check, measure  # noqa: E402

from hf_models import CORPUS, build_tiny_models  # noqa: E402

CPU = torch.device("cpu")
PROMPTS = ["the quick brown fox", "adapters align", "speculative decoding drafts", "hello world, this"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def trained_run(tiny_models, tmp_path_factory):
    """Self-speculation on the tiny Llama: extract with its first layer as the drafter, train L1."""
    root = tmp_path_factory.mktemp("selfspec")
    prompts = root / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"text": t}) for t in CORPUS[:40]) + "\n")
    llama = tiny_models["llama"]
    assert main(["extract", "--drafter", str(llama), "--verifier", str(llama), "--prompts", str(prompts),
                 "--drafter_layers", "1", "--device", "cpu", str(root / "data")]) == 0
    assert main(["train", "--train_data", str(root / "data" / "train"), "--val_data", str(root / "data" / "val"),
                 "--output_dir", str(root / "runs"), "--level", "L1", "--num_epochs", "3", "--batch_size", "8",
                 "--bottleneck_dim", "16", "--lm_head", str(root / "data" / "lm_head.pt")]) == 0
    extraction = json.loads((root / "data" / "train" / "index.json").read_text())["extraction"]
    assert extraction["drafter_layers"] == 1 and extraction["drafter_model"]["layers"] == 1
    (run,) = (root / "runs").glob("L1/*")
    return {"run": run, "prompts": prompts, "llama": llama, "root": root}


def _write_prompts(path: Path, texts=PROMPTS) -> Path:
    path.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    return path


class Identity(Adapter):
    """A perfect drafter when the drafter's state is the verifier's own."""
    per_token = True

    def adapt(self, tokens, padding):
        return tokens


def _decode(drafter_model, verifier_model, adapter, prompt, gamma, new, temperature=0.0, seed=0):
    clock = Clock(CPU)
    drafter = CachedLM(drafter_model, CPU, -1)
    verifier = CachedLM(verifier_model, CPU)
    return speculative_decode(prompt, drafter, AdapterDrafter(adapter, verifier_model.get_output_embeddings()),
                              verifier, gamma, new, Sampler(temperature, seed, CPU), clock)


# -- the loop ----------------------------------------------------------------------------------

def test_a_perfect_drafter_is_accepted_whole_and_matches_the_verifiers_greedy_decode(tiny_models):
    verifier = load_model(str(tiny_models["llama"]), "--verifier", "fp32", CPU, False)
    drafter = early_exit(verifier, verifier.config.num_hidden_layers)  # K = all layers: the verifier itself
    prompt = [1, 40, 41, 42, 43]
    for gamma in (1, 3, 5):
        new = 4 * (gamma + 1)
        out, stats = _decode(drafter, verifier, Identity(32).eval(), prompt, gamma, new)
        assert out == baseline_decode(prompt, CachedLM(verifier, CPU), new, Clock(CPU))
        assert stats.tau == gamma + 1 and stats.steps == 4
        assert stats.accept_by_position() == [1.0] * gamma


def test_greedy_is_lossless_for_a_poor_drafter_of_another_model(tiny_models):
    """The other Llama's states through an untrained L1: most drafts are wrong, the output is
    still the verifier's own greedy decode, and the verifier adds a token every step."""
    verifier = load_model(str(tiny_models["llama"]), "--verifier", "fp32", CPU, False)
    drafter = load_model(str(tiny_models["llama2"]), "--drafter", "fp32", CPU, False)
    torch.manual_seed(0)
    adapter = adapter_class("BottleneckAdapter")(32, bottleneck_dim=8).eval()
    for prompt in ([1, 50, 60], [1, 7, 8, 9, 10, 11, 12], [1]):
        out, stats = _decode(drafter, verifier, adapter, prompt, 4, 23)
        assert out == baseline_decode(prompt, CachedLM(verifier, CPU), 23, Clock(CPU))
        assert len(out) == 23 and stats.tokens == 23 and 1 <= stats.tau < 2


@pytest.mark.parametrize("level_class", ["AttentionAdapter", "EAGLEAdapter"])
def test_attention_levels_draft_from_the_whole_sequence_and_stay_lossless(tiny_models, level_class):
    verifier = load_model(str(tiny_models["llama"]), "--verifier", "fp32", CPU, False)
    drafter = early_exit(verifier, 1)
    torch.manual_seed(0)
    adapter = adapter_class(level_class)(32, num_heads=4, ffn_dim=32).eval()
    prompt = [1, 50, 60, 70]
    out, stats = _decode(drafter, verifier, adapter, prompt, 3, 17)
    assert out == baseline_decode(prompt, CachedLM(verifier, CPU), 17, Clock(CPU)) and stats.tokens == 17
    # the drafter states kept for the adapter are those of the committed tokens the drafter has read
    helper = AdapterDrafter(adapter, verifier.get_output_embeddings())
    d_lm = CachedLM(drafter, CPU, -1)
    speculative_decode(prompt, d_lm, helper, CachedLM(verifier, CPU), 3, 9, Sampler(0, 0, CPU), Clock(CPU))
    assert helper.states.shape[0] == d_lm.length


def test_early_exit_shares_the_weights_and_leaves_the_model_whole(tiny_models):
    verifier = load_model(str(tiny_models["llama"]), "--verifier", "fp32", CPU, False)
    short = early_exit(verifier, 1)
    assert len(short.model.layers) == 1 and len(verifier.model.layers) == 2
    assert verifier.config.num_hidden_layers == 2
    assert short.model.layers[0].self_attn.q_proj.weight is verifier.model.layers[0].self_attn.q_proj.weight
    gpt2 = load_model(str(tiny_models["gpt2"]), "--drafter", "fp32", CPU, False)
    assert len(early_exit(gpt2, 1).transformer.h) == 1 and len(gpt2.transformer.h) == 2


def _empirical(draw, n, vocab):
    counts = torch.zeros(vocab)
    for _ in range(n):
        counts[draw()] += 1
    return counts / n


def test_rejection_sampling_gives_the_verifiers_distribution():
    """The first committed token follows p whatever the draft distribution q; drafting from q
    and keeping it (no rejection) would give q, which this test tells apart."""
    torch.manual_seed(1)
    vocab, n = 6, 20000
    p_logits, q = torch.randn(3, vocab) * 2, torch.softmax(torch.randn(2, vocab) * 2, -1)
    sampler = Sampler(1.0, 7, CPU)
    p = torch.softmax(p_logits[0], -1)

    def first_token():
        drafts = [sampler.draw(q[0]), sampler.draw(q[1])]
        accepted, bonus = accept_sampled(drafts, list(q), p_logits, sampler)
        return drafts[0] if accepted >= 1 else bonus

    empirical = _empirical(first_token, n, vocab)
    assert (empirical - p).abs().sum() / 2 < 0.02                # total variation, ~4 sigma at n = 20000
    assert (q[0] - p).abs().sum() / 2 > 0.1                      # and q is far from p: the test can tell


def test_sampled_speculation_on_a_real_model_follows_the_verifiers_next_token_distribution(tiny_models):
    """The first sampled token, bucketed into the verifier's five likeliest tokens and the rest,
    follows the verifier's distribution, not the (far) draft distribution."""
    verifier = load_model(str(tiny_models["llama"]), "--verifier", "fp32", CPU, False)
    drafter = load_model(str(tiny_models["llama2"]), "--drafter", "fp32", CPU, False)
    torch.manual_seed(0)
    adapter = adapter_class("BottleneckAdapter")(32, bottleneck_dim=8).eval()
    prompt, temperature = [1, 50, 60], 0.02  # the tiny model's logits are flat: sharpen them
    head = AdapterDrafter(adapter, verifier.get_output_embeddings())
    d_lm, v_lm = CachedLM(drafter, CPU, -1), CachedLM(verifier, CPU)
    with torch.no_grad():
        p = torch.softmax(verifier(torch.tensor([prompt])).logits[0, -1] / temperature, -1)
        d_lm.reset(), head.reset()
        head.add(d_lm.feed(prompt))
        q = torch.softmax(head.logits() / temperature, -1)
    top = p.topk(5).indices

    def buckets(dist):
        return torch.cat([dist[top], (1 - dist[top].sum()).reshape(1)])

    n, clock, sampler = 800, Clock(CPU), Sampler(temperature, 3, CPU)
    firsts = [speculative_decode(prompt, d_lm, head, v_lm, 2, 2, sampler, clock)[0][0] for _ in range(n)]
    empirical = torch.bincount(torch.tensor(firsts), minlength=p.shape[0]).float() / n
    assert (buckets(empirical) - buckets(p)).abs().sum() / 2 < 0.08
    assert (buckets(q) - buckets(p)).abs().sum() / 2 > 0.3


# -- the command -------------------------------------------------------------------------------

def test_self_speculation_from_extract_to_speculate_json(trained_run):
    run, llama = trained_run["run"], trained_run["llama"]
    out = run_cli("speculate", run, "--drafter", llama, "--verifier", llama, "--drafter_layers", "1",
                  "--prompts", trained_run["prompts"], "--samples", "4", "--max_new_tokens", "12",
                  "--gamma", "1,3", "--warmup", "1", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert "speedup" in out.stdout and "speculate.json" in out.stdout
    printed = run_cli("speculate", run, "--samples", "1", "--max_new_tokens", "4", "--gamma", "1", "--warmup", "0",
                      "--device", "cpu", "--json", check=True)
    assert json.loads(printed.stdout)["prompts_count"] == 1  # stdout is the document alone
    out = run_cli("speculate", run, "--drafter", llama, "--verifier", llama, "--drafter_layers", "1",
                  "--prompts", trained_run["prompts"], "--samples", "4", "--max_new_tokens", "12",
                  "--gamma", "1,3", "--warmup", "1", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    result = json.loads((run / "speculate.json").read_text())
    assert result["gamma"] == 1 and set(result["per_gamma"]) == {"1", "3"}
    assert result["self_speculation"] and result["drafter"]["drafter_layers"] == 1
    assert len(result["prompts_sha256"]) == 64 and result["prompts_count"] == 4
    for gamma, row in result["per_gamma"].items():
        assert row["greedy_parity"] is True and row["parity_failures"] == []
        assert 1 <= row["tau"] <= int(gamma) + 1 and row["tokens_generated"] == 4 * 12
        assert row["speedup"] > 0 and row["baseline_tokens_per_s"] > 0
        assert len(row["accept_by_position"]) == int(gamma)
        assert set(row["time_s"]) == {"drafter", "adapter", "verifier", "overhead", "total"}
        assert sum(row["time_s"][k] for k in ("drafter", "adapter", "verifier", "overhead")) == \
            pytest.approx(row["time_s"]["total"], rel=1e-6)
    figures = parse_speculation(result)
    assert primary(result, figures).gamma == 1 and figures[3].tau == result["per_gamma"]["3"]["tau"]
    assert read_progress(run)["state"] == "done" and progress_text(read_progress(run)).startswith("4/4 prompts")
    listed = json.loads(run_cli("runs", run.parent.parent, "--json", check=True).stdout)
    assert listed[0]["speedup_measured"] == pytest.approx(result["per_gamma"]["1"]["speedup"])
    assert listed[0]["tau"] == pytest.approx(result["per_gamma"]["1"]["tau"])
    table = run_cli("runs", run.parent.parent, "--md", "--sort", "speedup_measured", "--where", "tau>=1", check=True)
    assert "Speedup (measured)" in table.stdout and run.name in table.stdout
    assert run.name not in run_cli("runs", run.parent.parent, "--where", "tau>99", check=True).stdout


@pytest.mark.parametrize("argv, needle", [
    (["--gamma", "0"], "--gamma '0': each draft length must be from 1"),
    (["--gamma", "a,b"], "--gamma 'a,b': give a draft length"),
    (["--drafter_layers", "7"], "--drafter_layers 7: the drafter has 2 decoder layers"),
    (["--layer", "9"], "--layer 9: the drafter has"),
    (["--max_new_tokens", "500"], "exceeds the drafter's 128 positions"),
    (["--temperature", "-1"], "--temperature must be 0"),
])
def test_bad_options_are_one_line_and_write_nothing(trained_run, argv, needle):
    run, llama = trained_run["run"], trained_run["llama"]
    before = sorted(p.name for p in run.iterdir())
    out = run_cli("speculate", run, "--drafter", llama, "--verifier", llama, "--prompts", trained_run["prompts"],
                  "--device", "cpu", *argv)
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.slow
def test_pairs_a_draft_cannot_serve_are_refused_before_loading_weights(trained_run, tiny_models, tmp_path):
    run, llama = trained_run["run"], trained_run["llama"]
    base = SpeculateOptions(str(run), str(llama), str(llama), str(trained_run["prompts"]), device="cpu")
    with pytest.raises(UserInputError, match="tokenizers differ"):
        check(SpeculateOptions(str(run), str(tiny_models["gpt2"]), str(llama), base.prompts, device="cpu"))
    with pytest.raises(UserInputError, match="hidden size is 48"):
        check(SpeculateOptions(str(run), str(tiny_models["wide"]), str(llama), base.prompts, device="cpu"))
    with pytest.raises(UserInputError, match="does not exist"):
        check(SpeculateOptions(str(tmp_path / "nope"), str(llama), str(llama), base.prompts, device="cpu"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(UserInputError, match="holds no sample"):
        check(SpeculateOptions(str(run), str(llama), str(llama), str(empty), device="cpu"))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserInputError, match="cannot be read"):
        check(SpeculateOptions(str(run), str(llama), str(llama), str(latin), device="cpu"))
    for level in ("B1", "L5F"):  # they read the verifier's states: no draft can
        level_run = tmp_path / level
        assert main(["train", "--train_data", str(trained_run["root"] / "data" / "train"), "--output_dir",
                     str(tmp_path / "runs"), "--level", level, "--num_epochs", "1", "--num_heads", "4",
                     "--ffn_dim", "32"]) == 0
        (level_run,) = (tmp_path / "runs").glob(f"{level}/*")
        with pytest.raises(UserInputError, match=f"{level} cannot draft"):
            check(SpeculateOptions(str(level_run), str(llama), str(llama), base.prompts, device="cpu"))


@pytest.mark.slow
def test_a_bad_adapter_gives_tau_near_one_and_no_speedup(trained_run, tmp_path):
    """An adapter that maps everything to one vector drafts one token over and over: the
    verifier rejects nearly all of it, and the loop pays for drafting in vain."""
    from adapters.checkpoint import atomic_torch_save, safe_load

    run, llama = trained_run["run"], trained_run["llama"]
    bad = tmp_path / "bad_run"
    bad.mkdir()
    payload = safe_load(run / "best_model.pt")
    payload["state_dict"] = {k: (torch.zeros_like(v) if "final_norm.weight" in k else v)
                             for k, v in payload["state_dict"].items()}
    atomic_torch_save(payload, bad / "best_model.pt")
    model, _ = load_adapter(bad / "best_model.pt")
    assert model is not None
    plan = check(SpeculateOptions(str(bad), str(llama), str(llama), str(trained_run["prompts"]), drafter_layers=1,
                                  samples=4, max_new_tokens=24, gamma="5", warmup=1, device="cpu"))
    row = measure(plan)["per_gamma"]["5"]
    assert row["greedy_parity"] is True
    assert row["tau"] < 1.5 and row["speedup"] < 1


@pytest.mark.slow
def test_sigterm_leaves_no_half_written_speculate_json(trained_run, tmp_path):
    run, llama = trained_run["run"], trained_run["llama"]
    many = _write_prompts(tmp_path / "many.jsonl", CORPUS[:40])
    target = tmp_path / "run"
    target.mkdir()
    (target / "best_model.pt").write_bytes((run / "best_model.pt").read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "engine", "speculate", str(target), "--drafter", str(llama),
                             "--verifier", str(llama), "--drafter_layers", "1", "--prompts", str(many),
                             "--max_new_tokens", "48", "--warmup", "0", "--device", "cpu"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (read_progress(target) or {}).get("prompts_done", 0) >= 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err
    assert not (target / "speculate.json").exists()
    assert read_progress(target)["state"] == "cancelled"
    assert not [p for p in os.listdir(target) if p.startswith(".") or p.endswith(".tmp")]


def test_the_models_and_prompts_default_to_what_extract_recorded(trained_run, tmp_path):
    from engine.commands.speculate import parse_options

    run = trained_run["run"]
    options = parse_options([str(run), "--gamma", "3"])
    assert (options.drafter, options.verifier) == (str(trained_run["llama"]), str(trained_run["llama"]))
    assert options.prompts == str(trained_run["prompts"]) and options.drafter_layers == 1 and options.layer == -1
    assert parse_options([str(run), "--drafter_layers", "2"]).drafter_layers == 2  # a flag wins
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "best_model.pt").write_bytes((run / "best_model.pt").read_bytes())
    out = run_cli("speculate", bare)
    assert out.returncode == 2 and "give --drafter" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_options_round_trip_through_the_command_line():
    from engine.commands.speculate import parse_options

    options = SpeculateOptions("run dir", "a", "b", "p.jsonl", layer=-2, drafter_layers=3, gamma="1,3", samples=5,
                               temperature=0.7, trust_remote_code=True)
    assert parse_options(options.as_argv()) == options
    assert SpeculateOptions.from_dict(options.as_dict()) == options
    assert parse_gammas("5,1,5") == (5, 1)
    for garbage in (None, [], {"run": "a"}):
        with pytest.raises(UserInputError, match="queue it again"):
            SpeculateOptions.from_dict(garbage)


@pytest.mark.slow
def test_a_speculation_runs_as_a_queue_job_with_progress(trained_run, tmp_path):
    from engine.queue import JobQueue
    from tui.widgets.queue import jobs_progress

    run, llama = trained_run["run"], trained_run["llama"]
    target = tmp_path / "run"
    target.mkdir()
    (target / "best_model.pt").write_bytes((run / "best_model.pt").read_bytes())
    runs = tmp_path / "runs"
    spec = ["--drafter", llama, "--verifier", llama, "--drafter_layers", "1", "--prompts", trained_run["prompts"],
            "--samples", "3", "--max_new_tokens", "8", "--warmup", "0", "--device", "cpu", target]
    bad = run_cli("queue", "add", "--runs", runs, "--speculate", *spec[:-1], "--gamma", "0", target)
    assert bad.returncode == 2 and "--gamma" in bad.stderr and not (runs / "queue.db").exists()
    added = run_cli("queue", "add", "--runs", runs, "--speculate", *spec)
    assert added.returncode == 0, added.stderr
    twice = run_cli("queue", "add", "--runs", runs, "--speculate", *spec)
    assert twice.returncode == 2 and "already measures" in twice.stderr
    worker = run_cli("queue", "worker", "--runs", runs, "--exit-when-idle", timeout=300)
    assert worker.returncode == 0, worker.stderr
    with JobQueue(runs) as q:
        (job,) = q.jobs()
    assert (job.level, job.state) == ("speculate", "done")
    assert (target / "speculate.json").is_file()
    assert jobs_progress([job])[job.id].startswith("3/3 prompts, τ ")
    assert "3/3 prompts" in run_cli("queue", "ls", "--runs", runs, check=True).stdout
