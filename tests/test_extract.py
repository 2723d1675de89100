"""`adapter-engine extract` against two real (tiny) causal LMs built here: a 2-layer Llama-style
model with a byte-level BPE tokenizer and a 2-layer GPT-2-style model with a WordPiece one, both
trained in the test with `tokenizers` and saved with `save_pretrained`. Nothing is downloaded."""

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from support import ROOT, run_cli, wait_for

transformers = pytest.importorskip("transformers", reason="pip install -e '.[extract]'")
tokenizers = pytest.importorskip("tokenizers")

from common.errors import UserInputError  # noqa: E402
from engine.data import open_dataset  # noqa: E402
from engine.data.dataset import load_chunk  # noqa: E402
from engine.extract.align import align, token_ends  # noqa: E402
from engine.extract.options import LM_HEAD, STATE, STATUS, ExtractOptions, progress_text, read_status  # noqa: E402
from engine.extract.run import check, extract  # noqa: E402

from hf_models import CORPUS, NOVEL, build_tiny_models, save  # noqa: E402


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.mktemp("models"))


def _prompts(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    return path


def _options(tmp_path, drafter, verifier, texts=CORPUS[:8] + NOVEL, **kw) -> ExtractOptions:
    prompts = _prompts(tmp_path / "prompts.jsonl", texts)
    return ExtractOptions(drafter=str(drafter), verifier=str(verifier), prompts=str(prompts),
                          out=str(tmp_path / "data"), device="cpu", **kw)


def _samples(directory: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    dataset = open_dataset(directory)
    rows = []
    for ref in dataset.chunks:
        chunk = load_chunk(ref, dataset.widths)
        if chunk.egpt.dim() == 3:  # chunked: padded rows
            rows += [(chunk.egpt[i, :n], chunk.vl[i, :n]) for i, n in enumerate(chunk.seq_lens.tolist())]
        else:  # packed: tokens back to back
            starts = torch.cumsum(chunk.seq_lens, 0) - chunk.seq_lens
            rows += [(chunk.egpt[s:s + n], chunk.vl[s:s + n]) for s, n in zip(starts.tolist(), chunk.seq_lens.tolist())]
    return rows


# -- alignment (pure) --------------------------------------------------------------------------

def test_alignment_keeps_positions_where_both_tokenizers_end_a_token_at_the_same_character():
    drafter = [(0, 0), (0, 5), (5, 11), (11, 12)]            # <s> "hello" " world" ","
    verifier = [(0, 0), (0, 3), (3, 5), (6, 11), (11, 12)]   # <s> "hel" "lo" "world" ","
    assert align(drafter, verifier) == [(1, 2), (2, 3), (3, 4)]
    assert align(drafter, drafter) == [(1, 1), (2, 2), (3, 3)]
    # bytes of one character (the same end): the last token, which has seen the whole character
    assert token_ends([(0, 1), (0, 1), (1, 2)]) == {1: 1, 2: 2}


def test_options_round_trip_through_the_command_line():
    from engine.commands.extract import parse_options

    options = ExtractOptions("a", "b", "p.jsonl", "out dir", layer=-2, samples=5, store="bf16", format="packed",
                             trust_remote_code=True, register="x")
    assert parse_options(options.as_argv()) == options
    with pytest.raises(UserInputError, match="--extract: .*--dtype"):
        parse_options(["--drafter", "a", "--verifier", "b", "--prompts", "p", "o", "--dtype", "fp8"])
    assert ExtractOptions.from_dict(options.as_dict()) == options
    for garbage in (None, [], {"drafter": "a"}, {**options.as_dict(), "out": 3}):  # a job's stored options
        with pytest.raises(UserInputError, match="incomplete"):
            ExtractOptions.from_dict(garbage)


# -- the real extract path ---------------------------------------------------------------------

def test_identical_tokenizers_align_exactly_and_store_each_models_last_hidden_state(tmp_path, tiny_models):
    options = _options(tmp_path, tiny_models["llama"], tiny_models["llama2"], chunk_size=3, batch_size=4)
    extraction = extract(check(options))
    out = Path(options.out)
    assert extraction["alignment_rate"] == 1.0
    assert read_status(out)["state"] == "done" and not (out / STATE).exists()

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_models["llama"])
    drafter = transformers.AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).eval()
    verifier = transformers.AutoModelForCausalLM.from_pretrained(tiny_models["llama2"]).eval()
    train, val = open_dataset(out / "train"), open_dataset(out / "val")
    assert (train.num_samples, val.num_samples, train.hidden_dim) == (11, 1, 32)
    index = json.loads((out / "train" / "index.json").read_text())
    assert index["extraction"]["drafter_model"]["model_type"] == "llama"
    assert index["extraction"]["layer"] == -1 and index["extraction"]["store"] == "fp32"

    # every stored sample is a prompt's text tokens (no BOS), hidden_states[-1] of each model
    texts = CORPUS[:8] + NOVEL
    by_length = {}
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            d = drafter(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, 1:]
            v = verifier(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, 1:]
        by_length.setdefault(d.shape[0], []).append((d, v))
    stored = _samples(out / "train") + _samples(out / "val")
    assert sorted(len(d) for d, _ in stored) == sorted(n for n, pairs in by_length.items() for _ in pairs)
    for d, v in stored:
        assert any(torch.allclose(d, d_ref, atol=1e-5) and torch.allclose(v, v_ref, atol=1e-5)
                   for d_ref, v_ref in by_length[len(d)])
    head = torch.load(out / LM_HEAD, weights_only=True)["lm_head_weight"]
    assert torch.equal(head, verifier.lm_head.weight.detach())


def test_different_tokenizers_align_through_character_offsets(tmp_path, tiny_models):
    options = _options(tmp_path, tiny_models["llama"], tiny_models["gpt2"], texts=NOVEL * 2)
    extraction = extract(check(options))
    assert 0 < extraction["alignment_rate"] < 1
    d_tok = transformers.AutoTokenizer.from_pretrained(tiny_models["llama"])
    v_tok = transformers.AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    lengths = sorted(len(align(d_tok(t, return_offsets_mapping=True)["offset_mapping"],
                               v_tok(t, return_offsets_mapping=True)["offset_mapping"])) for t in NOVEL * 2)
    stored = _samples(Path(options.out) / "train") + _samples(Path(options.out) / "val")
    assert sorted(len(d) for d, _ in stored) == lengths
    assert json.loads((Path(options.out) / STATUS).read_text())["alignment_rate"] == extraction["alignment_rate"]


def test_chat_messages_are_rendered_with_the_verifiers_chat_template(tmp_path, tiny_models):
    verifier = tmp_path / "chat"
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_models["llama"])
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    tokenizer.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    save(model, tokenizer, verifier)
    prompts = tmp_path / "chat.jsonl"
    prompts.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": t}]}) for t in NOVEL) + "\n")
    options = ExtractOptions(str(tiny_models["llama"]), str(verifier), str(prompts), str(tmp_path / "data"),
                             device="cpu")
    extract(check(options))
    rendered = [f"<s>user: {t}\n" for t in NOVEL]  # the template writes BOS: the tokenizer must not add another
    encoded = [tokenizer(r, return_offsets_mapping=True, add_special_tokens=False) for r in rendered]
    assert all(e["input_ids"].count(tokenizer.bos_token_id) == 1 for e in encoded)
    expected = []
    for e in encoded:
        with torch.no_grad():
            output = model.eval()(input_ids=torch.tensor([e["input_ids"]]), output_hidden_states=True)
        states = output.hidden_states[-1][0]
        expected.append(states[sorted(token_ends(e["offset_mapping"]).values())])
    stored = [v for _, v in _samples(tmp_path / "data" / "train") + _samples(tmp_path / "data" / "val")]
    assert sorted(map(len, stored)) == sorted(map(len, expected))
    for v in stored:  # the states of the text as rendered, with one BOS
        assert any(len(ref) == len(v) and torch.allclose(v, ref, atol=1e-5) for ref in expected)

    with pytest.raises(UserInputError, match="no chat template"):
        check(replace(options, verifier=str(tiny_models["llama"]), out=str(tmp_path / "other")))


def test_bf16_storage_in_the_packed_format_holds_the_fp32_values(tmp_path, tiny_models):
    fp32 = _options(tmp_path, tiny_models["llama"], tiny_models["gpt2"])
    packed = replace(fp32, out=str(tmp_path / "packed"), store="bf16", format="packed")
    extract(check(fp32))
    extract(check(packed))
    index = json.loads((tmp_path / "packed" / "train" / "index.json").read_text())
    assert index["format"] == "packed" and index["dtype"] == "bfloat16" and index["extraction"]["store"] == "bf16"
    for (d32, v32), (d16, v16) in zip(_samples(Path(fp32.out) / "train"), _samples(tmp_path / "packed" / "train")):
        assert d16.dtype == torch.bfloat16
        assert torch.allclose(d16.float(), d32, rtol=1e-2, atol=1e-2)
        assert torch.allclose(v16.float(), v32, rtol=1e-2, atol=1e-2)


def test_an_interrupted_extraction_resumes_from_its_last_complete_chunk(tmp_path, tiny_models):
    texts = [f"{t} {i}" for i, t in enumerate(CORPUS[:24])]
    options = _options(tmp_path, tiny_models["llama"], tiny_models["gpt2"], texts=texts, chunk_size=4,
                       batch_size=2, val_split=0.25)
    reference = replace(options, out=str(tmp_path / "reference"))
    extract(check(reference))

    calls = []

    def stop_after_three_batches(done, total, line):
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(check(options), stop_after_three_batches)
    out = Path(options.out)
    assert read_status(out)["state"] == "interrupted"
    assert not (out / "train" / "index.json").exists()  # half a dataset is never mistaken for one
    saved = json.loads((out / STATE).read_text())
    assert saved["train"]["chunks"]  # a chunk was complete
    plan = check(options)
    assert plan.resumed
    progress = []
    extract(plan, lambda done, total, line: progress.append(done))
    assert progress[0] > 2  # it did not start over
    for split in ("train", "val"):
        for (d, v), (d_ref, v_ref) in zip(_samples(out / split), _samples(Path(reference.out) / split), strict=True):
            assert torch.equal(d, d_ref) and torch.equal(v, v_ref)


def test_an_extraction_killed_while_writing_its_index_files_still_finishes(tmp_path, tiny_models, monkeypatch):
    from engine.extract import output

    options = _options(tmp_path, tiny_models["llama"], tiny_models["gpt2"])
    finish = output.SplitWriter.finish
    calls = []

    def die_after_the_first_index(self, extraction):
        if calls:
            raise KeyboardInterrupt  # between train/index.json and val/index.json
        calls.append(self.dir.name)
        finish(self, extraction)

    monkeypatch.setattr(output.SplitWriter, "finish", die_after_the_first_index)
    with pytest.raises(KeyboardInterrupt):
        extract(check(options))
    monkeypatch.setattr(output.SplitWriter, "finish", finish)
    assert (Path(options.out) / "train" / "index.json").exists() and (Path(options.out) / STATE).exists()
    plan = check(options)
    assert plan.resumed
    extract(plan)
    assert open_dataset(Path(options.out) / "val").num_samples > 0 and not (Path(options.out) / STATE).exists()
    with pytest.raises(UserInputError, match="already holds an extracted dataset"):
        check(options)


@pytest.mark.slow
def test_a_stopped_or_killed_extraction_command_resumes_when_run_again(tmp_path, tiny_models):
    prompts = _prompts(tmp_path / "p.jsonl", [f"{t} {i}" for i, t in enumerate(CORPUS * 8)])
    argv = ["extract", "--drafter", tiny_models["llama"], "--verifier", tiny_models["gpt2"], "--prompts", prompts,
            "--chunk_size", "16", "--batch_size", "1", "--device", "cpu", tmp_path / "data"]
    out = tmp_path / "data"

    def start_and_signal(sig, at_least):
        proc = subprocess.Popen([sys.executable, "-m", "engine", *map(str, argv)], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: (read_status(out) or {}).get("samples_done", 0) >= at_least, timeout=120)
            os.kill(proc.pid, sig)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
        return proc.returncode, stdout, stderr

    code, stdout, stderr = start_and_signal(signal.SIGTERM, 60)  # queue cancel: stop between batches
    assert code == 0, stderr
    assert "run the same command again to resume" in stdout
    assert read_status(out)["state"] == "cancelled"
    first = json.loads((out / STATE).read_text())["train"]["samples"]
    assert first >= 16

    code, stdout, _ = start_and_signal(signal.SIGKILL, 200)  # no chance to say anything
    assert code == -signal.SIGKILL and "resuming" in stdout
    assert read_status(out)["state"] == "running"  # killed: nothing closed it
    assert json.loads((out / STATE).read_text())["train"]["samples"] > first

    again = run_cli(*argv, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    assert open_dataset(out / "train").num_samples + open_dataset(out / "val").num_samples == 640
    assert read_status(out)["state"] == "done" and not (out / STATE).exists()


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, tiny_models, capsys):
    from engine.cli import main

    prompts = _prompts(tmp_path / "p.jsonl", NOVEL)
    base = ["extract", "--drafter", tiny_models["llama"], "--verifier", tiny_models["gpt2"], "--prompts", prompts]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    cases = [
        (["--layer", "5"], "--layer 5", "d2"),
        (["--samples", "1"], "--samples", "d3"),
        (["--drafter", tmp_path / "nowhere"], "cannot read its config", "d4"),
        (["--register", "../x"], "not a safe dataset name", "d5"),
        (["--prompts", tmp_path / "missing.jsonl"], "does not exist", "d6"),
        ([], "not empty", "full"),
    ]
    for extra, message, out in cases:
        code = main([str(arg) for arg in (*base, *extra, tmp_path / out)])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (extra, err)
        assert out == "full" or not (tmp_path / out).exists()
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["notes.txt"]


def test_without_transformers_extract_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    prompts = _prompts(tmp_path / "p.jsonl", NOVEL)
    code = main(["extract", "--drafter", "a", "--verifier", "b", "--prompts", str(prompts), str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[extract]'" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_extract_register_train_eval_and_rank_end_to_end(tmp_path, tiny_models):
    config = tmp_path / "adapters.toml"
    config.write_text((ROOT / "adapters.toml").read_text())
    prompts = _prompts(tmp_path / "p.jsonl", [f"{t} {i}" for i, t in enumerate(CORPUS[:40] + NOVEL)])
    out = run_cli("extract", "--drafter", tiny_models["llama"], "--verifier", tiny_models["gpt2"], "--prompts",
                  prompts, "--register", "tiny", "--config", config, "--store", "bf16", "--device", "cpu",
                  tmp_path / "data", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "registered [datasets.tiny]" in out.stdout
    from adapters.registry import load_registry

    entry = load_registry(config).dataset("tiny")
    assert entry.train == (tmp_path / "data" / "train").resolve() and entry.val == (tmp_path / "data" / "val").resolve()
    again = run_cli("extract", "--drafter", tiny_models["llama"], "--verifier", tiny_models["gpt2"], "--prompts",
                    prompts, "--register", "tiny", "--config", config, tmp_path / "data2")
    assert again.returncode == 2 and "already in" in again.stderr and not (tmp_path / "data2").exists()

    runs = tmp_path / "runs"
    trained = run_cli("train", "--config", config, "--dataset", "tiny", "--level", "L1", "--num_epochs", "2",
                      "--lm_head", tmp_path / "data" / LM_HEAD, "--output_dir", runs, "--device", "cpu", timeout=300)
    assert trained.returncode == 0, trained.stderr
    (run_dir,) = [p.parent for p in runs.glob("*/*/best_model.pt")]
    evaluated = run_cli("eval", run_dir, "--json", timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accept_90" in evaluated.stdout or "accept" in evaluated.stdout
    ranked = json.loads(run_cli("runs", runs, "--json", check=True).stdout)
    assert [row["level"] for row in ranked] == ["L1"] and ranked[0]["state"] == "done"


@pytest.mark.slow
def test_an_extraction_runs_as_a_queue_job_with_progress(tmp_path, tiny_models):
    from engine.queue import JobQueue
    from tui.widgets.queue import jobs_progress

    prompts = _prompts(tmp_path / "p.jsonl", CORPUS[:12])
    runs = tmp_path / "runs"
    spec = ["--drafter", tiny_models["llama"], "--verifier", tiny_models["gpt2"], "--prompts", prompts,
            "--device", "cpu", tmp_path / "data"]
    bad = run_cli("queue", "add", "--runs", runs, "--extract", *spec[:-1], "--layer", "9", tmp_path / "other")
    assert bad.returncode == 2 and "--layer 9" in bad.stderr
    assert not (runs / "queue.db").exists() and not (tmp_path / "other").exists()  # refused: nothing written
    added = run_cli("queue", "add", "--runs", runs, "--extract", *spec)
    assert added.returncode == 0, added.stderr
    twice = run_cli("queue", "add", "--runs", runs, "--extract", *spec)
    assert twice.returncode == 2 and "already extracts into" in twice.stderr

    worker = run_cli("queue", "worker", "--runs", runs, "--exit-when-idle", timeout=300)
    assert worker.returncode == 0, worker.stderr
    with JobQueue(runs) as q:
        (job,) = q.jobs()
    assert (job.level, job.state, Path(job.run_dir)) == ("extract", "done", (tmp_path / "data").resolve())
    assert jobs_progress([job]) == {job.id: "12/12 samples"}
    assert progress_text(read_status(tmp_path / "data")) == "12/12 samples"
    assert "12/12 samples" in run_cli("queue", "ls", "--runs", runs, check=True).stdout
    assert open_dataset(tmp_path / "data" / "train").num_samples > 0
