"""Speculative-decoding evaluation: how many drafted tokens the verifier would accept, and what
that buys in wall-clock. All batched tensor code.

For a sample and a threshold τ, a position is accepted when cos(pred_t, target_t) > τ, and L is
the accepted prefix: the number of leading valid positions that are all accepted.
  accept_rate[τ]             accepted tokens / valid tokens, pooled over the set
  prefix_length[τ]           mean, median and p90 of L over samples
  accept_by_position[τ][k-1] fraction of samples whose first k positions are all accepted (L >= k)
  expected_accepted[τ][γ]    E[min(L, γ)]: tokens accepted per verification step with draft length γ
  speedup                    (E[min(L, γ)] + 1) / (verify_cost + γ · draft_cost) at the primary
                             threshold, an estimate: each verification step yields the accepted
                             drafts plus one token from the verifier, and costs a verifier step
                             plus γ draft steps, in units of one plain decode step. With the
                             run's speculate.json the costs are the measured ones
                             (cost_source), else verify_cost 1 and the fixed draft_cost.
  val_loss, cos_sim          the level's own loss and the mean cosine (the reference's
                             cos_sim_mean), computed as the trainer computes them
  token_top1_match / _top5_match / _top10_match  with an LM head: argmax(head·target) is the
                             argmax / in the top 5 / top 10 of head·pred, over valid tokens (the
                             draft token speculate proposes is argmax(head·pred))

Beside these, the reference's own definitions (its measure_feature_acceptance.py; docs/SEED.md
says how they differ):
  position_stats             per position k: mean and std of cos, valid samples, and the
                             *marginal* acceptance P(cos_k > τ) (ours above is P(L >= k))
  reference_speedup          with the reference's timings (drafter/verifier prefill and per-token
                             ms): its prefill speedup, its end-to-end speedup, and the prefill-aware
                             end-to-end speedup of its eval_two_phase.py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adapters import seed
from adapters.checkpoint import load_adapter, safe_load, widths
from adapters.losses import batch_objective, token_cosine
from adapters.padding import Padding
from adapters.reference import lm_head_weight
from adapters.registry import eval_problem
from common.errors import DataError, UserInputError
from common.fileio import ReadError, read_json
from common.text import plural, widths_text
from engine.data.dataset import open_dataset, split_train_val
from engine.data.formats import Dataset
from engine.data.loader import val_loader
from engine.device import pick_device, to_device
from engine.metrics import MetricAccumulator, leading_run
from engine.rundir.evaluation import PRIMARY_THRESHOLD, eval_key, write_eval
from engine.rundir.files import history_key
from engine.rundir.layout import CONFIG, SPECULATE, checkpoint_of
from engine.rundir.speculation import primary, read_speculation
from engine.settings import TrainSettings

MAX_GAMMA = 8  # expected_accepted is tabled for γ = 1..8


def load_lm_head(path: str, hidden: int) -> torch.Tensor:
    """The verifier's output projection [V, H] from `path`: a bare tensor, or the dict the
    reference's extract_vl_lm_head.py saves (`lm_head_weight`)."""
    try:
        head = lm_head_weight(safe_load(path))
    except UserInputError as exc:
        raise UserInputError(f"--lm_head: {exc}") from None
    if not isinstance(head, torch.Tensor) or head.dim() != 2 or head.shape[1] != hidden or not head.is_floating_point():
        raise UserInputError(f"--lm_head {path} must hold one float tensor [V, {hidden}] (or a dict with "
                             "lm_head_weight, as the reference saves it)")
    return head.float()


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate: thresholds, the draft length γ, the draft step's cost and, to add the
    reference's speedup estimates, its timings (ms). Checked once, the same way whatever their
    source ([eval] of adapters.toml or `eval`'s flags)."""

    thresholds: tuple[float, ...]
    gamma: int
    draft_cost: float
    timing: dict[str, float] | None = None

    def __post_init__(self) -> None:
        problem = eval_problem(list(self.thresholds), self.gamma, self.draft_cost)
        if problem:
            raise UserInputError(problem)
        if self.timing and any(not 0 <= v < float("inf") for v in self.timing.values()):
            raise UserInputError("the timing flags (--egpt_prefill_ms ...) must be finite numbers >= 0")

    @classmethod
    def from_registry(cls, defaults: dict[str, Any], flags: bool = False, **overrides: Any) -> "EvalOptions":
        """[eval]'s values, with any override that is not None (`flags`: they came from flags,
        and a problem names the flag)."""
        merged = {**defaults, **{k: v for k, v in overrides.items() if v is not None}}
        problem = eval_problem(list(merged["thresholds"]), merged["gamma"], merged["draft_cost"], "--" if flags else "")
        if problem:
            raise UserInputError(problem)
        return cls(tuple(merged["thresholds"]), merged["gamma"], merged["draft_cost"], merged.get("timing") or None)


class SpecDecodeAccumulator:
    """Collects per-sample prefix lengths and token counts over batches."""

    def __init__(self, thresholds: list[float], lm_head: torch.Tensor | None = None) -> None:
        self.thresholds = list(thresholds)
        self.lm_head = lm_head
        self.prefix: list[torch.Tensor] = []  # [B, len(thresholds)] per batch
        self.accepted = torch.zeros(len(self.thresholds), dtype=torch.long)
        self.tokens = 0
        self.top1 = 0
        self.top5 = 0
        self.top10 = 0
        self.max_len = 0
        # per position: [valid samples, sum cos, sum cos², accepted at each threshold...]
        self.by_position = torch.zeros(0, 3 + len(self.thresholds), dtype=torch.float64)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """pred, target: the valid tokens [T, H] of a batch (tensor[mask] order); mask [B, S]."""
        cos = token_cosine(pred.float(), target.float())                     # [T]
        taus = torch.tensor(self.thresholds, device=cos.device).view(-1, 1)
        passed = cos.unsqueeze(0) > taus                                      # [K, T]
        self.accepted += passed.sum(dim=1).cpu()
        self.prefix.append(leading_run(passed, mask).T.cpu())                # [B, K]
        self.tokens += cos.shape[0]
        self.max_len = max(self.max_len, mask.shape[1])
        self._add_positions(cos, passed, mask)
        if self.lm_head is not None:
            head = self.lm_head.to(pred.device, torch.float32)
            logits_pred = pred.float() @ head.T
            truth = (target.float() @ head.T).argmax(-1, keepdim=True)
            top10 = logits_pred.topk(min(10, head.shape[0]), dim=-1).indices
            self.top1 += int((top10[:, :1] == truth).sum())
            self.top5 += int((top10[:, :5] == truth).any(-1).sum())
            self.top10 += int((top10 == truth).any(-1).sum())

    def _add_positions(self, cos: torch.Tensor, passed: torch.Tensor, mask: torch.Tensor) -> None:
        positions = Padding(mask).positions                                   # [T]
        values = torch.cat([torch.ones_like(cos)[:, None], cos[:, None], cos.square()[:, None], passed.T.to(cos.dtype)], 1)
        sums = torch.zeros(mask.shape[1], values.shape[1], dtype=torch.float64, device=cos.device)
        sums.index_add_(0, positions, values.double())
        if sums.shape[0] > self.by_position.shape[0]:
            grown = torch.zeros(sums.shape[0], sums.shape[1], dtype=torch.float64)
            grown[: self.by_position.shape[0]] = self.by_position
            self.by_position = grown
        self.by_position[: sums.shape[0]] += sums.cpu()

    def compute(self, gamma: int, draft_cost: float, timing: dict[str, float] | None = None,
                verify_cost: float = 1.0) -> dict[str, Any]:
        """Everything above; `reference_speedup` only when `timing` gives the reference's timings."""
        lengths = torch.cat(self.prefix).double()                          # [N, T]
        positions = torch.arange(1, self.max_len + 1, dtype=torch.double)
        gammas = torch.arange(1, MAX_GAMMA + 1, dtype=torch.double)
        result: dict[str, Any] = {
            "samples": lengths.shape[0], "tokens": self.tokens, "thresholds": self.thresholds,
            "accept_rate": {}, "prefix_length": {}, "accept_by_position": {}, "expected_accepted": {},
        }
        for i, tau in enumerate(self.thresholds):
            key, length = eval_key(tau), lengths[:, i]
            result["accept_rate"][key] = self.accepted[i].item() / max(self.tokens, 1)
            result["prefix_length"][key] = {"mean": length.mean().item(), "median": torch.quantile(length, 0.5).item(),
                                            "p90": torch.quantile(length, 0.9).item()}
            result["accept_by_position"][key] = (length[:, None] >= positions[None, :]).double().mean(0).tolist()
            expected = torch.minimum(length[:, None], gammas[None, :]).mean(0)
            result["expected_accepted"][key] = {str(int(g)): e for g, e in zip(gammas.tolist(), expected.tolist())}
        primary = eval_key(PRIMARY_THRESHOLD if PRIMARY_THRESHOLD in self.thresholds else self.thresholds[-1])
        expected_at_gamma = torch.minimum(lengths[:, self.thresholds.index(float(primary))],
                                          torch.tensor(float(gamma))).mean().item()
        result.update({
            "threshold": float(primary), "gamma": gamma, "draft_cost": draft_cost, "verify_cost": verify_cost,
            "expected_accepted_at_gamma": expected_at_gamma,
            "speedup": (expected_at_gamma + 1.0) / (verify_cost + gamma * draft_cost),
        })
        if self.lm_head is not None:
            result["token_top1_match"] = self.top1 / max(self.tokens, 1)
            result["token_top5_match"] = self.top5 / max(self.tokens, 1)
            result["token_top10_match"] = self.top10 / max(self.tokens, 1)
        result["position_stats"] = self.position_stats()
        if timing is not None:
            primary_lengths = lengths[:, self.thresholds.index(float(primary))]
            result["reference_speedup"] = {"threshold": float(primary), **reference_speedup(primary_lengths, gamma, timing)}
        return result

    def position_stats(self) -> list[dict[str, Any]]:
        """The reference's position_stats.json: per position, the cosine's mean and (sample) std
        over the samples valid there, their number, and the share above each threshold."""
        rows = []
        for position, (n, total, squares, *accepted) in enumerate(self.by_position.tolist()):
            if n == 0:
                break
            variance = (squares - total * total / n) / (n - 1) if n > 1 else float("nan")
            rows.append({"position": position, "mean": total / n, "std": max(variance, 0.0) ** 0.5 if n > 1 else None,
                         "num_samples": int(n),
                         **{f"accept_{history_key(tau)}": a / n for tau, a in zip(self.thresholds, accepted)}})
        return rows


def reference_speedup(lengths: torch.Tensor, gamma: int, timing: dict[str, float]) -> dict[str, Any]:
    """The reference's speedup estimates from accepted prefixes L (per sample, at the primary
    threshold). N = 50 output tokens; T prefill and t per-token times, a the adapter's (ms).

    measure_feature_acceptance.py: speedup_prefill = 1 + min(E[L], g)·t_vl/T_vl, with g = (T_vl −
    T_egpt)/t_egpt drafts fitting in the verifier's prefill; speedup_e2e = (T_vl + N·t_vl) /
    (max(T_vl, T_egpt + a) + N/(E[min(L, γ)] + 1)·((γ + 1)·t_vl + a)), which ignores what the prefill
    accepted. eval_two_phase.py's prefill-aware form counts it and charges one verifier step per
    round: (T_vl + N·t_vl) / (max(T_vl, T_egpt + a) + (N − E[min(L, ⌊g⌋)])/(E[min(L, γ)] + 1)·(t_vl + a)).
    """
    t = {**seed.TIMING_MS, **timing}
    free = max(0.0, t["vl_prefill_ms"] - t["egpt_prefill_ms"]) / t["egpt_per_token_ms"] if t["egpt_per_token_ms"] > 0 else 0.0
    lengths = lengths.double()
    decode = torch.clamp(lengths, max=gamma).mean().item()
    prefill = torch.clamp(lengths, max=int(free)).mean().item()
    n = seed.OUTPUT_TOKENS
    baseline = t["vl_prefill_ms"] + n * t["vl_per_token_ms"]
    parallel_prefill = max(t["vl_prefill_ms"], t["egpt_prefill_ms"] + t["adapter_latency_ms"])
    e2e = baseline / (parallel_prefill + n / (decode + 1) * ((gamma + 1) * t["vl_per_token_ms"] + t["adapter_latency_ms"]))
    aware = baseline / (parallel_prefill + max(0.0, n - prefill) / (decode + 1) * (t["vl_per_token_ms"] + t["adapter_latency_ms"]))
    saved = min(lengths.mean().item(), free) * t["vl_per_token_ms"]
    return {"timing_ms": t, "gamma_decode": gamma, "gamma_prefill": int(free), "decode_accepted": decode,
            "prefill_accepted": prefill, "num_output_tokens": n,
            "speedup_prefill": 1 + saved / t["vl_prefill_ms"] if t["vl_prefill_ms"] > 0 else 1.0,
            "speedup_e2e": e2e, "speedup_e2e_prefill_aware": aware}


@dataclass(frozen=True)
class MeasuredCosts:
    """A draft step and a verification step in units of one plain decode step of the verifier,
    as speculate measured them."""
    draft_cost: float
    verify_cost: float
    source: str


def measured_costs(run_dir: Path, gamma: int) -> MeasuredCosts | None:
    """The run's speculate.json costs (at `gamma` if measured there, else its primary γ)."""
    data, figures = read_speculation(run_dir)
    measured = figures.get(gamma) or primary(data, figures)
    if measured is None or None in (measured.draft_ms_per_token, measured.verify_ms_per_step,
                                    measured.baseline_ms_per_token) or not measured.baseline_ms_per_token:
        return None
    return MeasuredCosts(measured.draft_ms_per_token / measured.baseline_ms_per_token,
                         measured.verify_ms_per_step / measured.baseline_ms_per_token,
                         f"{SPECULATE} (γ={measured.gamma})")


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Dataset, options: EvalOptions, *, lm_head: torch.Tensor | None = None,
             device: torch.device | str = "cpu", batch_size: int = 64,
             costs: MeasuredCosts | None = None) -> dict[str, Any]:
    device = torch.device(device)
    model = model.to(device).eval()
    acc = SpecDecodeAccumulator(list(options.thresholds), lm_head)
    scores = MetricAccumulator()  # the level's loss and the mean cosine, as training scores them
    gpu = device.type == "cuda"
    batches = val_loader(data, batch_size, pin_memory=gpu, reuse_buffers=3, gather_ahead=gpu)
    for batch in to_device(batches, device):
        objective = batch_objective(model, model.predicts_next, batch.egpt, batch.vl, batch.mask)
        scores.update(objective, batch.mask)
        acc.update(objective.pred, batch.vl, batch.mask)
    draft_cost, verify_cost = (costs.draft_cost, costs.verify_cost) if costs else (options.draft_cost, 1.0)
    result = acc.compute(options.gamma, draft_cost, options.timing, verify_cost)
    scalars = scores.compute(prefix="")
    result.update(val_loss=scalars.get("loss"), cos_sim=scalars.get("cos_sim"),
                  cost_source=costs.source if costs else "draft_cost")
    return result


def record(checkpoint: Path, payload: dict[str, Any], data: Dataset, result: dict[str, Any]) -> dict[str, Any]:
    """eval.json's content: what was evaluated, on what, and the figures."""
    return {"checkpoint": str(checkpoint), "level": payload.get("level"), "epoch": payload.get("epoch"),
            "data": str(data.path), **result}


def _run_settings(run_dir: Path) -> TrainSettings | None:
    try:
        return TrainSettings.from_dict(read_json(run_dir / CONFIG)["settings"])
    except (ReadError, KeyError, TypeError, AttributeError):
        return None


def evaluate_run(target: Path, options: EvalOptions, *, data: str | None = None, lm_head: str | None = None,
                 device: str = "auto", calibrate: bool = True) -> tuple[dict[str, Any], Path]:
    """Evaluate a run directory (its best checkpoint) or a checkpoint file on the run's own
    validation data (or `data`), and write eval.json beside it. Returns (eval.json's content,
    its path). Every input is checked before anything is computed or written. `calibrate`:
    the speedup estimate uses the costs the run's speculate.json measured, when it has one."""
    from common.fileio import unwritable_dir

    torch_device = pick_device(device)  # an unknown or absent device fails before anything is read
    checkpoint = checkpoint_of(target)
    run_dir = target if target.is_dir() else target.parent
    problem = unwritable_dir(run_dir)
    if problem:
        raise UserInputError(f"cannot write eval.json: {problem}")
    model, payload = load_adapter(checkpoint)
    settings = _run_settings(run_dir)
    if data:
        dataset = open_dataset(data)
    elif settings is not None and settings.val_data:
        dataset = open_dataset(settings.val_data)
    elif settings is not None:
        _, dataset, _ = split_train_val(open_dataset(settings.train_data), settings.val_split, settings.seed)
    else:
        raise UserInputError(f"{target}: no run config to find validation data in; pass --data VAL")
    expected = widths(payload)
    if dataset.widths != expected:
        raise DataError(f"{dataset.path} has hidden size {widths_text(*dataset.widths)} but the checkpoint maps "
                        f"{widths_text(*expected)}; evaluate on data of the models it was trained on")
    hidden = expected[1]
    head_path = lm_head or (settings.lm_head if settings else None)
    head = load_lm_head(head_path, hidden) if head_path else None
    costs = measured_costs(run_dir, options.gamma) if calibrate else None
    result = record(checkpoint, payload, dataset, evaluate(model, dataset, options, lm_head=head, device=torch_device,
                                                           costs=costs))
    return result, write_eval(run_dir, result)


def describe(result: dict[str, Any]) -> str:
    tau = eval_key(result["threshold"])
    prefix = result["prefix_length"][tau]
    lines = [
        f"{plural(result['samples'], 'sample')}, {plural(result['tokens'], 'token')}",
        "accept rate: " + ", ".join(f"@{k} {v:.3f}" for k, v in result["accept_rate"].items()),
        f"accepted prefix @{tau}: mean {prefix['mean']:.2f}, median {prefix['median']:g}, p90 {prefix['p90']:.1f}",
        "E[min(L, γ)] @" + tau + ": " + ", ".join(f"γ={g} {v:.2f}" for g, v in result["expected_accepted"][tau].items()),
        f"estimated speedup at γ={result['gamma']}, draft cost {result['draft_cost']:.3g}"
        + (f", verify cost {result['verify_cost']:.3g} (measured, {result['cost_source']})"
           if result.get("cost_source", "draft_cost") != "draft_cost" else "") + f": {result['speedup']:.2f}x",
    ]
    if result.get("val_loss") is not None:
        lines.insert(1, f"val loss {result['val_loss']:.4f}, cos_sim {result['cos_sim']:.4f}")
    if "token_top1_match" in result:
        lines.append(f"token agreement: top-1 {result['token_top1_match']:.3f}, top-5 {result['token_top5_match']:.3f}, "
                     f"top-10 {result['token_top10_match']:.3f}")
    if "reference_speedup" in result:
        ref = result["reference_speedup"]
        lines.append(f"the reference's estimates with its timings: prefill {ref['speedup_prefill']:.2f}x, "
                     f"end to end {ref['speedup_e2e']:.2f}x, prefill-aware end to end {ref['speedup_e2e_prefill_aware']:.2f}x")
    return "\n".join(lines)

